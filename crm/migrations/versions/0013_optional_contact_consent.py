"""the public form's answer on calls and texts with automated technology, either way; the home
page's new-and-unassigned queue gets its own index

Additive only: ``enquiries.contact_consent``. The box was required until wording 2026-12b, so
every enquiry already stored agreed; the server default records that for them.
``ix_leads_new_unassigned`` (partial): new leads are the newest, so PostgreSQL walking a wider
index in date order read nearly all of it at a million leads before reaching the first one.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-01 13:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0011'
branch_labels = None
depends_on = None


NEW_UNASSIGNED = sa.text("stage = 'new' AND assignee_id IS NULL")


def upgrade():
    op.add_column('enquiries', sa.Column('contact_consent', sa.Boolean(), nullable=False,
                                         server_default=sa.text('true')))
    op.create_index('ix_leads_new_unassigned', 'leads', ['created_at'], sqlite_where=NEW_UNASSIGNED,
                    postgresql_where=NEW_UNASSIGNED)


def downgrade():
    op.drop_index('ix_leads_new_unassigned', table_name='leads')
    op.drop_column('enquiries', 'contact_consent')
