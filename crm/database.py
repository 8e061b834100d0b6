"""Database wiring: engine settings, SQLite pragmas, migrations and the key-id start-up check."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import flask_migrate
from flask import Flask
from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Engine

from . import crypto
from .models import LeadKey, User, db
from .settings import ConfigError

MIGRATIONS = str(Path(__file__).parent / "migrations")
SQLITE_BUSY_TIMEOUT_MS = 5000
migrate = flask_migrate.Migrate()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Busy timeout before WAL (switching journal mode may itself wait), foreign keys on.

    ``isolation_level = None`` lets SQLAlchemy, not the driver, open transactions, so that
    every transaction starts with ``BEGIN IMMEDIATE`` (see :func:`_sqlite_begin`).
    """
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")  # a thank-you page means the enquiry is on disk
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    """Take SQLite's write lock up front: one writer at a time keeps the audit chain linear."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def init_app(app: Flask) -> None:
    """Bind the database, register migrations, upgrade on first run and check key ids."""
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, compare_type=True)
    with app.app_context():
        _make_sqlite_file_private()
        if app.config["AUTO_MIGRATE"]:
            flask_migrate.upgrade(directory=MIGRATIONS)
        _check_key_ids(app)
        _tell_about_first_admin(app)


def _make_sqlite_file_private() -> None:
    """Create or restrict an SQLite database to mode 0600; SQLite gives its -wal and -shm files that mode."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # an empty file is a valid new database
    for companion in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if companion.exists() and companion.stat().st_mode & 0o077:
            companion.chmod(0o600)


def _check_key_ids(app: Flask) -> None:
    """Refuse to start when stored data names a master key the keyring lacks."""
    tables = inspect(db.engine).get_table_names()
    if "lead_keys" not in tables:
        return
    ring: crypto.Keyring = app.extensions["crm_keyring"]
    kids = set(db.session.scalars(select(LeadKey.kid).distinct()))
    sealed = db.session.scalars(select(User.totp_secret_sealed).where(User.totp_secret_sealed.is_not(None)))
    kids |= {crypto.sealed_kid(blob) for blob in sealed}
    db.session.rollback()
    missing = sorted(kids - set(ring.master_keys))
    if missing:
        raise ConfigError(f"the database holds data for key id(s) {missing} that the keyring lacks")


def _tell_about_first_admin(app: Flask) -> None:
    """Say how to create the first admin while there are no users (none are ever seeded)."""
    if app.testing or "users" not in inspect(db.engine).get_table_names():
        return
    if db.session.scalar(select(User.id).limit(1)) is None:
        app.logger.warning(
            "No staff accounts yet. Create the first admin with: "
            "flask --app crm create-user EMAIL --role admin"
        )
    db.session.rollback()
