"""reports: furthest pipeline step per lead, payer codes and PA timestamps, covering report and count indexes

``leads.reached_step`` is backfilled from each lead's current stage and its stage history.
``insurances.payer`` stays empty for existing rows (the carrier is encrypted and migrations
hold no keys); reports show those as "No carrier given". Building ``ix_leads_report`` reads
the whole leads table once: seconds for a million leads.

Revision ID: 0007
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0008'
branch_labels = None
depends_on = None

STEPS = {'new': 0, 'contacting': 1, 'contacted': 2, 'screening': 3, 'insurance_review': 3, 'eligible': 4,
         'scheduled': 5, 'converted': 6}
REPORT_COLUMNS = ['created_at', 'stage', 'stage_reason', 'reached_step', 'source', 'assignee_id', 'urgent',
                  'first_attempt_at', 'first_contact_at', 'attempt_count']


LEADS = sa.table('leads', sa.column('id'), sa.column('stage'), sa.column('reached_step'))
EVENTS = sa.table('lead_events', sa.column('lead_id'), sa.column('kind'), sa.column('to_stage'))


def _step(column):
    return sa.case(STEPS, value=column, else_=0)


def upgrade():
    # plain ADD COLUMNs (no copy-and-swap of the tables)
    op.add_column('insurances', sa.Column('payer', sa.String(length=32), nullable=True))
    op.add_column('insurances', sa.Column('pa_submitted_at', sa.DateTime(), nullable=True))
    op.add_column('insurances', sa.Column('pa_decided_at', sa.DateTime(), nullable=True))
    op.add_column('leads', sa.Column('reached_step', sa.Integer(), server_default='0', nullable=False))
    op.execute(LEADS.update().values(reached_step=_step(LEADS.c.stage)))
    history = (sa.select(sa.func.max(_step(EVENTS.c.to_stage)))
               .where(EVENTS.c.lead_id == LEADS.c.id, EVENTS.c.kind == 'stage_changed').scalar_subquery())
    op.execute(LEADS.update().where(history > LEADS.c.reached_step).values(reached_step=history))
    op.create_index('ix_leads_report', 'leads', REPORT_COLUMNS, unique=False)
    op.create_index('ix_leads_stage_source', 'leads', ['stage', 'source', 'created_at'],
                    unique=False)


def downgrade():
    op.drop_index('ix_leads_stage_source', table_name='leads')
    op.drop_index('ix_leads_report', table_name='leads')
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('reached_step')
    with op.batch_alter_table('insurances') as batch:
        batch.drop_column('pa_decided_at')
        batch.drop_column('pa_submitted_at')
        batch.drop_column('payer')
