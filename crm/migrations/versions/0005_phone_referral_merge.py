"""leads from calls, referrals and imports, per-enquiry reference codes, proposals, corrections, merges

Additive only: new nullable columns and new tables. Existing enquiries keep a NULL reference
(search still finds their lead by the lead's own code).

Revision ID: 0005
Revises: 0009
Create Date: 2026-12-01 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('leads', sa.Column('created_by', sa.String(length=36), nullable=True))
    op.add_column('leads', sa.Column('current_insurance_id', sa.String(length=36), nullable=True))
    op.add_column('leads', sa.Column('merged_into_id', sa.String(length=36), nullable=True))
    op.add_column('leads', sa.Column('source_details_enc', sa.LargeBinary(), nullable=True))
    op.add_column('enquiries', sa.Column('reference', sa.String(length=16), nullable=True))
    op.create_index('ix_enquiries_reference', 'enquiries', ['reference'], unique=True)
    op.add_column('insurances', sa.Column('enquiry_id', sa.String(length=36), nullable=True))
    op.create_index('ix_insurances_enquiry_id', 'insurances', ['enquiry_id'], unique=False)
    op.create_table('lead_proposals',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('enquiry_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('decided_by', sa.String(length=36), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('values_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['decided_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_lead_proposals_lead_id', 'lead_proposals', ['lead_id'], unique=False)
    op.create_table('lead_changes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor_id', sa.String(length=36), nullable=True),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('cause', sa.String(length=24), nullable=False),
    sa.Column('old_value_enc', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_lead_changes_lead_id', 'lead_changes', ['lead_id'], unique=False)
    op.create_table('consents',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('method', sa.String(length=12), nullable=False),
    sa.Column('wording_version', sa.String(length=32), nullable=False),
    sa.Column('taken_by', sa.String(length=36), nullable=True),
    sa.Column('taken_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['taken_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_consents_lead_id', 'consents', ['lead_id'], unique=False)
    op.create_table('imported_rows',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=24), nullable=False),
    sa.Column('imported_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('digest')
    )
    op.create_index('ix_imported_rows_lead_id', 'imported_rows', ['lead_id'], unique=False)
    op.create_table('import_uploads',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('uploaded_by', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('source', sa.String(length=24), nullable=False),
    sa.Column('content_sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['uploaded_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade():
    op.drop_table('import_uploads')
    op.drop_index('ix_imported_rows_lead_id', table_name='imported_rows')
    op.drop_table('imported_rows')
    op.drop_index('ix_consents_lead_id', table_name='consents')
    op.drop_table('consents')
    op.drop_index('ix_lead_changes_lead_id', table_name='lead_changes')
    op.drop_table('lead_changes')
    op.drop_index('ix_lead_proposals_lead_id', table_name='lead_proposals')
    op.drop_table('lead_proposals')
    with op.batch_alter_table('insurances') as batch:
        batch.drop_index('ix_insurances_enquiry_id')
        batch.drop_column('enquiry_id')
    with op.batch_alter_table('enquiries') as batch:
        batch.drop_index('ix_enquiries_reference')
        batch.drop_column('reference')
    with op.batch_alter_table('leads') as batch:
        for column in ('source_details_enc', 'merged_into_id', 'current_insurance_id', 'created_by'):
            batch.drop_column(column)
