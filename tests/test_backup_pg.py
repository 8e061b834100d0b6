"""PostgreSQL: backups are pg_dump's job, and the restore drill of docs/deployment.md leaves erased leads shredded."""

from __future__ import annotations

import shutil
import subprocess  # nosec B404: runs pg_dump and psql, fixed arguments, no shell
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from crm import create_app
from crm.models import Lead, LeadKey, db
from tests.conftest import TEST_DATABASE_URL
from tests.privacy_helpers import PNG_CARD, store_full_lead

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL unset")


def libpq(url: str, database: str | None = None) -> str:
    """The libpq form of a SQLAlchemy URL (optionally for another database)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.set(database=database).render_as_string(hide_password=False) if database else \
        parsed.render_as_string(hide_password=False)


def admin_sql(statement: str) -> None:
    engine = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def test_backup_command_points_to_pg_dump(runner, tmp_path):
    result = runner.invoke(args=["backup", str(tmp_path / "x.sqlite3")])
    assert result.exit_code == 1 and "pg_dump" in result.output
    assert not (tmp_path / "x.sqlite3").exists()


@pytest.mark.skipif(not shutil.which("pg_dump") or not shutil.which("psql"), reason="needs pg_dump and psql")
def test_restore_drill_with_pg_dump_leaves_the_erased_lead_shredded(app, runner, config, pg_schema, tmp_path):
    erased = store_full_lead(app, "A")
    kept = store_full_lead(app, "B", phone="(714) 555-0199", email="b@example.net")
    with app.app_context():
        db.session.remove()
    dump = tmp_path / "crm.sql"
    subprocess.run(["pg_dump", "--no-owner", "-n", pg_schema, "-f", str(dump), libpq(TEST_DATABASE_URL)],
                   check=True)  # nosec B603
    assert runner.invoke(args=["privacy", "erase", erased.reference, "--yes"]).exit_code == 0
    restored_db = f"restore_{uuid.uuid4().hex[:10]}"
    admin_sql(f'CREATE DATABASE "{restored_db}"')
    try:
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), libpq(TEST_DATABASE_URL, restored_db)],
                       check=True, capture_output=True)  # nosec B603
        url = make_url(TEST_DATABASE_URL).set(database=restored_db).render_as_string(hide_password=False)
        restored = create_app({**config, "DATABASE_URL": url}, instance_path=str(Path(app.instance_path)))
        with restored.app_context():
            assert db.session.get(Lead, erased.id).is_erased  # re-shredded on start from the ledger
            assert db.session.get(LeadKey, erased.id) is None
            assert db.session.get(Lead, kept.id).insurances[0].cards[0].content == PNG_CARD + b"B"
            db.session.remove()
        verify = restored.test_cli_runner().invoke(args=["audit", "verify"])
        assert verify.exit_code == 0, verify.output
        with restored.app_context():
            db.engine.dispose()
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{restored_db}" WITH (FORCE)')
