"""the lead list's indexes end with ``erased_at``, so its capped count reads the index alone

The lead list leaves out shredded leads (``erased_at IS NULL``). Without the column in its
indexes, counting a filtered list up to its cap fetched every matching row from the table to
read it; with it, the count is answered from the index. Each index is rebuilt with the same
leading columns, so every query they served before they still serve.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 16:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

REPORT_COLUMNS = ['created_at', 'stage', 'stage_reason', 'reached_step', 'source', 'assignee_id', 'urgent',
                  'first_attempt_at', 'first_contact_at', 'attempt_count']
URGENT_OPEN = {'sqlite_where': sa.text('urgent = 1 AND acknowledged_at IS NULL'),
               'postgresql_where': sa.text('urgent = true AND acknowledged_at IS NULL')}
HAS_CALLBACK = {'sqlite_where': sa.text('next_callback_at IS NOT NULL'),
                'postgresql_where': sa.text('next_callback_at IS NOT NULL')}
#: name → (columns before this revision, options); this revision appends ``erased_at``.
INDEXES = {
    'ix_leads_stage_created': (['stage', 'created_at'], {}),
    'ix_leads_source_created': (['source', 'created_at'], {}),
    'ix_leads_assignee_created': (['assignee_id', 'created_at'], {}),
    'ix_leads_language_created': (['preferred_language', 'created_at'], {}),
    'ix_leads_urgent_open': (['created_at'], URGENT_OPEN),
    'ix_leads_report': (REPORT_COLUMNS, {}),
    'ix_leads_stage_source': (['stage', 'source', 'created_at'], {}),
    'ix_leads_next_callback_at': (['next_callback_at'], HAS_CALLBACK),
}


def _rebuild(with_erased_at: bool) -> None:
    for name, (columns, options) in INDEXES.items():
        op.drop_index(name, table_name='leads')
        op.create_index(name, 'leads', columns + ['erased_at'] * with_erased_at, unique=False, **options)


def upgrade():
    _rebuild(with_erased_at=True)


def downgrade():
    _rebuild(with_erased_at=False)
