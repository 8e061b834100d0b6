"""audit: one actor index, without anonymous events

Public enquiries have no actor, so they no longer write into an actor index; the date
filter is served through seq bounds, which makes the (actor_id, at) index redundant.
Building the index blocks audited writes while it runs (seconds for a million events), so
run the upgrade outside clinic hours on a long log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 23:45:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

HAS_ACTOR = sa.text("actor_id IS NOT NULL")


def upgrade():
    # Plain index operations: a batch (copy-and-swap) table would lose the append-only triggers.
    op.drop_index('ix_audit_actor_at', table_name='audit_events')
    op.drop_index('ix_audit_actor_seq', table_name='audit_events')
    op.create_index('ix_audit_actor_seq', 'audit_events', ['actor_id', 'seq'], unique=False,
                    sqlite_where=HAS_ACTOR, postgresql_where=HAS_ACTOR)


def downgrade():
    op.drop_index('ix_audit_actor_seq', table_name='audit_events')
    op.create_index('ix_audit_actor_seq', 'audit_events', ['actor_id', 'seq'], unique=False)
    op.create_index('ix_audit_actor_at', 'audit_events', ['actor_id', 'at'], unique=False)
