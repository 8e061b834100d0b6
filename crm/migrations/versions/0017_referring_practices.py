"""referring practices, for referrals per practice in the Sources report

Additive only: the ``referring_practices`` table (one row per practice, keyed by an HMAC of its
normalised name, the name sealed under the master key), ``leads.referring_practice_id`` and the
partial index the per-practice report reads. The new index holds only leads naming a practice,
none before this revision, so it builds in moments. Referral leads created earlier keep their
practice inside their encrypted details only (a migration holds no keys) and count as
"No practice given".

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-01 13:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0013'
branch_labels = None
depends_on = None

HAS_PRACTICE = sa.text('referring_practice_id IS NOT NULL')
PRACTICE_REPORT_COLUMNS = ['source', 'created_at', 'referring_practice_id', 'stage', 'stage_reason',
                           'reached_step', 'assignee_id', 'urgent']


def upgrade():
    op.create_table(
        'referring_practices',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('practice_key', sa.String(length=64), nullable=False),
        sa.Column('name_sealed', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('practice_key'),
    )
    op.add_column('leads', sa.Column('referring_practice_id', sa.String(length=36), nullable=True))
    op.create_index('ix_leads_practice_report', 'leads', PRACTICE_REPORT_COLUMNS,
                    sqlite_where=HAS_PRACTICE, postgresql_where=HAS_PRACTICE)


def downgrade():
    op.drop_index('ix_leads_practice_report', table_name='leads')
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('referring_practice_id')
    op.drop_table('referring_practices')
