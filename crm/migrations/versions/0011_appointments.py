"""appointments and clinician sign-off decisions

Additive only: the ``appointments`` table (notes encrypted with the lead's key, so erasure
shreds them through ``lead_id``), the first treatment's date (encrypted) on ``leads``, and a
clinician's sign-off decision, reason and encrypted note on ``screenings``.

Revision ID: 0011
Revises: 0003
Create Date: 2026-12-01 11:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0003'
branch_labels = None
depends_on = None


SCREENING_COLUMNS = (
    ('sign_off_decision', sa.String(length=24)),
    ('sign_off_reason', sa.String(length=40)),
    ('sign_off_note_enc', sa.LargeBinary()),
)


def upgrade():
    op.add_column('leads', sa.Column('first_treatment_on_enc', sa.LargeBinary(), nullable=True))
    for name, type_ in SCREENING_COLUMNS:
        op.add_column('screenings', sa.Column(name, type_, nullable=True))
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
    for name, _ in SCREENING_COLUMNS:
        op.drop_column('screenings', name)
    op.drop_column('leads', 'first_treatment_on_enc')
