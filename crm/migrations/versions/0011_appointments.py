"""appointments: booked visits per lead, and the first treatment's date on converting

Additive only: the ``appointments`` table (notes encrypted with the lead's key, so erasure
shreds them through ``lead_id``) and a nullable encrypted column on ``leads``.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-01 11:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('leads', sa.Column('first_treatment_on_enc', sa.LargeBinary(), nullable=True))
    op.create_table(
        'appointments',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('lead_id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('starts_at', sa.DateTime(), nullable=False),
        sa.Column('place', sa.String(length=16), nullable=False),
        sa.Column('clinician_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_by', sa.String(length=36), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('notes_enc', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['clinician_id'], ['users.id']),
        sa.ForeignKeyConstraint(['created_by'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_appointments_lead_id', 'appointments', ['lead_id'])
    op.create_index('ix_appointments_clinician_id', 'appointments', ['clinician_id'])
    op.create_index('ix_appointments_status_starts', 'appointments', ['status', 'starts_at'])


def downgrade():
    op.drop_table('appointments')
    op.drop_column('leads', 'first_treatment_on_enc')
