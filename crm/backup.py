"""Consistent SQLite backups taken while the app runs, each with a manifest.

SQLite's online backup API copies the database in one step inside a read transaction, so
the copy is one consistent snapshot even while enquiries are being written (WAL readers do
not block writers). The manifest says what a restore needs: the schema revision, the master
key ids the data is wrapped under (the keyring itself is never in a backup) and the time.
PostgreSQL is backed up with ``pg_dump`` (docs/deployment.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine

from . import ledger
from .models import db, keyring, lead_key_counts, sealed_secret_counts, utcnow

MANIFEST_FORMAT = "crm-backup-v1"


class BackupError(Exception):
    """A backup that cannot be made; the message says why, in words."""


def manifest_path(path: Path) -> Path:
    """Where the manifest of the backup at ``path`` is written."""
    return path.with_name(f"{path.name}.manifest.json")


def schema_revision() -> str | None:
    """The Alembic revision the database is at (None for a schema made without migrations)."""
    if "alembic_version" not in inspect(db.session.connection()).get_table_names():
        return None
    return db.session.scalar(text("SELECT version_num FROM alembic_version"))


def make_sqlite_backup(path: Path) -> dict[str, Any]:
    """Copy the running SQLite database to ``path`` (mode 0600) and write its manifest; return the manifest."""
    if db.engine.dialect.name != "sqlite":
        raise BackupError("this database is PostgreSQL: back it up with pg_dump (see docs/deployment.md)")
    if path.exists() or manifest_path(path).exists():
        raise BackupError(f"{path.name} already exists; choose a new file name")
    manifest = _manifest_facts()
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    raw = db.engine.raw_connection()
    try:
        target = sqlite3.connect(path)
        try:
            raw.driver_connection.backup(target)  # one step: a single consistent snapshot
            target.execute("PRAGMA journal_mode = DELETE")  # the copy is one self-contained file
            # counted in the copy: enquiries committed while it was taken are in it, or not, as they are there
            manifest["leads"] = target.execute("SELECT count(*) FROM leads").fetchone()[0]
        finally:
            target.close()
    finally:
        raw.close()
    manifest.update(file=path.name, size=path.stat().st_size, sha256=_sha256(path))
    _write_private(manifest_path(path), json.dumps(manifest, indent=2) + "\n")
    return manifest


def _manifest_facts() -> dict[str, Any]:
    """What a restore needs to know, read before the copy (key ids may only grow during it)."""
    kids = sorted(set(lead_key_counts()) | set(sealed_secret_counts()))
    facts = {
        "format": MANIFEST_FORMAT,
        "created_at": utcnow().isoformat(timespec="seconds") + "Z",
        "schema_revision": schema_revision(),
        "key_ids": kids,
        "primary_key_id": keyring().primary.kid,
        "shred_ledger_entries": ledger.count(),
    }
    db.session.rollback()
    return facts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)


SQLITE_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default
_checkpoints_deferred: ContextVar[bool] = ContextVar("checkpoints_deferred", default=False)


@contextmanager
def checkpoints_deferred() -> Iterator[None]:
    """While a long batch job runs, its SQLite commits do not stop to checkpoint.

    A batch that leaves the WAL past 1,000 pages would otherwise fold it in inside its COMMIT,
    still holding the write lock every staff request waits for. The job calls
    ``checkpoint_sqlite("PASSIVE")`` between batches instead, outside the lock.
    """
    token = _checkpoints_deferred.set(True)
    try:
        yield
    finally:
        _checkpoints_deferred.reset(token)


@event.listens_for(Engine, "begin")
def _autocheckpoint(conn: Any) -> None:
    """Set the connection's auto-checkpoint for this transaction (off inside :func:`checkpoints_deferred`)."""
    if conn.dialect.name != "sqlite":
        return
    pages = 0 if _checkpoints_deferred.get() else SQLITE_AUTOCHECKPOINT_PAGES
    if conn.info.get("wal_autocheckpoint", SQLITE_AUTOCHECKPOINT_PAGES) != pages:
        conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {pages}")
        conn.info["wal_autocheckpoint"] = pages


def checkpoint_sqlite(mode: str = "TRUNCATE") -> None:
    """Fold the SQLite write-ahead log into the database.

    ``TRUNCATE`` waits for writers and empties the file, so erased pages leave the WAL.
    ``PASSIVE`` copies what it can and blocks nobody: a long job calls it between its batches
    (outside the write lock), so that no other writer's commit pays for folding in the job's
    pages (SQLite checkpoints inside whichever commit finds the WAL past 1,000 pages).
    """
    if mode not in ("TRUNCATE", "PASSIVE"):
        raise ValueError(mode)
    if db.engine.dialect.name != "sqlite":
        return
    db.session.close()  # call after committing: an open transaction would hold the checkpoint back
    raw = db.engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
    try:
        raw.driver_connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
    finally:
        raw.close()
