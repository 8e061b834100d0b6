"""Storage failures and values the database cannot hold: a field message or the 503 page, never a 500
or a traceback; a database that cannot be written at start refuses to start with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event

from crm import create_app
from crm.models import Role, db
from crm.settings import ConfigError
from tests.auth_helpers import PASSWORD_HASH
from tests.conftest import TEST_DATABASE_URL
from tests.test_public_form import assert_nothing_stored, row_counts, submit

ROOT = Path(__file__).resolve().parent.parent
NOTHING_SAVED = "nothing was saved"


def test_a_nul_byte_in_the_sign_in_email_is_a_field_error(client, app, make_user):
    make_user(email="ab@clinic.test", password_hash=PASSWORD_HASH)
    for email in ("a\x00b@clinic.test", "ab@clinic.test\x00", "ab@clinic.test\n"):
        response = client.post("/auth/login", data={"email": email, "password": "plum harbour violin seventeen"})
        page = response.get_data(as_text=True)
        assert response.status_code == 200, repr(email)
        assert "Enter your e-mail address without control characters." in page
    assert row_counts(app)["user_sessions"] == 0


def test_a_nul_byte_in_an_invited_address_is_a_field_error(client, app, make_user, login_as):
    login_as(client, make_user(role=Role.ADMIN))
    response = client.post("/admin/users/new", data={"email": "new\x00@clinic.test", "role": "coordinator"})
    assert response.status_code == 400 and "Enter a valid e-mail." in response.get_data(as_text=True)
    assert row_counts(app)["users"] == 1


# --- a database that stops accepting writes while running ------------------------------------------


class ReadOnly:
    """Make every new connection read-only, as an operator or a failing disk would, and back."""

    def __init__(self, app):
        self.app = app

    def _refuse_writes(self, dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        if self.app.extensions["sqlalchemy"].engines[None].dialect.name == "sqlite":
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("SET default_transaction_read_only = on")
            dbapi_connection.commit()  # a SET inside a rolled-back transaction would be undone
        cursor.close()

    def on(self) -> None:
        with self.app.app_context():
            db.engine.dispose()
            event.listen(db.engine, "connect", self._refuse_writes)

    def off(self) -> None:
        with self.app.app_context():
            if event.contains(db.engine, "connect", self._refuse_writes):
                event.remove(db.engine, "connect", self._refuse_writes)
            db.engine.dispose()


@pytest.fixture
def read_only(app):
    switch = ReadOnly(app)
    yield switch
    switch.off()


def assert_unavailable_page(response, app) -> None:
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert NOTHING_SAVED in page and app.config["CLINIC_PHONE"] in page
    assert "Traceback" not in page and "Error" not in page


def test_a_database_made_read_only_while_running_gives_the_503_page(client, app, read_only, caplog):
    read_only.on()
    assert_unavailable_page(submit(client, app), app)
    read_only.off()
    assert any(r.getMessage().startswith("database unavailable") for r in caplog.records)
    assert not any(r.getMessage().startswith("unhandled") for r in caplog.records)
    assert_nothing_stored(app)


def test_staff_writes_on_a_read_only_database_give_the_503_page(client, app, make_user, make_lead, login_as,
                                                                read_only):
    lead_id = make_lead()
    login_as(client, make_user())
    before = row_counts(app)
    read_only.on()
    assert_unavailable_page(client.post(f"/leads/{lead_id}/notes", data={"body": "called, no answer"}), app)
    assert_unavailable_page(client.get(f"/leads/{lead_id}"), app)  # every view writes its audit event
    read_only.off()
    assert row_counts(app) == before


# --- a database that cannot be written at start ------------------------------------------------------


UNWRITABLE = "sqlite:////dev/null/crm.sqlite3"  # a path under a file: not even root can create it


def test_an_unwritable_database_at_start_is_a_one_line_refusal(config, tmp_path):
    config.update(DATABASE_URL=UNWRITABLE, AUTO_MIGRATE=True)
    config.pop("SQLALCHEMY_ENGINE_OPTIONS", None)
    with pytest.raises(ConfigError) as refused:
        create_app(config, instance_path=str(tmp_path / "unwritable"))
    message = str(refused.value)
    assert message.startswith("crm: refusing to start: the database sqlite:////dev/null/crm.sqlite3 cannot be")
    assert "\n" not in message


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL unset")
def test_a_read_only_postgresql_database_at_start_is_a_one_line_refusal(config, tmp_path):
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["options"]
    config.update(AUTO_MIGRATE=True, SQLALCHEMY_ENGINE_OPTIONS={
        "connect_args": {"options": f"{options} -cdefault_transaction_read_only=on"}})
    with pytest.raises(ConfigError) as refused:
        create_app(config, instance_path=str(tmp_path / "read-only"))
    message = str(refused.value)
    assert "cannot be opened or written (ReadOnlySqlTransaction" in message and "\n" not in message


def _start(command: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "FLASK_"))}
    env.update(CRM_DATABASE_URL=UNWRITABLE, CRM_INSTANCE_PATH=str(tmp_path / "instance"),
               CRM_RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379")  # shared limits, as several workers need
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)


def test_the_command_line_refuses_an_unwritable_database_with_one_line(tmp_path):
    result = _start([sys.executable, "-m", "flask", "--app", "crm", "routes"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("crm: refusing to start: the database sqlite:////dev/null/crm.sqlite3")
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("options", [["--workers", "2", "--preload"], ["--workers", "1"]], ids=["preload", "worker"])
def test_gunicorn_stops_with_the_one_line_refusal_instead_of_failing_workers(tmp_path, options):
    result = _start([sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", *options, "wsgi:app"], tmp_path)
    refusals = [line for line in result.stderr.splitlines() if "refusing to start" in line]
    assert result.returncode == 4  # gunicorn's "App failed to load": the master stops, no worker respawns
    assert len(refusals) == 1 and refusals[0].startswith("crm: refusing to start: the database")
    assert "Traceback" not in result.stderr and "Worker failed to boot" not in result.stderr
    if "--preload" in options:  # refused in the master, before any worker: the one line is all there is
        assert result.stderr.strip() == refusals[0]
