"""Start-up refusals added by issue 12: key check values, no keyring over encrypted data,
secret-key entropy, database TLS, and the production default of a second factor for PHI roles."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from crm import create_app, crypto
from crm.models import KeyCheck, db
from crm.settings import ConfigError
from tests.conftest import database_config
from tests.test_config import clean_environment, keyring_file, production  # noqa: F401  (fixtures)


def start(config: dict, tmp_path: Path, name: str = "instance"):
    app = create_app(config, instance_path=str(tmp_path / name))
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return app


def refusal(config: dict, tmp_path: Path, name: str = "instance") -> str:
    with pytest.raises(ConfigError) as caught:
        start(config, tmp_path, name)
    message = str(caught.value.code)
    assert message.startswith("crm: refusing to start: ") and "\n" not in message
    return message


def _same_ids_other_keys(ring: crypto.Keyring) -> crypto.Keyring:
    """A keyring with the same key ids and statuses as ``ring`` but other key bytes."""
    other = crypto.Keyring.generate()
    other.index_key, other.signing_seed = ring.index_key, ring.signing_seed
    other.audit_key = ring.audit_key
    return other


# --- item 10: key check values ----------------------------------------------------------


def test_a_different_keyring_with_the_same_key_id_is_refused_in_production(
    app, config, make_lead, production, tmp_path  # noqa: F811
):
    make_lead(first_name="Robin")
    start(config, tmp_path, "restart")  # a normal restart records the key check values
    with app.app_context():
        names = set(db.session.scalars(select(KeyCheck.name)))
    assert names == {"master:1", "index"}  # keys protecting data; no audit event was written yet
    crypto.write_keyring_file(Path(production["KEYRING_FILE"]), _same_ids_other_keys(app.extensions["crm_keyring"]))
    assert "master key 1 is not the one the database's data was written with" in refusal(production, tmp_path)


def test_key_check_values_first_recorded_over_data_must_open_that_data(app, config, make_lead, tmp_path):
    make_lead(first_name="Robin")
    with app.app_context():  # as after the upgrade that added check values to a database with data
        db.session.execute(delete(KeyCheck))
        db.session.commit()
    wrong = dict(config, KEYRING=_same_ids_other_keys(app.extensions["crm_keyring"]).to_json())
    assert "master key 1" in refusal(wrong, tmp_path)
    with app.app_context():
        assert db.session.scalar(select(KeyCheck.name).limit(1)) is None  # the wrong key was not recorded
    start(config, tmp_path, "right")
    with app.app_context():
        assert db.session.scalar(select(KeyCheck.name).where(KeyCheck.name == "master:1")) == "master:1"


def test_a_changed_audit_key_is_refused_once_events_exist(app, config, make_user, tmp_path):
    make_user(email="someone@clinic.test")
    start(config, tmp_path, "restart")
    with app.app_context():
        from crm import audit

        audit.record("settings_changed", object_type="settings")
        db.session.commit()
    ring = crypto.Keyring.from_json(config["KEYRING"])
    ring.audit_key = secrets.token_bytes(32)
    assert "audit key" in refusal(dict(config, KEYRING=ring.to_json()), tmp_path)


def test_development_never_generates_a_keyring_over_encrypted_data(app, config, make_lead, tmp_path):
    make_lead(first_name="Robin")
    development = {k: v for k, v in config.items() if k != "KEYRING"}
    development["KEYRING_FILE"] = str(tmp_path / "lost" / "keyring.json")
    message = refusal(development, tmp_path)
    assert "is missing but the database holds encrypted data" in message
    assert not (tmp_path / "lost" / "keyring.json").exists()


def test_development_still_generates_a_keyring_for_an_empty_database(tmp_path, pg_schema):
    config = {"TESTING": True, **database_config(tmp_path, pg_schema)}
    start(config, tmp_path)
    assert (tmp_path / "instance" / "keyring.json").exists()


# --- item 11: secret key entropy ----------------------------------------------------------


@pytest.mark.parametrize("weak", ["abcdefghijabcdefghijabcdefghijab", "qwertyuiopasdfghjklzxcvbnm123456",
                                  "Password1234567890Password123456", "0123456789abcdef0123456789abcdef"])
def test_production_refuses_low_variety_secret_keys(production, tmp_path, weak):  # noqa: F811
    production["SECRET_KEY"] = weak
    assert "SECRET_KEY is weak" in refusal(production, tmp_path)


@pytest.mark.parametrize("strong", [secrets.token_urlsafe(32), secrets.token_hex(32), secrets.token_urlsafe(48)])
def test_production_accepts_random_secret_keys(production, tmp_path, strong):  # noqa: F811
    production["SECRET_KEY"] = strong
    assert start(production, tmp_path).config["SECRET_KEY"] == strong


# --- item 20: database TLS ------------------------------------------------------------------


REMOTE = "postgresql+psycopg://crm@db.clinic.internal/crm"


@pytest.mark.parametrize("url, reason, refused", [
    (REMOTE, None, True),
    (REMOTE + "?sslmode=prefer", None, True),
    (REMOTE + "?sslmode=require", None, True),
    (REMOTE + "?sslmode=disable", "we trust the network", True),
    (REMOTE + "?sslmode=require", "managed database: provider CA not distributable", False),
    (REMOTE + "?sslmode=verify-full&sslrootcert=/etc/crm/db-ca.pem", None, False),
    ("postgresql+psycopg://crm@127.0.0.1/crm", None, True),
    ("postgresql+psycopg://crm@127.0.0.1/crm", "database on this host, loopback only", False),
    ("postgresql+psycopg://crm@/crm?host=/run/postgresql", "unix socket", False),
])
def test_production_postgresql_needs_verified_tls(url, reason, refused):
    from crm.settings import _check_database_tls

    if refused:
        with pytest.raises(ConfigError, match="sslmode=verify-full"):
            _check_database_tls(url, reason)
    else:
        _check_database_tls(url, reason)


def test_production_start_refuses_a_postgresql_url_without_tls(production, tmp_path):  # noqa: F811
    production.update(DATABASE_URL=REMOTE, DATABASE_TLS_REASON=None)
    assert "sslmode=verify-full" in refusal(production, tmp_path)


# --- item 7: a second factor for every role that reads PHI in production --------------------


def test_second_factor_for_phi_roles_is_on_in_production_and_off_in_development(production, config,  # noqa: F811
                                                                                 tmp_path):
    assert start(production, tmp_path, "prod").config["SECOND_FACTOR_FOR_PHI"] is True
    assert start(config, tmp_path, "dev").config["SECOND_FACTOR_FOR_PHI"] is False
    production["SECOND_FACTOR_FOR_PHI"] = False  # the switch for development set-ups
    assert start(production, tmp_path, "off").config["SECOND_FACTOR_FOR_PHI"] is False
