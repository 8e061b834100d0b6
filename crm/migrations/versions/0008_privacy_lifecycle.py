"""privacy lifecycle: do-not-contact list, legal hold, access requests, erasure tombstones

Additive only: new nullable columns on ``leads`` and the ``do_not_contact`` table, which
holds blind indexes (never PHI) so a patient's opt-out outlives the erasure of their lead.

Revision ID: 0008
Revises: 0002
Create Date: 2026-12-01 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0002'
branch_labels = None
depends_on = None

LEAD_COLUMNS = (
    ('do_not_contact_at', sa.DateTime()),
    ('do_not_contact_by', sa.String(length=36)),
    ('legal_hold_at', sa.DateTime()),
    ('legal_hold_by', sa.String(length=36)),
    ('access_requested_at', sa.DateTime()),
    ('access_due_at', sa.DateTime()),
    ('access_fulfilled_at', sa.DateTime()),
    ('erased_at', sa.DateTime()),
    ('erased_by', sa.String(length=36)),
    ('erasure_reason', sa.String(length=40)),
)


def upgrade():
    for name, type_ in LEAD_COLUMNS:
        op.add_column('leads', sa.Column(name, type_, nullable=True))
    op.create_table(
        'do_not_contact',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('phone_bidx', sa.Integer(), nullable=True),
        sa.Column('email_bidx', sa.Integer(), nullable=True),
        sa.Column('lead_id', sa.String(length=36), nullable=True),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_do_not_contact_phone_bidx', 'do_not_contact', ['phone_bidx'])
    op.create_index('ix_do_not_contact_email_bidx', 'do_not_contact', ['email_bidx'])
    op.create_index('ix_do_not_contact_lead_id', 'do_not_contact', ['lead_id'])


def downgrade():
    op.drop_table('do_not_contact')
    with op.batch_alter_table('leads') as batch:
        for name, _type in reversed(LEAD_COLUMNS):
            batch.drop_column(name)
