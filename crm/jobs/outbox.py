"""Deliver the outbox: claim due rows, send each with its idempotency key, mark it sent once.

A claim is a short transaction that pushes each row's ``next_attempt_at`` one lease ahead
and counts the attempt (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers take
different rows; SQLite's single writer already keeps two claims apart). The send happens
outside any transaction; then the row is marked sent (a backlog in groups), or due again after an exponential
back-off, or failed after the last attempt. A worker killed between sending and marking
leaves the row to come due when its lease ends, and it is sent again with the same key.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import bindparam, select, update

from .. import crypto, statements
from ..models import OutboxMessage, db, keyring, utcnow
from ..operations.alerts import LINK_SLOT
from .senders import Outgoing, Sender, SendError

log = logging.getLogger("crm.jobs")
MAX_BACKOFF_SECONDS = 3600
MARK_EVERY = 20  # deliveries marked sent per statement while draining a backlog
PENDING, SENT, FAILED = "pending", "sent", "failed"

_DUE = select(OutboxMessage.id).where(OutboxMessage.status == PENDING,
                                      OutboxMessage.next_attempt_at <= bindparam("now")).limit(1)


@dataclass(frozen=True)
class Claimed:
    """A row this worker holds until its lease ends: what to send, and on which channel."""

    id: str
    channel: str
    attempts: int
    outgoing: Outgoing


def anything_due(now: dt.datetime) -> bool:
    """True when some row is due; read without a write transaction, so an idle worker locks nothing."""
    return bool(statements.snapshot_rows(_DUE, {"now": now}))


def claim(limit: int, now: dt.datetime) -> list[Claimed]:
    """Take up to ``limit`` due rows for one lease, oldest first, and commit the claim."""
    lease = now + dt.timedelta(seconds=float(current_app.config["OUTBOX_LEASE_SECONDS"]))
    rows = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.attempts, OutboxMessage.idempotency_key,
               OutboxMessage.recipient, OutboxMessage.subject, OutboxMessage.body, OutboxMessage.secret_sealed)
        .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    ).all()
    if rows:
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows]))
                           .values(attempts=OutboxMessage.attempts + 1, next_attempt_at=lease))
    claimed = [Claimed(r.id, r.channel, r.attempts + 1, Outgoing(r.idempotency_key, r.recipient, r.subject,
                                                                 _fill_link(r.id, r.body, r.secret_sealed)))
               for r in rows]
    db.session.commit()
    return claimed


def _fill_link(row_id: str, body: str, sealed: bytes | None) -> str:
    """Put a sealed link (an invitation) into the body it belongs to."""
    if sealed is None:
        return body
    return body.replace(LINK_SLOT, crypto.unseal(keyring(), "outbox", row_id, bytes(sealed)).decode())


def mark_sent(ids: list[str], now: dt.datetime | None = None) -> int:
    """Record delivery once (a second mark changes nothing) and drop any sealed link; commits.

    Returns how many rows changed.
    """
    if not ids:
        return 0
    changed = db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.status == PENDING)
        .values(status=SENT, sent_at=now or utcnow(), secret_sealed=None, last_error=None)).rowcount
    db.session.commit()
    return changed


def backoff(attempts: int) -> dt.timedelta:
    """Wait before the next try: the configured base, doubled per failed attempt, at most an hour."""
    base = float(current_app.config["OUTBOX_BACKOFF_SECONDS"])
    return dt.timedelta(seconds=min(base * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS))


def mark_failed_attempt(item: Claimed, reason: str, now: dt.datetime | None = None) -> str:
    """Schedule a retry after the back-off, or move the row to the failed list after the last try."""
    now = now or utcnow()
    final = item.attempts >= int(current_app.config["OUTBOX_MAX_ATTEMPTS"])
    values = {"status": FAILED} if final else {"next_attempt_at": now + backoff(item.attempts)}
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == item.id, OutboxMessage.status == PENDING)
                       .values(last_error=reason[:200], **values))
    db.session.commit()
    return FAILED if final else PENDING


def release(items: list[Claimed], now: dt.datetime | None = None) -> None:
    """Hand back claimed rows this worker will not send (it was asked to stop), uncounted."""
    for item in items:
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == item.id, OutboxMessage.status == PENDING)
                           .values(attempts=item.attempts - 1, next_attempt_at=now or utcnow()))
    db.session.commit()


def deliver(senders: Mapping[str, Sender], *, batch: int = 50, stop: threading.Event | None = None) -> int:
    """Claim one batch of due rows and send them; returns how many were claimed.

    Deliveries are marked in groups of up to :data:`MARK_EVERY`, one statement each: a
    message arriving alone is marked as soon as it is sent, while a backlog costs one
    commit per group, and a crash resends at most one group, each with its own key.
    """
    claimed = claim(batch, utcnow())
    sent: list[str] = []
    for index, item in enumerate(claimed):
        if stop is not None and stop.is_set():
            release(claimed[index:])
            break
        if _deliver_one(senders, item):
            sent.append(item.id)
        if len(sent) >= MARK_EVERY:
            mark_sent(sent)
            sent = []
    mark_sent(sent)
    return len(claimed)


def _deliver_one(senders: Mapping[str, Sender], item: Claimed) -> bool:
    """Send one message; a failure is recorded at once (retry or failed list). True when sent."""
    sender = senders.get(item.channel)
    try:
        if sender is None:
            raise SendError(f"{item.channel}_off")
        sender.send(item.outgoing)
    except SendError as exc:
        outcome = mark_failed_attempt(item, str(exc))
        log.warning("outbox message %s attempt %d failed (%s); now %s", item.id, item.attempts, exc, outcome)
        return False
    return True
