"""leads.preferred_language and enquiries.consent_language

The lead's preferred language (from the page language of the enquiry, editable by staff)
with an index for the lead list's language filter, and the language of the consent
wording each enquiry agreed to. Every enquiry stored before this revision agreed to the
English wording (version 2026-01 was the only one), so those rows are marked English.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-01 10:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTER TABLE ADD COLUMN (no batch copy): the tables keep their rows and triggers.
    op.add_column('leads', sa.Column('preferred_language', sa.String(length=8), nullable=True))
    op.create_index('ix_leads_language_created', 'leads', ['preferred_language', 'created_at'], unique=False)
    op.add_column('enquiries', sa.Column('consent_language', sa.String(length=8), nullable=True))
    op.execute("UPDATE enquiries SET consent_language = 'en' WHERE consent_language IS NULL")


def downgrade():
    with op.batch_alter_table('enquiries') as batch:
        batch.drop_column('consent_language')
    op.drop_index('ix_leads_language_created', table_name='leads')
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('preferred_language')
