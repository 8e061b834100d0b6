"""Configuration layers, first-run generation and every production start-up refusal."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from crm import create_app, crypto
from crm.models import User, db
from crm.settings import ConfigError
from tests.conftest import database_config

STRONG = secrets.token_urlsafe(48)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Keep the developer's own CRM_* variables out of these tests."""
    for name in [n for n in os.environ if n.startswith("CRM_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def keyring_file(tmp_path) -> Path:
    path = tmp_path / "secrets" / "keyring.json"
    path.parent.mkdir()
    crypto.write_keyring_file(path, crypto.Keyring.generate())
    return path


@pytest.fixture
def production(tmp_path, pg_schema, keyring_file) -> dict:
    """A complete production configuration that starts; tests break one thing at a time."""
    return {
        "MODE": "production",
        "TESTING": True,
        "SECRET_KEY": STRONG,
        "KEYRING_FILE": str(keyring_file),
        "DATABASE_TLS_REASON": "the test database runs on this host",  # only read for PostgreSQL
        "BASE_URL": "https://crm.clinic.test",
        **database_config(tmp_path, pg_schema),
    }


def start(config: dict, tmp_path: Path):
    """Create the app with ``config`` and release its connections."""
    app = create_app(config, instance_path=str(tmp_path / "instance"))
    with app.app_context():
        db.engine.dispose()
    return app


def refusal(config: dict, tmp_path: Path) -> str:
    """Start the app expecting a refusal; return its message after checking its shape."""
    with pytest.raises(ConfigError) as caught:
        start(config, tmp_path)
    message = str(caught.value.code)
    assert message.startswith("crm: refusing to start: ")
    assert "\n" not in message
    return message


def test_complete_production_configuration_starts(production, tmp_path):
    app = start(production, tmp_path)
    assert app.config["HTTPS"] is True
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-crm"
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_production_refuses_missing_secret_key(production, tmp_path):
    del production["SECRET_KEY"]
    assert "SECRET_KEY is not set" in refusal(production, tmp_path)


@pytest.mark.parametrize("weak", ["dev", "changeme", "short-but-random-9f2", "a" * 64, "0123456789" * 2])
def test_production_refuses_weak_secret_key(production, tmp_path, weak):
    production["SECRET_KEY"] = weak
    assert "SECRET_KEY is weak" in refusal(production, tmp_path)


def test_production_refuses_missing_keyring(production, tmp_path, keyring_file):
    keyring_file.unlink()
    message = refusal(production, tmp_path)
    assert "keyring" in message and "missing" in message
    assert not keyring_file.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_production_refuses_group_or_world_readable_keyring(production, tmp_path, keyring_file, mode):
    os.chmod(keyring_file, mode)
    assert "readable by group or others" in refusal(production, tmp_path)


def test_production_refuses_malformed_environment_keyring(production, tmp_path):
    production["KEYRING"] = '{"master_keys": []}'
    assert "CRM_KEYRING" in refusal(production, tmp_path)


def _ring_without_key_1() -> crypto.Keyring:
    ring = crypto.Keyring.generate()
    ring.promote(ring.add_key().kid)
    del ring.master_keys[1]
    return ring


def test_refuses_database_holding_a_lead_key_id_the_keyring_lacks(config, app, make_lead, production, tmp_path):
    make_lead(first_name="Robin")
    crypto.write_keyring_file(Path(production["KEYRING_FILE"]), _ring_without_key_1())
    assert "key id(s) [1]" in refusal(production, tmp_path)


def test_refuses_database_holding_a_sealed_secret_key_id_the_keyring_lacks(app, keyring, production, tmp_path):
    with app.app_context():
        user = User(email="admin@clinic.test", role="admin")
        user.totp_secret_sealed = crypto.seal(keyring, "totp", user.id, b"JBSWY3DPEHPK3PXP")
        db.session.add(user)
        db.session.commit()
    crypto.write_keyring_file(Path(production["KEYRING_FILE"]), _ring_without_key_1())
    assert "key id(s) [1]" in refusal(production, tmp_path)


def test_refusal_from_the_command_line_is_one_line_without_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(CRM_MODE="production", CRM_SECRET_KEY="dev", CRM_INSTANCE_PATH=str(tmp_path / "instance"),
               CRM_DATABASE_URL=f"sqlite:///{tmp_path / 'crm.sqlite3'}")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "crm", "routes"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("crm: refusing to start: SECRET_KEY is weak")
    assert "Traceback" not in result.stderr + result.stdout


def test_development_first_run_generates_private_secret_and_keyring(tmp_path, pg_schema):
    config = {"TESTING": True, **database_config(tmp_path, pg_schema)}
    app = start(config, tmp_path)
    instance = tmp_path / "instance"
    secret, ring = instance / "secret_key", instance / "keyring.json"
    for path in (secret, ring):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(instance.stat().st_mode) & 0o077 == 0
    assert app.config["SECRET_KEY"] == secret.read_text().strip()
    assert len(app.config["SECRET_KEY"]) >= 32
    again = start(config, tmp_path)
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]
    assert again.extensions["crm_keyring"].to_json() == app.extensions["crm_keyring"].to_json()


def test_layers_apply_defaults_then_instance_file_then_environment_then_test_config(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    (instance / "config.py").write_text(
        'CLINIC_NAME = "From file"\nPHONE_REGION = "GB"\nCONSENT_VERSION = "file"\nSESSION_IDLE_MINUTES = 5\n'
    )
    monkeypatch.setenv("CRM_CLINIC_NAME", "From env")
    monkeypatch.setenv("CRM_CONSENT_VERSION", "env")
    monkeypatch.setenv("CRM_SESSION_IDLE_MINUTES", "10")
    config = {"TESTING": True, "CONSENT_VERSION": "test", "DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite3'}"}
    app = start(config, tmp_path)
    assert app.config["TIMEZONE"] == "America/Los_Angeles"  # default
    assert app.config["PHONE_REGION"] == "GB"  # instance file over default
    assert app.config["CLINIC_NAME"] == "From env"  # environment over instance file
    assert app.config["SESSION_IDLE_MINUTES"] == 10  # environment values are JSON-decoded
    assert app.config["CONSENT_VERSION"] == "test"  # test config over everything


def test_keyring_and_database_url_come_from_the_environment(tmp_path, monkeypatch):
    ring = crypto.Keyring.generate()
    monkeypatch.setenv("CRM_KEYRING", ring.to_json())
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    monkeypatch.setenv("CRM_SECRET_KEY", STRONG)
    monkeypatch.setenv("CRM_MODE", "production")
    monkeypatch.setenv("CRM_BASE_URL", "https://crm.clinic.test")
    app = start({"TESTING": True}, tmp_path)
    assert app.extensions["crm_keyring"].audit_key == ring.audit_key
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("env.sqlite3")
    assert not (tmp_path / "instance" / "keyring.json").exists()


def test_first_run_auto_migrates_a_fresh_private_sqlite_database_with_wal_and_foreign_keys(tmp_path, caplog):
    config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'first.sqlite3'}"}
    with caplog.at_level(logging.WARNING):
        app = create_app(config, instance_path=str(tmp_path / "instance"))
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {"alembic_version", "leads", "lead_keys", "users", "audit_events"} <= tables
        assert db.session.scalar(text("SELECT version_num FROM alembic_version"))
        assert db.session.scalar(text("PRAGMA journal_mode")) == "wal"
        assert db.session.scalar(text("PRAGMA foreign_keys")) == 1
        assert db.session.scalar(text("PRAGMA busy_timeout")) == 5000
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        wal = tmp_path / "first.sqlite3-wal"
        assert wal.exists()
        for path in (tmp_path / "first.sqlite3", wal):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        db.session.remove()
        db.engine.dispose()
    assert any("create-user EMAIL --role admin" in r.getMessage() for r in caplog.records)


def test_keyring_file_is_never_inside_the_database(app, keyring, make_lead):
    make_lead(first_name="Robin")
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(text(f"SELECT * FROM {table.name}")):
                blob = json.dumps([v.hex() if isinstance(v, bytes) else str(v) for v in row])
                for secret in (keyring.primary.key, keyring.index_key, keyring.audit_key):
                    assert secret.hex() not in blob
