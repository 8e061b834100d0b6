"""screening drafts

Additive only: ``screening_drafts`` holds a pre-screen saved part-way (answers encrypted with
the lead's key, so erasure shreds them through ``lead_id``). A draft is never scored, so no
query over ``screenings`` sees it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'screening_drafts',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('lead_id', sa.String(length=36), nullable=False),
        sa.Column('saved_by', sa.String(length=36), nullable=True),
        sa.Column('saved_at', sa.DateTime(), nullable=False),
        sa.Column('answers_enc', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['saved_by'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_screening_drafts_lead_id', 'screening_drafts', ['lead_id'])


def downgrade():
    op.drop_table('screening_drafts')
