"""the public form's answer on calls and texts with automated technology, either way; the home
page's new-and-unassigned queue gets its own index

Additive only: ``enquiries.contact_consent``. The box was required until wording 2026-12b, so
every enquiry already stored agreed; the server default records that for them.
``ix_leads_stage_assignee_created`` serves the home page's new-and-unassigned queue from its
first entry: new leads are the newest, so PostgreSQL walking a wider index in date order read
nearly all of it before reaching the first one.

Revision ID: 0013
Revises: 0014
Create Date: 2026-12-01 13:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('enquiries', sa.Column('contact_consent', sa.Boolean(), nullable=False,
                                         server_default=sa.text('true')))
    op.create_index('ix_leads_stage_assignee_created', 'leads', ['stage', 'assignee_id', 'created_at'])


def downgrade():
    op.drop_index('ix_leads_stage_assignee_created', table_name='leads')
    op.drop_column('enquiries', 'contact_consent')
