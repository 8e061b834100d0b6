"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 18:24:31.493001
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
        "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_events is append-only'; END; $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    ],
}


def upgrade():
    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor_kind', sa.String(length=8), nullable=False),
    sa.Column('actor_id', sa.String(length=36), nullable=True),
    sa.Column('action', sa.String(length=48), nullable=False),
    sa.Column('object_type', sa.String(length=24), nullable=True),
    sa.Column('object_id', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('request_id', sa.String(length=36), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('prev_mac', sa.LargeBinary(), nullable=False),
    sa.Column('mac', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_action_seq', ['action', 'seq'], unique=False)
        batch_op.create_index('ix_audit_actor_at', ['actor_id', 'at'], unique=False)
        batch_op.create_index('ix_audit_actor_seq', ['actor_id', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)
        batch_op.create_index('ix_audit_object', ['object_type', 'object_id', 'seq'], unique=False)

    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('email_digest', sa.String(length=64), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_attempts_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempts_email_digest'), ['email_digest'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempts_ip'), ['ip'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('display_name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('totp_secret_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('password_changed_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_table('invitations',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitations_user_id'), ['user_id'], unique=False)

    op.create_table('leads',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=False),
    sa.Column('stage', sa.String(length=24), nullable=False),
    sa.Column('stage_reason', sa.String(length=40), nullable=True),
    sa.Column('source', sa.String(length=24), nullable=False),
    sa.Column('utm_source', sa.String(length=80), nullable=True),
    sa.Column('utm_medium', sa.String(length=80), nullable=True),
    sa.Column('utm_campaign', sa.String(length=80), nullable=True),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('acknowledged_by', sa.String(length=36), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.Column('assignee_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('first_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('first_contact_at', sa.DateTime(), nullable=True),
    sa.Column('stage_changed_at', sa.DateTime(), nullable=False),
    sa.Column('next_callback_at', sa.DateTime(), nullable=True),
    sa.Column('attempt_count', sa.Integer(), nullable=False),
    sa.Column('marketing_consent', sa.Boolean(), nullable=False),
    sa.Column('first_name_enc', sa.LargeBinary(), nullable=True),
    sa.Column('last_name_enc', sa.LargeBinary(), nullable=True),
    sa.Column('dob_enc', sa.LargeBinary(), nullable=True),
    sa.Column('phone_enc', sa.LargeBinary(), nullable=True),
    sa.Column('email_enc', sa.LargeBinary(), nullable=True),
    sa.Column('zip_code_enc', sa.LargeBinary(), nullable=True),
    sa.Column('preferences_enc', sa.LargeBinary(), nullable=True),
    sa.Column('phone_bidx', sa.Integer(), nullable=True),
    sa.Column('email_bidx', sa.Integer(), nullable=True),
    sa.Column('name_dob_bidx', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['acknowledged_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reference')
    )
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index('ix_leads_assignee_created', ['assignee_id', 'created_at'], unique=False)
        batch_op.create_index('ix_leads_assignee_stage', ['assignee_id', 'stage'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_email_bidx'), ['email_bidx'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_name_dob_bidx'), ['name_dob_bidx'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_next_callback_at'), ['next_callback_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_phone_bidx'), ['phone_bidx'], unique=False)
        batch_op.create_index('ix_leads_source_created', ['source', 'created_at'], unique=False)
        batch_op.create_index('ix_leads_stage_created', ['stage', 'created_at'], unique=False)
        batch_op.create_index('ix_leads_urgent', ['urgent', 'acknowledged_at'], unique=False)
        batch_op.create_index('ix_leads_urgent_open', ['created_at'], unique=False, sqlite_where=sa.text('urgent = 1 AND acknowledged_at IS NULL'), postgresql_where=sa.text('urgent = true AND acknowledged_at IS NULL'))

    op.create_table('recovery_codes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('code_hash', sa.String(length=255), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_codes_user_id'), ['user_id'], unique=False)

    op.create_table('user_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('reauth_at', sa.DateTime(), nullable=False),
    sa.Column('second_factor_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_reason', sa.String(length=32), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('callbacks',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('assignee_id', sa.String(length=36), nullable=True),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callbacks_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index('ix_callbacks_due', ['done_at', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_callbacks_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_callbacks_open_due', ['due_at'], unique=False, sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))

    op.create_table('contact_attempts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('note_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('contact_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_attempts_lead_id'), ['lead_id'], unique=False)

    op.create_table('enquiries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('idempotency_digest', sa.String(length=64), nullable=True),
    sa.Column('crisis', sa.Boolean(), nullable=False),
    sa.Column('consent_version', sa.String(length=32), nullable=False),
    sa.Column('consented_at', sa.DateTime(), nullable=False),
    sa.Column('privacy_ack', sa.Boolean(), nullable=False),
    sa.Column('marketing_consent', sa.Boolean(), nullable=False),
    sa.Column('answers_enc', sa.LargeBinary(), nullable=True),
    sa.Column('consent_ip_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_digest')
    )
    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enquiries_lead_id'), ['lead_id'], unique=False)

    op.create_table('insurances',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('coverage_type', sa.String(length=16), nullable=False),
    sa.Column('patient_is_policyholder', sa.Boolean(), nullable=True),
    sa.Column('vob_status', sa.String(length=16), nullable=False),
    sa.Column('vob_outcome', sa.String(length=32), nullable=True),
    sa.Column('pa_status', sa.String(length=24), nullable=True),
    sa.Column('pa_units', sa.Integer(), nullable=True),
    sa.Column('pa_start', sa.Date(), nullable=True),
    sa.Column('pa_end', sa.Date(), nullable=True),
    sa.Column('verified_by', sa.String(length=36), nullable=True),
    sa.Column('verified_at', sa.DateTime(), nullable=True),
    sa.Column('carrier_enc', sa.LargeBinary(), nullable=True),
    sa.Column('member_id_enc', sa.LargeBinary(), nullable=True),
    sa.Column('group_number_enc', sa.LargeBinary(), nullable=True),
    sa.Column('policyholder_enc', sa.LargeBinary(), nullable=True),
    sa.Column('benefits_enc', sa.LargeBinary(), nullable=True),
    sa.Column('pa_auth_number_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['verified_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('insurances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_insurances_lead_id'), ['lead_id'], unique=False)

    op.create_table('lead_events',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('from_stage', sa.String(length=24), nullable=True),
    sa.Column('to_stage', sa.String(length=24), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.Column('body_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_events_lead_id'), ['lead_id'], unique=False)

    op.create_table('lead_keys',
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('kid', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('dek_version', sa.Integer(), nullable=False),
    sa.Column('wrapped_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id')
    )
    with op.batch_alter_table('lead_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_keys_kid'), ['kid'], unique=False)

    op.create_table('screenings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('performed_by', sa.String(length=36), nullable=True),
    sa.Column('performed_at', sa.DateTime(), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('signed_off_by', sa.String(length=36), nullable=True),
    sa.Column('signed_off_at', sa.DateTime(), nullable=True),
    sa.Column('answers_enc', sa.LargeBinary(), nullable=True),
    sa.Column('result_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['performed_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['signed_off_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('screenings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_screenings_lead_id'), ['lead_id'], unique=False)

    op.create_table('insurance_cards',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('insurance_id', sa.String(length=36), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('media_type', sa.String(length=40), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['insurance_id'], ['insurances.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('insurance_cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_insurance_cards_insurance_id'), ['insurance_id'], unique=False)


    for statement in APPEND_ONLY.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade():
    with op.batch_alter_table('insurance_cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_insurance_cards_insurance_id'))

    op.drop_table('insurance_cards')
    with op.batch_alter_table('screenings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_screenings_lead_id'))

    op.drop_table('screenings')
    with op.batch_alter_table('lead_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_keys_kid'))

    op.drop_table('lead_keys')
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_events_lead_id'))

    op.drop_table('lead_events')
    with op.batch_alter_table('insurances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_insurances_lead_id'))

    op.drop_table('insurances')
    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enquiries_lead_id'))

    op.drop_table('enquiries')
    with op.batch_alter_table('contact_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_attempts_lead_id'))

    op.drop_table('contact_attempts')
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.drop_index('ix_callbacks_open_due', sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_callbacks_lead_id'))
        batch_op.drop_index('ix_callbacks_due')
        batch_op.drop_index(batch_op.f('ix_callbacks_assignee_id'))

    op.drop_table('callbacks')
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_user_id'))

    op.drop_table('user_sessions')
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_codes_user_id'))

    op.drop_table('recovery_codes')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index('ix_leads_urgent_open', sqlite_where=sa.text('urgent = 1 AND acknowledged_at IS NULL'), postgresql_where=sa.text('urgent = true AND acknowledged_at IS NULL'))
        batch_op.drop_index('ix_leads_urgent')
        batch_op.drop_index('ix_leads_stage_created')
        batch_op.drop_index('ix_leads_source_created')
        batch_op.drop_index(batch_op.f('ix_leads_phone_bidx'))
        batch_op.drop_index(batch_op.f('ix_leads_next_callback_at'))
        batch_op.drop_index(batch_op.f('ix_leads_name_dob_bidx'))
        batch_op.drop_index(batch_op.f('ix_leads_email_bidx'))
        batch_op.drop_index(batch_op.f('ix_leads_created_at'))
        batch_op.drop_index('ix_leads_assignee_stage')
        batch_op.drop_index('ix_leads_assignee_created')

    op.drop_table('leads')
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_user_id'))

    op.drop_table('invitations')
    op.drop_table('users')
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_attempts_ip'))
        batch_op.drop_index(batch_op.f('ix_login_attempts_email_digest'))
        batch_op.drop_index(batch_op.f('ix_login_attempts_at'))

    op.drop_table('login_attempts')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_object')
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))
        batch_op.drop_index('ix_audit_actor_seq')
        batch_op.drop_index('ix_audit_actor_at')
        batch_op.drop_index('ix_audit_action_seq')

    op.drop_table('audit_events')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS audit_events_append_only()')
