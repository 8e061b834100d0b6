"""Database wiring: engine settings, SQLite pragmas, migrations and the key-id start-up check."""

from __future__ import annotations

import fcntl
import hmac
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import flask_migrate
from flask import Flask
from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import Pool

from . import audit, crypto, integrity
from .models import (
    SEALED_COLUMNS,
    AuditEvent,
    KeyCheck,
    Lead,
    LeadKey,
    User,
    db,
    lead_key_counts,
    sealed_secret_counts,
)
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
    cursor.execute("PRAGMA secure_delete = ON")  # erased rows are zeroed on disk, not left in free space
    cursor.close()


class WriterQueue:
    """Queue an SQLite database's writers in the kernel rather than in SQLite's busy handler.

    Every SQLite transaction here starts with ``BEGIN IMMEDIATE`` (one writer at a time keeps
    the audit chain linear). SQLite makes the others retry after sleeps of up to 100 ms,
    which under load turns a 5 ms write into a long tail. Instead, each writer first takes a
    thread lock (threads of one process) and then an exclusive ``flock`` on a file beside the
    database (processes): both wake the next writer the moment the previous one commits.
    A thread lock not won within the busy timeout falls back to SQLite's own waiting.
    """

    def __init__(self, database: str):
        self._threads = threading.Lock()
        self._fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self) -> bool:
        """Wait for this database's write turn; False when it could not be had in time."""
        if not self._threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            return False
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        """Hand the write turn to the next waiter."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


_queues: dict[str, WriterQueue] = {}
_queues_lock = threading.Lock()


def _forget_queues_after_fork() -> None:
    """A forked worker (``gunicorn --preload``) opens its own lock files: a ``flock`` held through
    a descriptor shared with the parent would not keep the two processes apart."""
    global _queues_lock
    _queues.clear()
    _queues_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_queues_after_fork)
_HELD = "crm_writer_turn"


def _writer_queue(conn: Any) -> WriterQueue | None:
    """The writer queue of a file-backed SQLite database (None for in-memory ones)."""
    database = conn.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    with _queues_lock:
        queue = _queues.get(database)
        if queue is None:
            try:
                queue = _queues[database] = WriterQueue(database)
            except OSError:  # an unwritable folder: SQLite's own locking still keeps writers apart
                return None
        return queue


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    """Take the write turn, then SQLite's write lock, before the transaction does anything."""
    if conn.dialect.name != "sqlite":
        return
    if _HELD not in conn.info:
        queue = _writer_queue(conn)
        if queue is not None and queue.acquire():
            conn.info[_HELD] = queue
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _end_and_hand_over(conn: Any, statement: str) -> None:
    """End the transaction on the driver connection, then hand the write turn to the next writer.

    Ending it here, before SQLAlchemy's own (then no-op) commit or rollback, means the next
    writer starts only once this transaction is on disk or undone.
    """
    queue = conn.info.pop(_HELD, None) if conn.dialect.name == "sqlite" else None
    if queue is None:
        return
    try:
        driver = conn.connection.driver_connection
        if driver.in_transaction:
            driver.execute(statement)
    finally:
        queue.release()


@event.listens_for(Engine, "commit")
def _sqlite_commit(conn: Any) -> None:
    """Commit, then hand over the write turn."""
    _end_and_hand_over(conn, "COMMIT")


@event.listens_for(Engine, "rollback")
def _sqlite_rollback(conn: Any) -> None:
    """Roll back, then hand over the write turn."""
    _end_and_hand_over(conn, "ROLLBACK")


@event.listens_for(Pool, "checkin")
def _release_on_checkin(_dbapi_connection: Any, record: Any) -> None:
    """Never let a connection go back to the pool still holding the write turn."""
    queue = record.info.pop(_HELD, None) if record is not None else None
    if queue is not None:
        queue.release()


def init_app(app: Flask) -> None:
    """Bind the database, register migrations, upgrade on first run and check key ids.

    A database that cannot be opened, created or written at start refuses to start with one line
    (:class:`ConfigError`), rather than a traceback in every worker.
    """
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, compare_type=True)
    with app.app_context():
        try:
            _make_sqlite_file_private()
            if app.config["AUTO_MIGRATE"]:
                flask_migrate.upgrade(directory=MIGRATIONS)
            _check_key_ids(app)
            _check_key_values(app)
            _seal_legacy_accounts()
            _tell_about_first_admin(app)
        except (OSError, SQLAlchemyError) as exc:
            raise ConfigError(storage_refusal(exc)) from None
        finally:
            db.session.remove()
        db.engine.dispose()  # no connection opened here outlives start-up: ``gunicorn --preload`` forks after it


def storage_refusal(exc: BaseException) -> str:
    """One line naming the database (password hidden) and why it cannot be used."""
    where = db.engine.url.render_as_string(hide_password=True)
    reason = getattr(exc, "orig", None) or exc
    detail = " ".join(str(reason).split()) or type(reason).__name__
    return f"the database {where} cannot be opened or written ({type(reason).__name__}: {detail})"


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
    kids = set(lead_key_counts()) | set(sealed_secret_counts())
    db.session.rollback()
    missing = sorted(kids - set(ring.master_keys))
    if missing:
        raise ConfigError(f"the database holds data for key id(s) {missing} that the keyring lacks")


def _check_key_values(app: Flask) -> None:
    """Refuse a keyring whose keys differ from those the stored data was written with, ids alike.

    A key check value (a MAC of a constant, see :meth:`crypto.Keyring.check_values`) is kept per
    key that protects stored data; a mismatch refuses to start. A value is recorded the first
    time a start finds data under its key, and only after one item of that data proved the key
    right; a key with no data yet has nothing to protect (a stale value for it is dropped).
    """
    if "key_checks" not in inspect(db.engine).get_table_names():
        return
    ring: crypto.Keyring = app.extensions["crm_keyring"]
    stored = {row.name: row for row in db.session.scalars(select(KeyCheck))}
    in_use = _names_in_use()
    for name, value in ring.check_values().items():
        row = stored.get(name)
        if row is not None and hmac.compare_digest(bytes(row.value), value):
            continue
        if name not in in_use:  # nothing under this key yet: nothing to record or protect
            if row is not None:
                db.session.delete(row)
            continue
        if row is not None or not _key_opens_stored_data(ring, name):
            db.session.rollback()
            raise ConfigError(f"the keyring's {_key_label(name)} is not the one the database's data was "
                              "written with (key check value differs); restore the matching keyring")
        db.session.add(KeyCheck(name=name, value=value))
    try:
        db.session.commit()
    except IntegrityError:  # another worker starting at the same moment recorded them first
        db.session.rollback()


def _key_label(name: str) -> str:
    return f"master key {name.split(':')[1]}" if name.startswith("master:") else f"{name} key"


def _names_in_use() -> set[str]:
    """Key check names whose key protects stored data."""
    names = {f"master:{kid}" for kid in set(lead_key_counts()) | set(sealed_secret_counts())}
    if db.session.scalar(select(AuditEvent.seq).limit(1)) is not None:
        names.add("audit")
    if db.session.scalar(select(Lead.id).limit(1)) is not None:
        names.add("index")
    return names


def _key_opens_stored_data(ring: crypto.Keyring, name: str) -> bool:
    """Prove a key against one stored item: unwrap a lead key, unseal a secret, check the first MAC.

    The blind-index key has nothing to prove it against, so it is taken as it is.
    """
    if name == "audit":
        first = db.session.scalar(select(AuditEvent).order_by(AuditEvent.seq).limit(1))
        return audit.compute_mac(ring.audit_key, first.prev_mac, first) == bytes(first.mac)
    if name == "index":
        return True
    kid = int(name.split(":")[1])
    key = db.session.scalar(select(LeadKey).where(LeadKey.kid == kid).limit(1))
    try:
        if key is not None:
            crypto.unwrap_data_key(ring, key.lead_id, kid, key.nonce, key.wrapped)
            return True
        for table, column, purpose in SEALED_COLUMNS:
            for row_id, blob in db.session.execute(select(table.c.id, column).where(column.is_not(None))):
                if crypto.sealed_kid(blob) == kid:
                    crypto.unseal(ring, purpose, row_id, blob)
                    return True
    except crypto.CryptoError:
        return False
    return True


def holds_encrypted_data(app: Flask) -> bool:
    """True when the configured database already holds data only a keyring can read (checked before one exists)."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and (not url.database or not Path(url.database).exists()):
        return False
    options = {k: v for k, v in app.config["SQLALCHEMY_ENGINE_OPTIONS"].items() if k == "connect_args"}
    engine = create_engine(url, **options)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            sealed = User.__table__.c.totp_secret_sealed
            probes = [("lead_keys", select(LeadKey.lead_id)), ("users", select(sealed).where(sealed.is_not(None)))]
            return any(table in tables and conn.execute(probe.limit(1)).first() is not None
                       for table, probe in probes)
    finally:
        engine.dispose()


def _seal_legacy_accounts() -> None:
    """On the first start after the upgrade that added account MACs, MAC the existing accounts."""
    if "security_mac" not in {c["name"] for c in _columns("users")}:
        return
    if integrity.seal_legacy_accounts():
        db.session.commit()
    db.session.rollback()


def _columns(table: str) -> list[dict]:
    inspector = inspect(db.engine)
    return inspector.get_columns(table) if table in inspector.get_table_names() else []


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
