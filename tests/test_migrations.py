"""`flask db upgrade` builds the models' schema, with the audit triggers, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from crm import audit, create_app, crypto
from crm.models import db, stage_counts
from tests.conftest import TEST_DATABASE_URL

BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL unset")),
]


@pytest.fixture(params=BACKENDS)
def fresh(request, tmp_path) -> Iterator[Flask]:
    """An app on an empty database (a new SQLite file or a new PostgreSQL schema), not migrated."""
    config = {"TESTING": True, "SECRET_KEY": secrets.token_urlsafe(48),
              "KEYRING": crypto.Keyring.generate().to_json(), "AUTO_MIGRATE": False}
    schema = None
    if request.param == "sqlite":
        config["DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    else:
        schema = f"mig_{uuid.uuid4().hex[:12]}"
        _admin(f'CREATE SCHEMA "{schema}"')
        config["DATABASE_URL"] = TEST_DATABASE_URL
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"options": f"-csearch_path={schema}"}}
    app = create_app(config, instance_path=str(tmp_path / "instance"))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if schema:
        _admin(f'DROP SCHEMA "{schema}" CASCADE')


def _admin(statement: str) -> None:
    engine = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def upgrade(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output


def test_upgrade_creates_every_table(fresh):
    with fresh.app_context():
        assert inspect(db.engine).get_table_names() == []  # the fresh database starts empty
    upgrade(fresh)
    with fresh.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {t.name for t in db.metadata.sorted_tables} <= tables
        assert "alembic_version" in tables


def test_upgraded_schema_matches_the_models(fresh):
    upgrade(fresh)
    with fresh.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == [], (
        "crm/migrations lags crm/models.py; regenerate the migration with "
        f"`flask --app crm db migrate`. Differences: {differences}"
    )


def catalog(sqlite: str, postgresql: str) -> list:
    """Rows of the system-catalog query for the database in use."""
    query = sqlite if db.engine.dialect.name == "sqlite" else postgresql
    return db.session.execute(text(query)).all()


def test_upgrade_installs_append_only_audit_triggers(fresh):
    upgrade(fresh)
    with fresh.app_context():
        triggers = catalog(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'",
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal")
        assert {"audit_events_no_update"} <= {name for name, in triggers}
        audit.record("user_created", object_type="user", object_id="x")
        db.session.commit()
        for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
            with pytest.raises(DBAPIError, match="append-only"):
                db.session.execute(text(statement))
            db.session.rollback()
        assert db.session.scalar(text("SELECT action FROM audit_events")) == "user_created"


def test_upgrade_keeps_anonymous_events_out_of_the_actor_index(fresh):
    upgrade(fresh)
    with fresh.app_context():
        indexes = dict(catalog(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events'",
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_events'"))
    assert "ix_audit_actor_at" not in indexes
    assert "WHERE" in indexes["ix_audit_actor_seq"] and "actor_id IS NOT NULL" in indexes["ix_audit_actor_seq"]


def test_upgrade_counts_existing_leads_by_stage_and_keeps_counting(fresh):
    """Leads stored before revision 0010 are counted by the upgrade; the triggers count what follows."""
    with fresh.app_context():
        assert fresh.test_cli_runner().invoke(args=["db", "upgrade", "0002"]).exit_code == 0
        lead = ("INSERT INTO leads (id, reference, stage, source, urgent, marketing_consent, created_at, updated_at, "
                "stage_changed_at, attempt_count) VALUES (:id, :ref, :stage, 'web_form', false, false, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)")
        for n, stage in enumerate(["new", "new", "closed"]):
            db.session.execute(text(lead), {"id": str(uuid.uuid4()), "ref": f"OLD-{n:04d}", "stage": stage})
        db.session.commit()
        upgrade(fresh)
        assert stage_counts()["new"] == 2 and stage_counts()["closed"] == 1
        db.session.execute(text(lead), {"id": str(uuid.uuid4()), "ref": "NEW-0001", "stage": "new"})
        db.session.execute(text("UPDATE leads SET stage = 'contacting' WHERE reference = 'OLD-0000'"))
        db.session.commit()
        counts = stage_counts()
        assert (counts["new"], counts["contacting"], counts["closed"]) == (2, 1, 1)
        db.session.rollback()
