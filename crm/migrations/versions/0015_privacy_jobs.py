"""privacy jobs in the worker: daily job runs and the open access requests index

Additive only: ``job_runs`` (one row per daily job, made on its first run) and a partial
index on ``leads.access_due_at`` over open requests for a copy, which the worker's
reminders read every minute (an enquiry writes nothing into it).

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-01 13:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0012'
branch_labels = None
depends_on = None

ACCESS_OPEN = sa.text("access_due_at IS NOT NULL AND access_fulfilled_at IS NULL")


def upgrade():
    op.create_table(
        'job_runs',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('day', sa.Date(), nullable=True),
        sa.Column('holder', sa.String(length=36), nullable=True),
        sa.Column('lease_until', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_index('ix_leads_access_open', 'leads', ['access_due_at'], sqlite_where=ACCESS_OPEN,
                    postgresql_where=ACCESS_OPEN)


def downgrade():
    op.drop_index('ix_leads_access_open', table_name='leads')
    op.drop_table('job_runs')
