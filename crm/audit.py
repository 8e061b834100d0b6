"""Append events to the HMAC-chained audit log, verify the chain and sign its head.

``mac_n = HMAC-SHA256(audit key, mac_{n-1} || canonical row n)``, with the audit key
from the keyring (never the database). One writer at a time: ``BEGIN IMMEDIATE`` on
SQLite (see ``crm.database``) and a transaction-scoped advisory lock on PostgreSQL, so
concurrent requests never fork the chain. Details carry codes and ids, never PHI.

A chain alone cannot show that its newest events were cut off; a signed head exported
off the box (``seq``, ``mac``, ``at`` with an Ed25519 signature) can.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _esc
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import ColumnElement, Row, bindparam, func, select

from . import crypto, locks, statements
from .models import UUID_TEXT, AuditEvent, User, db, keyring, utcnow

GENESIS_MAC = bytes(32)
HEAD_FORMAT = "crm-audit-head-v1"
VERIFY_BATCH = 20_000
BEFORE_ANY_SEQ = -(2**62)  # a keyset start that also reads stray rows with seq <= 0
_CODE = re.compile(r"^[a-z0-9_.:/-]{0,80}$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?$")
_DIGIT_RUN = re.compile(r"\d{7}")  # phone, member or record numbers; counts are ints, not text

#: The action vocabulary; :func:`record` refuses anything else, so a typo cannot hide an event.
ACTIONS = frozenset(
    {
        "sign_in", "sign_out", "session_expired", "session_revoked", "second_factor",
        "password_changed", "reauthenticated", "user_created", "user_invited",
        "user_deactivated", "user_reactivated", "role_changed", "access_denied",
        "enquiry_received", "leads_listed", "lead_viewed", "field_revealed", "card_viewed", "lead_exported",
        "stage_changed", "lead_assigned", "note_added", "attempt_logged", "callback_scheduled",
        "urgent_acknowledged", "crisis_escalated", "vob_recorded", "screening_recorded",
        "screening_signed_off", "screening_draft_saved", "decrypt_failed", "audit_viewed", "audit_exported",
        "audit_verified", "key_added", "key_promoted", "key_retired", "keys_rotated",
        "settings_changed", "lead_erased", "do_not_contact_set", "do_not_contact_lifted", "legal_hold_set",
        "legal_hold_released", "access_requested", "retention_applied", "backup_made", "restore_checked",
        "report_viewed", "report_exported", "preferred_language_changed",
        "lead_created", "call_added", "lead_corrected", "lead_edit_opened", "previous_values_revealed",
        "proposal_accepted", "proposal_dismissed", "lead_merged", "leads_imported", "import_previewed", "alert_resent",
        "integrity_failed", "accounts_sealed", "emergency_access_granted",
        "emergency_access_used", "emergency_access_ended",
        "appointment_booked", "appointment_rescheduled", "appointment_cancelled", "appointment_attended",
        "appointment_no_show", "appointment_exported", "lead_converted", "work_handed_over",
    }
)
OBJECT_TYPES = frozenset(
    {"user", "lead", "session", "endpoint", "key", "audit", "settings", "backup", "report", "alert"}
)

#: Columns in canonical order (keys sorted), then the two MACs; the verifier reads exactly these.
CHAIN_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.action,
    AuditEvent.actor_email,
    AuditEvent.actor_id,
    AuditEvent.actor_kind,
    AuditEvent.at,
    AuditEvent.details,
    AuditEvent.ip,
    AuditEvent.object_id,
    AuditEvent.object_type,
    AuditEvent.outcome,
    AuditEvent.request_id,
    AuditEvent.prev_mac,
    AuditEvent.mac,
)


# --- canonical form and MACs ----------------------------------------------------------


@dataclass(slots=True)
class ChainedEvent:
    """An event as :func:`record` appends it: the chain columns of an ``audit_events`` row."""

    seq: int
    action: str
    actor_email: str | None
    actor_id: str | None
    actor_kind: str
    at: dt.datetime
    details: str
    ip: str | None
    object_id: str | None
    object_type: str | None
    outcome: str
    request_id: str | None
    prev_mac: bytes
    mac: bytes = b""


def _json(value: str | None) -> str:
    return "null" if value is None else _esc(value)


def _iso(at: dt.datetime | str) -> str:
    """ISO-8601 with microseconds; SQLite's driver hands back the stored text, not a datetime."""
    if isinstance(at, str):
        if len(at) == 26 and at[10] == " ":  # SQLite's stored form, 'YYYY-MM-DD HH:MM:SS.ffffff'
            return f"{at[:10]}T{at[11:]}"
        at = dt.datetime.fromisoformat(at)
    return at.isoformat(timespec="microseconds")


def canonical_row(
    seq: int,
    action: str,
    actor_email: str | None,
    actor_id: str | None,
    actor_kind: str,
    at: dt.datetime | str,
    details: str,
    ip: str | None,
    object_id: str | None,
    object_type: str | None,
    outcome: str,
    request_id: str | None,
) -> bytes:
    """Return the canonical JSON of one event: sorted keys, no spaces, ISO time with Z.

    ``details`` is embedded as stored: :func:`check_details` already wrote it as canonical
    JSON, so the verifier never re-parses it and any rewrite of the text breaks the MAC.
    ``actor_email`` appears only when recorded (events written before it existed have none,
    and keep the form their MAC was made over); adding or removing it breaks the MAC too.
    """
    email = "" if actor_email is None else f'"actor_email":{_esc(actor_email)},'
    return (
        f'{{"action":{_esc(action)},{email}"actor_id":{_json(actor_id)},"actor_kind":{_esc(actor_kind)},'
        f'"at":"{_iso(at)}Z","details":{details},"ip":{_json(ip)},'
        f'"object_id":{_json(object_id)},"object_type":{_json(object_type)},'
        f'"outcome":{_esc(outcome)},"request_id":{_json(request_id)},"seq":{seq:d}}}'
    ).encode()


def canonical(event: AuditEvent | ChainedEvent) -> bytes:
    """Return the canonical bytes of an event without its MACs."""
    return canonical_row(
        event.seq, event.action, event.actor_email, event.actor_id, event.actor_kind, event.at, event.details,
        event.ip, event.object_id, event.object_type, event.outcome, event.request_id,
    )


@functools.lru_cache(maxsize=4)
def _keyed_hmac(key: bytes) -> HMAC:
    """HMAC-SHA256 with ``key`` already absorbed: each MAC starts from a copy, skipping the key setup."""
    return HMAC(key, SHA256())


def chain_mac(key: bytes, prev_mac: bytes, canonical_bytes: bytes) -> bytes:
    """``HMAC-SHA256(key, prev_mac || canonical_bytes)``: one link of the chain."""
    mac = _keyed_hmac(key).copy()
    mac.update(prev_mac)
    mac.update(canonical_bytes)
    return mac.finalize()


def compute_mac(key: bytes, prev_mac: bytes, event: AuditEvent | ChainedEvent) -> bytes:
    """MAC of an event chained to its predecessor."""
    return chain_mac(key, bytes(prev_mac), canonical(event))


def _is_code(value: str) -> bool:
    """True for ids, ISO times and short lower-case codes: never names, free text or long numbers."""
    if _CODE.match(value) and not _DIGIT_RUN.search(value):
        return True
    return bool(UUID_TEXT.match(value) or _ISO_TIME.match(value))


#: Detail keys are written in code, so each distinct key is checked once per process.
_is_code_key = functools.lru_cache(maxsize=256)(_is_code)
_DETAILS_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def check_details(details: dict[str, Any]) -> str:
    """Serialise details, refusing anything but short codes, numbers and booleans (no PHI).

    Capitalised words, spaces, ``@`` and runs of seven or more digits are refused, which
    keeps out names, free text, e-mail addresses and phone or member numbers.
    """
    for key, value in details.items():
        if not isinstance(key, str) or not _is_code_key(key):
            raise ValueError(f"audit detail key {key!r} is not a code")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and not _is_code(item):
                raise ValueError(f"audit detail {key!r} must be a code, not free text")
            if not isinstance(item, str | int | float | bool | type(None)):
                raise ValueError(f"audit detail {key!r} has an unsupported type")
    return _DETAILS_JSON.encode(details)


# --- writing --------------------------------------------------------------------------


#: The newest event; read while holding the chain lock, so compiled once (see ``crm.statements``).
_HEAD = statements.Lookup(lambda: select(AuditEvent.seq, AuditEvent.mac).order_by(AuditEvent.seq.desc()).limit(1))


def head() -> tuple[int, bytes]:
    """Take the chain lock, then return ``(seq, mac)`` of the newest event, or ``(0, GENESIS_MAC)``
    for an empty log: one round trip on PostgreSQL (SQLite already holds the write lock from
    BEGIN IMMEDIATE, which serialises writers there)."""
    *_, rows = statements.rows_in_turn(*locks.taking(locks.AUDIT_CHAIN), (_HEAD, {}))
    return (rows[0][0], bytes(rows[0][1])) if rows else (0, GENESIS_MAC)


def _request_facts() -> tuple[str | None, str | None]:
    if not has_request_context():
        return None, None
    return request.remote_addr, g.get("request_id")


def _check_vocabulary(action: str, object_type: str | None) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if object_type is not None and object_type not in OBJECT_TYPES:
        raise ValueError(f"unknown audit object type {object_type!r}")


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
    record_ip: bool = True,
) -> ChainedEvent:
    """Append one event to the chain in the caller's transaction; the caller's commit makes it durable.

    ``actor_kind`` defaults to ``user`` when an actor is given, else ``system``; pass
    ``public`` for anonymous visitors. Inside a request the client IP and request id
    are filled in; pass ``record_ip=False`` for patients, whose IP address is PHI and
    must not sit in a log that can never be purged. Inside :func:`appended_last` the event
    is appended when the block ends (its ``seq`` and MAC are set then).
    """
    _check_vocabulary(action, object_type)
    ip, request_id = _request_facts()
    event = ChainedEvent(
        seq=0,
        at=at or utcnow(),
        actor_kind=actor_kind or ("user" if actor is not None else "system"),
        actor_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else None,
        action=action,
        object_type=object_type,
        object_id=object_id,
        outcome=outcome,
        ip=ip if record_ip else None,
        request_id=request_id,
        details=check_details(details or {}),
        prev_mac=GENESIS_MAC,
    )
    waiting = db.session.info.get(_WAITING)
    if waiting is not None:
        waiting.append(event)
    else:
        _append([event])
    return event


_WAITING = "crm.audit.waiting"


@contextmanager
def appended_last() -> Iterator[None]:
    """Append the events recorded inside the block when it ends, after everything else it did.

    For operations that record as they go and then read or write more: the chain's lock (held
    until the commit) is taken once, at the end, so other writers wait only for the commit.
    An error inside drops them, with the transaction the caller then rolls back. Nested
    blocks join the outermost.
    """
    if db.session.info.get(_WAITING) is not None:
        yield
        return
    waiting: list[ChainedEvent] = []
    db.session.info[_WAITING] = waiting
    try:
        yield
    finally:
        del db.session.info[_WAITING]
    if waiting:
        _append(waiting)


def _append(events: list[ChainedEvent]) -> None:
    """Chain ``events`` to the head, in order, and insert them in one statement."""
    db.session.flush()  # write the changes being recorded first, before taking the chain lock
    seq, prev_mac = head()
    key = keyring().audit_key
    for event in events:
        seq += 1
        event.seq, event.prev_mac = seq, prev_mac
        event.mac = prev_mac = compute_mac(key, prev_mac, event)
    # On the session's connection: same transaction, a fraction of a flush's cost.
    statements.insert_rows(AuditEvent.__table__,
                           [{column.key: getattr(event, column.key) for column in CHAIN_COLUMNS} for event in events])


# --- reading ---------------------------------------------------------------------------

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilter:
    """What the viewer and the export select: all given conditions must hold.

    ``since`` and ``until`` are naive UTC (``until`` exclusive); ``before`` and ``after``
    are keyset cursors (a seq) for paging towards older or newer events.
    """

    actor_id: str | None = None
    lead_id: str | None = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before: int | None = None
    after: int | None = None

    def criteria(self) -> list[ColumnElement[bool]]:
        """SQL conditions for the filter (without the paging cursors)."""
        conditions: list[ColumnElement[bool]] = []
        if self.actor_id:
            conditions.append(AuditEvent.actor_id == self.actor_id)
        if self.lead_id:
            conditions += [AuditEvent.object_type == "lead", AuditEvent.object_id == self.lead_id]
        if self.action:
            conditions.append(AuditEvent.action == self.action)
        in_range = ([AuditEvent.at >= self.since] if self.since else []) + (
            [AuditEvent.at < self.until] if self.until else []
        )
        if in_range:
            conditions += [*in_range, AuditEvent.seq.between(*_seq_bounds(in_range))]
        return conditions

    def codes(self) -> dict[str, Any]:
        """The filter as audit details (ids, codes and ISO times only)."""
        values = {name: getattr(self, name) for name in ("actor_id", "lead_id", "action", "since", "until")}
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items() if v}


def _seq_bounds(in_range: list[ColumnElement[bool]]) -> tuple[Any, Any]:
    """The lowest and highest seq within a time range, from the ``at`` index.

    Bounding seq lets a date filter walk the primary key in page order instead of
    sorting every event of the range; it stays exact even if clocks stepped back.
    """
    scope = select(func.min(AuditEvent.seq), func.max(AuditEvent.seq)).where(*in_range).subquery()
    return select(scope.c[0]).scalar_subquery(), select(scope.c[1]).scalar_subquery()


@dataclass(frozen=True)
class Page:
    """One page of events, newest first, with each actor's e-mail and the cursors around it."""

    rows: list[Row]
    newer: int | None
    older: int | None


def _actor_email() -> Any:
    """The e-mail recorded in the event; only events from before it was recorded fall back to the account's."""
    return func.coalesce(AuditEvent.actor_email, User.email)


def _with_actor_email() -> Any:
    return select(AuditEvent, _actor_email().label("actor_email")).outerjoin(User, User.id == AuditEvent.actor_id)


def page_of_events(filters: AuditFilter, size: int = PAGE_SIZE) -> Page:
    """Return a keyset page of the filtered events, newest first.

    Keyset paging (``seq < before`` / ``seq > after``) reads only one page of an index,
    however deep the page, where an offset would walk every skipped row.
    """
    stmt = _with_actor_email().where(*filters.criteria())
    if filters.after is not None:
        stmt = stmt.where(AuditEvent.seq > filters.after).order_by(AuditEvent.seq)
        rows = db.session.execute(stmt.limit(size + 1)).all()
        more, rows = len(rows) > size, rows[:size][::-1]
        return Page(rows, rows[0].AuditEvent.seq if more else None, rows[-1].AuditEvent.seq if rows else None)
    if filters.before is not None:
        stmt = stmt.where(AuditEvent.seq < filters.before)
    rows = db.session.execute(stmt.order_by(AuditEvent.seq.desc()).limit(size + 1)).all()
    more, rows = len(rows) > size, rows[:size]
    newer = rows[0].AuditEvent.seq if rows and filters.before is not None else None
    return Page(rows, newer, rows[-1].AuditEvent.seq if more else None)


EXPORT_COLUMNS = (
    "seq", "at", "actor_kind", "actor_id", "actor_email", "action", "object_type", "object_id",
    "outcome", "ip", "request_id", "details", "prev_mac", "mac",
)


def export_rows(filters: AuditFilter) -> Iterator[tuple]:
    """Yield the filtered events oldest first as CSV-ready tuples (:data:`EXPORT_COLUMNS`)."""
    columns = (
        AuditEvent.seq, AuditEvent.at, AuditEvent.actor_kind, AuditEvent.actor_id, _actor_email(),
        AuditEvent.action, AuditEvent.object_type, AuditEvent.object_id, AuditEvent.outcome,
        AuditEvent.ip, AuditEvent.request_id, AuditEvent.details, AuditEvent.prev_mac, AuditEvent.mac,
    )
    for row in scan(columns, *filters.criteria(), join=(User, User.id == AuditEvent.actor_id)):
        *values, prev_mac, mac = row
        values[1] = f"{_iso(values[1])}Z"
        yield (*values, bytes(prev_mac).hex(), bytes(mac).hex())


def scan(
    columns: Sequence[Any], *criteria: ColumnElement[bool], join: tuple | None = None, batch: int = 5000
) -> Iterator[tuple]:
    """Yield driver rows in ascending seq order, one keyset batch per read.

    The first column must be :attr:`AuditEvent.seq`; ``join`` is an optional outer join
    ``(entity, on)``. Memory stays constant, and each batch is read like the verifier's
    (:func:`crm.statements.snapshot_rows`), without taking SQLite's write lock: an export never holds up
    the clinic's writes.
    """
    stmt = select(*columns).where(*criteria, AuditEvent.seq > bindparam("after"))
    if join is not None:
        stmt = stmt.outerjoin(*join)
    stmt = stmt.order_by(AuditEvent.seq).limit(batch)
    after = BEFORE_ANY_SEQ
    while True:
        rows = statements.snapshot_rows(stmt, {"after": after})
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


# --- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Outcome of a verification: the events checked and the head, or the first bad seq."""

    count: int
    head_seq: int
    head_mac: bytes
    bad_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when no defect was found."""
        return self.bad_seq is None


REASONS = {
    "missing": "the event is missing (gap in the sequence)",
    "out_of_order": "the event is out of sequence",
    "prev_mac_mismatch": "prev_mac is not the previous event's MAC (reordered, removed or forged)",
    "mac_mismatch": "the MAC does not match the event's contents (modified or forged)",
    "malformed": "the event's stored values cannot be read (modified or forged)",
    "truncated": "the log ends before the signed head (the tail was cut)",
    "head_mac_mismatch": "the event's MAC differs from the signed head",
}


def _chain_rows(after: int, end: int, batch: int) -> Iterator[tuple]:
    """Yield the chain's rows with ``after < seq <= end`` as driver tuples, in keyset batches."""
    stmt = (
        select(*CHAIN_COLUMNS)
        .where(AuditEvent.seq > bindparam("after"), AuditEvent.seq <= bindparam("end"))
        .order_by(AuditEvent.seq)
        .limit(batch)
    )
    while True:
        rows = statements.snapshot_rows(stmt, {"after": after, "end": end})
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


@dataclass(frozen=True)
class Stretch:
    """A run of seqs one process walks: ``after < seq <= end``, chained to ``prev`` (the MAC at ``after``)."""

    after: int
    end: int
    prev: bytes
    checkpoint: tuple[int, bytes]
    batch: int

    @property
    def first(self) -> int:
        """The seq the stretch must start with (the first stretch also reads stray rows below 1)."""
        return max(self.after, 0) + 1


def walk(key: bytes, stretch: Stretch) -> Verdict:
    """Check one stretch in seq order; its count and head are those of its last good event.

    Seqs must run on without gaps to ``end``, each ``prev_mac`` must be the previous event's
    MAC (``stretch.prev`` for the first), and each MAC must match its event.
    """
    expected, prev = stretch.first, stretch.prev
    want_seq, want_mac = stretch.checkpoint
    for seq, *fields, prev_mac, mac in _chain_rows(stretch.after, stretch.end, stretch.batch):
        if seq != expected:
            return Verdict(expected - 1, expected - 1, prev, *_gap(seq, expected))
        if prev_mac != prev:
            return Verdict(seq - 1, seq - 1, prev, seq, "prev_mac_mismatch")
        try:
            good = chain_mac(key, prev_mac, canonical_row(seq, *fields)) == mac
        except (TypeError, ValueError):
            return Verdict(seq - 1, seq - 1, prev, seq, "malformed")
        if not good:
            return Verdict(seq - 1, seq - 1, prev, seq, "mac_mismatch")
        if seq == want_seq and mac != want_mac:
            return Verdict(seq - 1, seq - 1, prev, seq, "head_mac_mismatch")
        expected, prev = seq + 1, mac
    if expected <= stretch.end:  # the rows stopped short: the next stretch's predecessor is gone
        return Verdict(expected - 1, expected - 1, prev, expected, "missing")
    return Verdict(expected - 1, expected - 1, prev)


#: Below this many events one process is quicker than starting others.
PARALLEL_FROM = 200_000


def verify_chain(
    key: bytes, *, checkpoint: tuple[int, bytes] | None = None, batch: int = VERIFY_BATCH,
    workers: int | None = None,
) -> Verdict:
    """Walk the whole chain in seq order and return a :class:`Verdict` naming the first bad seq.

    Checks that seqs run 1, 2, 3… without gaps, that each ``prev_mac`` is the previous
    event's MAC, and that each MAC matches the event. With a ``checkpoint`` (a signed head's
    ``(seq, mac)``), also checks the log still holds that event with that MAC. Events
    appended while the walk runs are left for the next run.

    Every link can be checked on its own, so a long log is cut into consecutive stretches
    walked by ``workers`` processes (default: one per usable CPU, up to 8, from
    :data:`PARALLEL_FROM` events); each stretch starts from the stored MAC before it, and
    the stitch checks that MAC is the one its predecessor verified.
    """
    end = head_seq_now()
    count = workers or (min(len(os.sched_getaffinity(0)), 8) if end >= PARALLEL_FROM else 1)
    cuts = [end * i // count for i in range(1, count)]
    afters = [BEFORE_ANY_SEQ, *cuts]
    handed = [GENESIS_MAC, *(_stored_mac(seq) for seq in cuts)]
    stretches = [Stretch(after, stop, prev, checkpoint or (0, GENESIS_MAC), batch)
                 for after, stop, prev in zip(afters, [*cuts, end], handed, strict=True)]
    parts = [walk(key, stretches[0])] if count == 1 else _walk_in_processes(key, stretches)
    verdict = _stitch(stretches, parts)
    want_seq = checkpoint[0] if checkpoint else 0
    if verdict.ok and want_seq > verdict.count:
        return Verdict(verdict.count, verdict.count, verdict.head_mac, verdict.count + 1, "truncated")
    return verdict


def _stitch(stretches: list[Stretch], parts: list[Verdict]) -> Verdict:
    """The first defect across consecutive stretches, or the last stretch's head when none has one."""
    for index, (stretch, part) in enumerate(zip(stretches, parts, strict=True)):
        if index and parts[index - 1].head_mac != stretch.prev:  # the handed-over MAC was not the verified one
            return Verdict(stretch.after, stretch.after, parts[index - 1].head_mac, stretch.first,
                           "prev_mac_mismatch")
        if not part.ok:
            return part
    return parts[-1]


def _stored_mac(seq: int) -> bytes:
    """The MAC stored for ``seq`` (genesis when the row is gone: the stretch before reports it)."""
    rows = statements.snapshot_rows(select(AuditEvent.mac).where(AuditEvent.seq == bindparam("seq")), {"seq": seq})
    return bytes(rows[0][0]) if rows else GENESIS_MAC


_worker_key: bytes = b""


def _walk_in_processes(key: bytes, stretches: list[Stretch]) -> list[Verdict]:
    """Walk each stretch in a forked process of its own; results come back in order.

    No connection may be in use, and the parent's idle ones are closed first, so children
    only ever use connections they open themselves (a database connection must not cross a
    fork). The key reaches the children through the fork's copy of memory, never a pipe.
    """
    if db.engine.pool.checkedout():
        raise RuntimeError("a parallel verify forks: end the session's transaction first")
    app = current_app._get_current_object()
    db.engine.dispose()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(len(stretches), mp_context=context, initializer=_enter_worker,
                             initargs=(app, key)) as pool:
        return list(pool.map(_walk_stretch, stretches))


def _enter_worker(app: Flask, key: bytes) -> None:
    global _worker_key
    _worker_key = key
    app.app_context().push()


def _walk_stretch(stretch: Stretch) -> Verdict:
    try:
        return walk(_worker_key, stretch)
    finally:
        db.engine.dispose()  # this process's own connections, closed before it exits


def _gap(seq: int, expected: int) -> tuple[int, str]:
    """Name the first bad seq when the sequence jumps: the missing one, or the stray one."""
    return (expected, "missing") if seq > expected else (seq, "out_of_order")


def head_seq_now() -> int:
    """The newest seq in a read of its own, outside any open transaction (0 for an empty log)."""
    return statements.snapshot_rows(select(func.max(AuditEvent.seq)), {})[0][0] or 0


# --- signed heads ------------------------------------------------------------------------


def _head_message(seq: int, mac_hex: str, at: str) -> bytes:
    doc = {"at": at, "format": HEAD_FORMAT, "mac": mac_hex, "seq": seq}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _public_hex(ring: crypto.Keyring) -> str:
    return ring.signing_key().public_key().public_bytes_raw().hex()


def sign_head(ring: crypto.Keyring, event: AuditEvent) -> dict[str, Any]:
    """Return a signed head document for ``event`` (normally the newest one)."""
    at = f"{event.at.isoformat(timespec='microseconds')}Z"
    message = _head_message(event.seq, bytes(event.mac).hex(), at)
    return {
        "format": HEAD_FORMAT,
        "seq": event.seq,
        "mac": bytes(event.mac).hex(),
        "at": at,
        "public_key": _public_hex(ring),
        "signature": ring.signing_key().sign(message).hex(),
    }


def check_signed_head(ring: crypto.Keyring, doc: dict[str, Any]) -> tuple[int, bytes]:
    """Return ``(seq, mac)`` of a signed head made with this keyring, else raise ``ValueError``."""
    try:
        seq, mac_hex, at = int(doc["seq"]), str(doc["mac"]), str(doc["at"])
        signature = bytes.fromhex(doc["signature"])
        foreign = doc.get("format") != HEAD_FORMAT or doc.get("public_key") != _public_hex(ring)
    except (KeyError, TypeError, ValueError):
        raise ValueError("the head file is malformed") from None
    if foreign:
        raise ValueError("the head was not signed by this keyring's audit signing key")
    public: Ed25519PublicKey = ring.signing_key().public_key()
    try:
        public.verify(signature, _head_message(seq, mac_hex, at))
    except InvalidSignature:
        raise ValueError("the head's signature does not verify") from None
    return seq, bytes.fromhex(mac_hex)
