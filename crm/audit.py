"""Append events to the HMAC-chained audit log, in the caller's transaction.

``mac_n = HMAC-SHA256(audit key, mac_{n-1} || canonical JSON of row n)``, with the audit
key from the keyring (never the database). One writer at a time: ``BEGIN IMMEDIATE`` on
SQLite (see ``crm.database``) and a transaction-scoped advisory lock on PostgreSQL, so
concurrent requests never fork the chain. Details carry codes and ids, never PHI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import select, text

from .models import AuditEvent, User, db, keyring, utcnow

GENESIS_MAC = bytes(32)
ADVISORY_LOCK_ID = 727_274_001
_SAFE_DETAIL = re.compile(r"^[A-Za-z0-9_.:/-]{0,80}$")


def canonical(event: AuditEvent) -> bytes:
    """Return the canonical bytes of an event without its MACs."""
    row = {
        "seq": event.seq,
        "at": event.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "outcome": event.outcome,
        "ip": event.ip,
        "request_id": event.request_id,
        "details": json.loads(event.details),
    }
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_mac(key: bytes, prev_mac: bytes, event: AuditEvent) -> bytes:
    """MAC of an event chained to its predecessor."""
    return hmac.new(key, bytes(prev_mac) + canonical(event), hashlib.sha256).digest()


def check_details(details: dict[str, Any]) -> str:
    """Serialise details, refusing anything but short codes, numbers and booleans (no PHI)."""
    for key, value in details.items():
        if not _SAFE_DETAIL.match(key):
            raise ValueError(f"audit detail key {key!r} is not a code")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and not _SAFE_DETAIL.match(item):
                raise ValueError(f"audit detail {key!r} must be a code, not free text")
            if not isinstance(item, str | int | float | bool | type(None)):
                raise ValueError(f"audit detail {key!r} has an unsupported type")
    return json.dumps(details, sort_keys=True, separators=(",", ":"))


def _lock_chain() -> None:
    """Serialise audit writers; SQLite already holds the write lock from BEGIN IMMEDIATE."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})


def head() -> tuple[int, bytes]:
    """Return ``(seq, mac)`` of the newest event, or ``(0, GENESIS_MAC)`` for an empty log."""
    row = db.session.execute(
        select(AuditEvent.seq, AuditEvent.mac).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    return (row.seq, bytes(row.mac)) if row else (0, GENESIS_MAC)


def _request_facts() -> tuple[str | None, str | None]:
    if not has_request_context():
        return None, None
    return request.remote_addr, g.get("request_id")


def record(
    action: str,
    *,
    actor: User | None = None,
    actor_kind: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> AuditEvent:
    """Append one event to the chain and flush it; the caller's commit makes it durable.

    ``actor_kind`` defaults to ``user`` when an actor is given, else ``system``; pass
    ``public`` for anonymous visitors.
    """
    serialized = check_details(details or {})
    _lock_chain()
    seq, prev_mac = head()
    ip, request_id = _request_facts()
    event = AuditEvent(
        seq=seq + 1,
        at=at or utcnow(),
        actor_kind=actor_kind or ("user" if actor is not None else "system"),
        actor_id=actor.id if actor is not None else None,
        action=action,
        object_type=object_type,
        object_id=object_id,
        outcome=outcome,
        ip=ip,
        request_id=request_id,
        details=serialized,
        prev_mac=prev_mac,
    )
    event.mac = compute_mac(keyring().audit_key, prev_mac, event)
    db.session.add(event)
    db.session.flush()
    return event
