"""intake at scale: a partial unique index on the form digest, trigger-kept stage counts, two leads indexes fewer

* ``enquiries.idempotency_digest``: the table-wide unique constraint becomes a unique index
  over rows that have a digest. Seeded, imported and migrated enquiries carry none, and with
  them in the index the planner, once it has statistics, took the duplicate-submission check
  for a full scan. On SQLite the table is copied (an unnamed constraint cannot be dropped).
* ``lead_stage_counts``: per-stage counts kept by triggers on ``leads`` in the same
  transaction as every insert, delete and stage change; back-filled here from the leads.
* ``ix_leads_assignee_stage`` and ``ix_leads_urgent`` are dropped: no query uses them; and
  ``ix_leads_next_callback_at`` holds only leads with a callback (a new lead has none).

Counting the leads and copying ``enquiries`` take seconds at a million rows and block
writes meanwhile: run the upgrade outside clinic hours on a large database.

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-01 10:50:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0005'
branch_labels = None
depends_on = None

HAS_DIGEST = sa.text("idempotency_digest IS NOT NULL")
HAS_CALLBACK = sa.text("next_callback_at IS NOT NULL")
UNNAMED = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER leads_count_insert AFTER INSERT ON leads BEGIN "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (NEW.stage, 0, 1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads + 1; END",
        "CREATE TRIGGER leads_count_delete AFTER DELETE ON leads BEGIN "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (OLD.stage, 0, -1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads - 1; END",
        "CREATE TRIGGER leads_count_stage AFTER UPDATE OF stage ON leads WHEN OLD.stage IS NOT NEW.stage BEGIN "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (OLD.stage, 0, -1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads - 1; "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (NEW.stage, 0, 1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads + 1; END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION lead_stage_count() RETURNS trigger AS $$ "
        "DECLARE slot integer := mod(txid_current(), 64)::integer; "
        "BEGIN "
        "IF TG_OP = 'UPDATE' AND OLD.stage IS NOT DISTINCT FROM NEW.stage THEN RETURN NULL; END IF; "
        "IF TG_OP IN ('UPDATE', 'DELETE') THEN "
        "INSERT INTO lead_stage_counts AS c (stage, shard, leads) VALUES (OLD.stage, slot, -1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = c.leads - 1; END IF; "
        "IF TG_OP IN ('UPDATE', 'INSERT') THEN "
        "INSERT INTO lead_stage_counts AS c (stage, shard, leads) VALUES (NEW.stage, slot, 1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = c.leads + 1; END IF; "
        "RETURN NULL; END; $$ LANGUAGE plpgsql",
        "CREATE TRIGGER leads_stage_count AFTER INSERT OR DELETE OR UPDATE OF stage ON leads "
        "FOR EACH ROW EXECUTE FUNCTION lead_stage_count()",
    ],
}
DROP_TRIGGERS = {
    "sqlite": ["DROP TRIGGER leads_count_insert", "DROP TRIGGER leads_count_delete",
               "DROP TRIGGER leads_count_stage"],
    "postgresql": ["DROP TRIGGER leads_stage_count ON leads", "DROP FUNCTION lead_stage_count()"],
}


def _dialect() -> str:
    return op.get_bind().dialect.name


def upgrade():
    if _dialect() == "sqlite":
        with op.batch_alter_table('enquiries', recreate='always', naming_convention=UNNAMED) as batch_op:
            batch_op.drop_constraint('uq_enquiries_idempotency_digest', type_='unique')
    else:
        op.drop_constraint('enquiries_idempotency_digest_key', 'enquiries', type_='unique')
    op.create_index('ux_enquiries_idempotency_digest', 'enquiries', ['idempotency_digest'], unique=True,
                    sqlite_where=HAS_DIGEST, postgresql_where=HAS_DIGEST)

    op.create_table(
        'lead_stage_counts',
        sa.Column('stage', sa.String(length=24), nullable=False),
        sa.Column('shard', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('leads', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.PrimaryKeyConstraint('stage', 'shard'),
        sqlite_with_rowid=False,
    )
    op.execute("INSERT INTO lead_stage_counts (stage, shard, leads) "
               "SELECT stage, 0, count(*) FROM leads GROUP BY stage")
    for statement in TRIGGERS[_dialect()]:
        op.execute(statement)

    op.drop_index('ix_leads_assignee_stage', table_name='leads')
    op.drop_index('ix_leads_urgent', table_name='leads')
    op.drop_index('ix_leads_next_callback_at', table_name='leads')
    op.create_index('ix_leads_next_callback_at', 'leads', ['next_callback_at'], unique=False,
                    sqlite_where=HAS_CALLBACK, postgresql_where=HAS_CALLBACK)


def downgrade():
    op.drop_index('ix_leads_next_callback_at', table_name='leads')
    op.create_index('ix_leads_next_callback_at', 'leads', ['next_callback_at'], unique=False)
    op.create_index('ix_leads_urgent', 'leads', ['urgent', 'acknowledged_at'], unique=False)
    op.create_index('ix_leads_assignee_stage', 'leads', ['assignee_id', 'stage'], unique=False)
    for statement in DROP_TRIGGERS[_dialect()]:
        op.execute(statement)
    op.drop_table('lead_stage_counts')
    op.drop_index('ux_enquiries_idempotency_digest', table_name='enquiries')
    with op.batch_alter_table('enquiries', naming_convention=UNNAMED) as batch_op:
        batch_op.create_unique_constraint('uq_enquiries_idempotency_digest', ['idempotency_digest'])
