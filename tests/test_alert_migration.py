"""A database at the revision before the alerts tables starts, and then upgrades in place."""

from __future__ import annotations

from sqlalchemy import inspect

from crm import create_app
from crm.models import db
from tests.test_migrations import fresh  # noqa: F401  (fixture)


def test_an_app_starts_on_the_previous_revision_and_upgrades(fresh):  # noqa: F811
    result = fresh.test_cli_runner().invoke(args=["db", "upgrade", "0002"])
    assert result.exit_code == 0, result.output
    again = create_app(dict(fresh.config), instance_path=fresh.instance_path)  # the key-id check runs here
    with again.app_context():
        assert "outbox_messages" not in inspect(db.engine).get_table_names()
        db.engine.dispose()
    result = again.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with again.app_context():
        assert {"outbox_messages", "alerts", "alert_preferences", "on_call_members"} <= set(
            inspect(db.engine).get_table_names())
        db.engine.dispose()
