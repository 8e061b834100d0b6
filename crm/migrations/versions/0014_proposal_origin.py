"""lead_proposals.origin

Where a proposal's details came from: ``enquiry`` (a returning web enquiry) or ``import``
(a CSV row attached to an existing lead), so the lead page says which unverified source it
was. Proposals stored before this revision came from returning enquiries (those with an
enquiry id) or from merges (without one, left empty).

Revision ID: 0014
Revises: 0015
Create Date: 2026-12-01 13:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('lead_proposals', sa.Column('origin', sa.String(length=12), nullable=True))
    op.execute("UPDATE lead_proposals SET origin = 'enquiry' WHERE enquiry_id IS NOT NULL")


def downgrade():
    with op.batch_alter_table('lead_proposals') as batch:
        batch.drop_column('origin')
