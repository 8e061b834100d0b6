"""Retention: which leads the policy says to shred, and shredding them one batch at a time.

The policy lives in configuration (``RETENTION_*_DAYS``; counsel owns the numbers). Each
lead falls under at most one reason, checked in this order:

- ``duplicate``: closed as a duplicate, ``RETENTION_DUPLICATE_DAYS`` after closing;
- ``converted_handover``: converted, ``RETENTION_CONVERTED_DAYS`` after converting;
- ``never_converted``: every other lead, ``RETENTION_NEVER_CONVERTED_DAYS`` after its last activity.

Legal hold exempts a lead from all three. Erased leads drop out of every query, so a run
that was interrupted simply starts again and finds only what is left: no double work.
:func:`apply` walks every batch; its caller (``flask retention run``, or the worker's daily
job) commits each one in the ``end_batch`` it passes, and may stop the run there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import current_app
from sqlalchemy import ColumnElement, and_, func, select

from .. import audit, statements
from ..models import Lead, Stage, db
from .privacy import shred

REASONS = ("duplicate", "converted_handover", "never_converted")
#: Leads per batch unless ``RETENTION_BATCH_SIZE`` says otherwise. On SQLite a batch holds the one write lock
#: (200 leads write about 1,000 WAL pages, under the size at which a commit stops to checkpoint); on
#: PostgreSQL it locks only its own leads' rows, and five times as many cost a third less per lead.
BATCH_SIZES = {"sqlite": 200, "postgresql": 1000}
_SETTINGS = {
    "duplicate": "RETENTION_DUPLICATE_DAYS",
    "converted_handover": "RETENTION_CONVERTED_DAYS",
    "never_converted": "RETENTION_NEVER_CONVERTED_DAYS",
}


def _is_duplicate() -> ColumnElement[bool]:
    return and_(Lead.stage == Stage.CLOSED, Lead.stage_reason == "duplicate")


def due_condition(reason: str, now: dt.datetime) -> ColumnElement[bool] | None:
    """The SQL condition for leads due under ``reason`` at ``now`` (None when the rule is switched off)."""
    days = current_app.config[_SETTINGS[reason]]
    if days is None or days == "":  # CRM_RETENTION_…_DAYS=null (or empty) switches the rule off
        return None
    cutoff = now - dt.timedelta(days=int(days))
    alive = and_(Lead.erased_at.is_(None), Lead.legal_hold_at.is_(None))
    if reason == "duplicate":
        return and_(alive, _is_duplicate(), Lead.stage_changed_at < cutoff)
    if reason == "converted_handover":
        return and_(alive, Lead.stage == Stage.CONVERTED, Lead.stage_changed_at < cutoff)
    return and_(alive, Lead.stage != Stage.CONVERTED, ~_is_duplicate(), Lead.updated_at < cutoff)


def batch_size() -> int:
    """How many leads each committed batch shreds: ``RETENTION_BATCH_SIZE``, else the database's own size."""
    configured = current_app.config["RETENTION_BATCH_SIZE"]
    if configured:
        return int(configured)
    return BATCH_SIZES.get(db.session.get_bind().dialect.name, min(BATCH_SIZES.values()))


def count_due(now: dt.datetime) -> dict[str, int]:
    """How many leads each reason would shred now (the dry run); read, like :func:`next_due`, without a lock."""
    counts = {}
    for reason in REASONS:
        condition = due_condition(reason, now)
        counts[reason] = 0 if condition is None else statements.snapshot_rows(
            select(func.count()).select_from(Lead).where(condition), {})[0][0]
    return counts


def next_due(reason: str, now: dt.datetime, after: str, limit: int) -> list[str]:
    """Up to ``limit`` ids of leads due under ``reason``, in id order after ``after``.

    Read outside the session's transaction: on SQLite the search (a walk of the whole table
    for the last batch) then holds no write lock, and the workspace's requests go on.
    """
    condition = due_condition(reason, now)
    if condition is None:
        return []
    stmt = select(Lead.id).where(condition, Lead.id > after).order_by(Lead.id).limit(limit)
    return [lead_id for (lead_id,) in statements.snapshot_rows(stmt, {})]


def shred_batch(reason: str, lead_ids: list[str], now: dt.datetime) -> None:
    """Shred one batch of due leads and audit it as the system (ids and counts only); not committed."""
    shred(lead_ids, f"retention_{reason}", None, now)
    audit.record("retention_applied", object_type="lead",
                 details={"reason": reason, "erased": len(lead_ids), "leads": lead_ids})


def apply(now: dt.datetime, size: int, end_batch: Callable[[int], bool]) -> tuple[dict[str, int], bool]:
    """Shred every lead due at ``now`` in batches of ``size``; returns the counts by reason and whether it finished.

    After each batch ``end_batch(count)`` is called: it must commit (or roll back) the batch,
    and returns False to stop the run there (a time budget spent, a lease lost).
    """
    done = dict.fromkeys(REASONS, 0)
    for reason in REASONS:
        after = ""
        while ids := next_due(reason, now, after, size):
            shred_batch(reason, ids, now)
            done[reason] += len(ids)
            after = ids[-1]
            if not end_batch(len(ids)):
                return done, False
    return done, True
