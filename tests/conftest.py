"""Shared fixtures: a fresh app per test on SQLite (default) or PostgreSQL (TEST_DATABASE_URL).

On PostgreSQL each test run gets its own schema, dropped at the end, and every table is
emptied after each test; on SQLite each test gets its own database file.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from sqlalchemy import create_engine, select, text
from sqlalchemy import inspect as sa_inspect

from crm import create_app, crypto
from crm.models import Alert, AuditEvent, Lead, OutboxMessage, Role, User, UserSession, db, utcnow
from tests import sentinels

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


class CompiledTemplates(BytecodeCache):
    """Templates compiled once per test process, shared by every app a test creates (keyed by source checksum)."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if (code := self.compiled.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": CompiledTemplates()}


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str | None]:
    """Create a throw-away PostgreSQL schema for this run (None on SQLite)."""
    if not TEST_DATABASE_URL:
        yield None
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def database_config(tmp_path, schema: str | None) -> dict:
    """Connection settings for one test: a SQLite file, or the run's PostgreSQL schema."""
    if schema is None:
        return {"DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite3'}"}
    return {
        "DATABASE_URL": TEST_DATABASE_URL,
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-csearch_path={schema}"}},
    }


@pytest.fixture
def keyring() -> crypto.Keyring:
    """A fresh, ephemeral keyring: tests never touch a real one."""
    return crypto.Keyring.generate()


@pytest.fixture
def config(tmp_path, pg_schema, keyring) -> dict:
    """The test configuration; tests may adjust it before requesting ``app``."""
    return {
        "TESTING": True,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "KEYRING": keyring.to_json(),
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "ENQUIRY_MIN_FILL_SECONDS": 0,
        "BLIND_INDEX_ROWS": 100_000,
        # the daily jobs keyed to the clinic's clock stay off unless a test sets its time and freezes the clock
        "DIGEST_TIME": None,
        "RETENTION_TIME": None,
        **database_config(tmp_path, pg_schema),
    }


@pytest.fixture
def app(config, tmp_path) -> Iterator[Flask]:
    """A fresh application with an empty schema."""
    application = create_app(config, instance_path=str(tmp_path / "instance"))
    with application.app_context():
        db.create_all()
    yield application
    with application.app_context():
        db.session.remove()
        audit_leaks = phi_in_audit_rows()
        outgoing_leaks = phi_in_outgoing_rows()
        if db.engine.dialect.name == "postgresql":
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        db.engine.dispose()
    assert not audit_leaks, f"PHI sentinel(s) in audit rows (seq, sentinels): {audit_leaks}"
    assert not outgoing_leaks, f"PHI sentinel(s) in outgoing messages or alerts (id, sentinels): {outgoing_leaks}"


_WHOLE_TOKEN = {s: re.compile(rf"(?<![0-9A-Za-z]){re.escape(s)}(?![0-9A-Za-z])") for s in sentinels.WHOLE_TOKEN}


def phi_sentinels_in(texts) -> list[str]:
    """Return every guarded PHI sentinel that occurs in any of ``texts`` (any iterable of strings or None)."""
    texts = [t for t in texts if t]
    return sorted({s for s in sentinels.GUARDED for t in texts
                   if (_WHOLE_TOKEN[s].search(t) if s in _WHOLE_TOKEN else s in t)})


def phi_in_audit_rows() -> list[tuple[int, list[str]]]:
    """Return ``(seq, sentinels)`` for audit rows whose text (details, object and actor ids…) holds PHI."""
    if "audit_events" not in sa_inspect(db.engine).get_table_names():
        return []
    text_columns = [c for c in AuditEvent.__table__.columns if c.type.python_type is str]
    with db.engine.connect() as conn:
        rows = conn.execute(select(AuditEvent.seq, *text_columns)).all()
    return [(row.seq, found) for row in rows if (found := phi_sentinels_in(map(str, row[1:])))]


def phi_in_outgoing_rows() -> list[tuple[str, list[str]]]:
    """Return ``(id, sentinels)`` for outbox messages and in-app alerts whose text holds PHI."""
    tables = set(sa_inspect(db.engine).get_table_names())
    queries = [select(OutboxMessage.id, OutboxMessage.recipient, OutboxMessage.subject, OutboxMessage.body)
               if "outbox_messages" in tables else None,
               select(Alert.id, Alert.key, Alert.text) if "alerts" in tables else None]
    with db.engine.connect() as conn:
        rows = [row for query in queries if query is not None for row in conn.execute(query)]
    return [(row[0], found) for row in rows if (found := phi_sentinels_in(map(str, row[1:])))]


@pytest.fixture(autouse=True)
def no_phi_in_logs(caplog) -> Iterator[None]:
    """Fail any test whose captured logs carry a PHI sentinel (``app`` teardown checks audit rows)."""
    yield
    formatter = logging.Formatter()
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    leaks = phi_sentinels_in(formatter.format(r) for r in records)
    assert not leaks, f"PHI sentinel(s) in captured logs: {leaks}"


@pytest.fixture
def client(app) -> FlaskClient:
    """A test client for ``app``."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A CLI runner for ``app``."""
    return app.test_cli_runner()


@pytest.fixture
def make_user(app) -> Callable[..., User]:
    """Return a factory of staff users (no password unless given)."""

    def factory(email: str | None = None, role: Role = Role.COORDINATOR, **kwargs) -> User:
        with app.app_context():
            user = User(email=email or f"{uuid.uuid4().hex[:8]}@clinic.test", role=role, **kwargs)
            db.session.add(user)
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return factory


@pytest.fixture
def login_as(app) -> Callable[[FlaskClient, User], str]:
    """Return a helper that signs ``user`` in on ``client`` with a real server session row."""

    def sign_in(client: FlaskClient, user: User, second_factor: bool = True) -> str:
        token = crypto.random_token()
        now = utcnow()
        with app.app_context():
            db.session.add(
                UserSession(
                    id=crypto.token_digest(token), user_id=user.id, created_at=now, last_seen_at=now,
                    reauth_at=now, second_factor_at=now if second_factor else None,
                )
            )
            db.session.commit()
        with client.session_transaction() as sess:
            sess["_user_id"] = token
            sess["_fresh"] = True
            sess.permanent = True
        return token

    return sign_in


@pytest.fixture
def make_lead(app) -> Callable[..., str]:
    """Return a factory that stores a lead with the given plain attributes and returns its id."""

    def factory(**attrs) -> str:
        attrs.setdefault("first_name", "Test")
        attrs.setdefault("last_name", "Patient")
        with app.app_context():
            lead = Lead(**attrs)
            db.session.add(lead)
            db.session.commit()
            return lead.id

    return factory


pytest_plugins = ["tests.browser", "tests.outgoing"]
