"""security: row MACs on accounts and sessions, audit actor e-mails, key check values, break-glass

Adds the MAC columns over the security columns of ``users`` and ``user_sessions`` (rows
written before this revision have none: the first start afterwards seals every existing
account once, and existing sessions must sign in again), the actor's e-mail recorded in
each new audit event, a key check value per key, the short-password flag and the
emergency-access grants. All additive; the audit table only gains a nullable column
(no copy-and-swap, so its append-only triggers stay).

Revision ID: 0003
Revises: 0006
Create Date: 2026-12-01 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('short_password', sa.Boolean(), server_default=sa.text('false'),
                                     nullable=False))
    op.add_column('users', sa.Column('security_mac', sa.LargeBinary(), nullable=True))
    op.add_column('user_sessions', sa.Column('security_mac', sa.LargeBinary(), nullable=True))
    op.add_column('audit_events', sa.Column('actor_email', sa.String(length=254), nullable=True))
    op.create_table('key_checks',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('emergency_grants',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('reason_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('granted_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('security_mac', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('emergency_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_emergency_grants_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('emergency_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_emergency_grants_user_id'))
    op.drop_table('emergency_grants')
    op.drop_table('key_checks')
    op.drop_column('audit_events', 'actor_email')
    op.drop_column('user_sessions', 'security_mac')
    op.drop_column('users', 'security_mac')
    op.drop_column('users', 'short_password')
