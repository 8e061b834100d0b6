"""the public form's answer on calls and texts with automated technology, either way

Additive only: ``enquiries.contact_consent``. The box was required until wording 2026-12b, so
every enquiry already stored agreed; the server default records that for them.

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


def upgrade():
    op.add_column('enquiries', sa.Column('contact_consent', sa.Boolean(), nullable=False,
                                         server_default=sa.text('true')))


def downgrade():
    op.drop_column('enquiries', 'contact_consent')
