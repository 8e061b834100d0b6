"""PostgreSQL advisory locks, held until the transaction ends: every lock id and the SQL that takes them.

SQLite needs none of them: every transaction there starts with ``BEGIN IMMEDIATE`` and so
already holds the one write lock. Ids are fixed numbers in one namespace, listed here so no
two uses can collide.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import text

from . import statements
from .models import db

AUDIT_CHAIN = 727_274_001  # one writer appends to the audit chain at a time
SIGN_IN_ATTEMPTS = 727_274_002  # (class, key): one lock per account key and address
FORM_LOCK, PHONE_LOCK, EMAIL_LOCK = 727_274_010, 727_274_011, 727_274_012  # (class, key): enquiries
PERIODIC_JOBS = 727_274_016  # (class, key): one worker runs each periodic job at a time

_HOLD_PAIR = text("SELECT pg_advisory_xact_lock(:kind, :key)")
_TRY_ONE = text("SELECT pg_try_advisory_xact_lock(:id)")
_TRY_PAIR = text("SELECT pg_try_advisory_xact_lock(:kind, :key)")


def on_postgresql() -> bool:
    """True when the session's database takes advisory locks (PostgreSQL)."""
    return db.session.get_bind().dialect.name == "postgresql"


def hold(lock_id: int, key: int | None = None) -> None:
    """Wait for the lock ``lock_id`` (or ``(lock_id, key)``) on PostgreSQL; nothing on SQLite."""
    if not on_postgresql():
        return
    if key is None:
        statements.rows_in_turn(*taking(lock_id))
    else:
        db.session.execute(_HOLD_PAIR, {"kind": lock_id, "key": key})


_HOLD_IN_ORDER = statements.Lookup(lambda: text(
    "SELECT pg_advisory_xact_lock(kind, key) FROM unnest(CAST(:kinds AS integer[]), CAST(:keys AS integer[])) "
    "WITH ORDINALITY AS wanted(kind, key, n) ORDER BY n"))
_HOLD_ONE = statements.Lookup(lambda: text("SELECT pg_advisory_xact_lock(:id)"))

#: A query to run, with its values, in turn with others (see :func:`crm.statements.rows_in_turn`).
Call = tuple[statements.Lookup, dict[str, Any]]


def taking_in_order(pairs: list[tuple[int, int]]) -> list[Call]:
    """The query that waits for every ``(lock_id, key)`` lock in turn, in the order given; none on SQLite."""
    if not pairs or not on_postgresql():
        return []
    return [(_HOLD_IN_ORDER, {"kinds": [kind for kind, _ in pairs], "keys": [key for _, key in pairs]})]


def taking(lock_id: int) -> list[Call]:
    """The query that waits for the lock ``lock_id``; none on SQLite."""
    return [(_HOLD_ONE, {"id": lock_id})] if on_postgresql() else []


def hold_in_order(pairs: list[tuple[int, int]]) -> None:
    """Wait for every ``(lock_id, key)`` lock in turn, in the order given, in one round trip; nothing on SQLite."""
    statements.rows_in_turn(*taking_in_order(pairs))


def try_hold(lock_id: int, key: int | None = None) -> bool:
    """Take the lock ``lock_id`` (or ``(lock_id, key)``) if it is free, without waiting; always True on SQLite."""
    if not on_postgresql():
        return True
    if key is None:
        return bool(db.session.scalar(_TRY_ONE, {"id": lock_id}))
    return bool(db.session.scalar(_TRY_PAIR, {"kind": lock_id, "key": key}))


def key_of(name: str) -> int:
    """A signed 32-bit lock key for ``name`` (a lock's second number must fit an ``int4``)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) - 2**31
