"""reports: furthest pipeline step per lead, payer codes and PA timestamps, a covering report index

``leads.reached_step`` is backfilled from each lead's current stage and its stage history.
``insurances.payer`` stays empty for existing rows (the carrier is encrypted and migrations
hold no keys); reports show those as "No carrier given". Building ``ix_leads_report`` reads
the whole leads table once: seconds for a million leads.

Revision ID: 0007
Revises: 0002
Create Date: 2026-12-01 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0002'
branch_labels = None
depends_on = None

STEPS = {'new': 0, 'contacting': 1, 'contacted': 2, 'screening': 3, 'insurance_review': 3, 'eligible': 4,
         'scheduled': 5, 'converted': 6}
REPORT_COLUMNS = ['created_at', 'stage', 'stage_reason', 'reached_step', 'source', 'assignee_id', 'urgent',
                  'first_attempt_at', 'first_contact_at', 'attempt_count']


def _step_case(column: str) -> str:
    whens = ' '.join(f"WHEN '{stage}' THEN {step}" for stage, step in STEPS.items())
    return f'CASE {column} {whens} ELSE 0 END'


def upgrade():
    # plain ADD COLUMNs (no copy-and-swap of the tables)
    op.add_column('insurances', sa.Column('payer', sa.String(length=32), nullable=True))
    op.add_column('insurances', sa.Column('pa_submitted_at', sa.DateTime(), nullable=True))
    op.add_column('insurances', sa.Column('pa_decided_at', sa.DateTime(), nullable=True))
    op.add_column('leads', sa.Column('reached_step', sa.Integer(), server_default='0', nullable=False))
    op.execute(f'UPDATE leads SET reached_step = {_step_case("stage")}')
    history = (f"(SELECT MAX({_step_case('e.to_stage')}) FROM lead_events e "
               f"WHERE e.lead_id = leads.id AND e.kind = 'stage_changed')")
    op.execute(f'UPDATE leads SET reached_step = {history} WHERE {history} > reached_step')
    op.create_index('ix_leads_report', 'leads', REPORT_COLUMNS, unique=False)


def downgrade():
    op.drop_index('ix_leads_report', table_name='leads')
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('reached_step')
    with op.batch_alter_table('insurances') as batch:
        batch.drop_column('pa_decided_at')
        batch.drop_column('pa_submitted_at')
        batch.drop_column('payer')
