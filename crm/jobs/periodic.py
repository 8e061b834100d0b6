"""Periodic jobs: overdue first calls and callbacks, urgent repeats, morning digests, cadence exhaustion,
and the privacy jobs of :mod:`crm.jobs.privacy` (copy-request reminders, the daily retention run).

Each job scans for what is due, writes alerts (through :mod:`crm.operations.alerts`, whose
keys make every alert happen once per person) or moves leads, and commits. On PostgreSQL each
job runs only in the worker that wins that job's advisory lock, so several workers never run it
at once, and a worker busy with one job never makes another skip a different one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from flask import current_app
from sqlalchemy import exists, func, select

from .. import cadence, eligibility, locks
from ..cadence import to_local
from ..clinic import clinic_hours, clinic_zone
from ..hours import first_response_deadline
from ..models import OPEN_STAGES, Alert, Callback, Lead, Role, Screening, Stage, User, db
from ..operations import alerts
from ..operations import leads as ops
from . import privacy as privacy_jobs

log = logging.getLogger("crm.jobs")
FIRST_RESPONSE_LOOKBACK = dt.timedelta(days=14)  # older uncalled leads are a queue problem, not an alert


def _minutes(name: str) -> dt.timedelta:
    return dt.timedelta(minutes=float(current_app.config[name]))


def _won_lock(job: Callable[[dt.datetime], int]) -> bool:
    """Take ``job``'s lock for this transaction on PostgreSQL (SQLite's writer lock already serialises jobs)."""
    return locks.try_hold(locks.PERIODIC_JOBS, locks.key_of(job.__name__))


def _recipients(*user_ids: str | None) -> list[User]:
    """The first of ``user_ids`` that is an active account, else every active coordinator (or admin)."""
    for user_id in user_ids:
        user = db.session.get(User, user_id) if user_id else None
        if user is not None and user.is_active_flag:
            return [user]
    return alerts.active(Role.COORDINATOR) or alerts.active(Role.ADMIN)


def _alerted(kind: str):
    """A condition: an alert of ``kind`` already exists for the lead."""
    return exists().where(Alert.lead_id == Lead.id, Alert.kind == kind)


def urgent_repeats(now: dt.datetime) -> int:
    """Repeat each unacknowledged urgent alert every ``URGENT_REPEAT_MINUTES``, up to the limit."""
    limit, every, count = int(current_app.config["URGENT_REPEAT_LIMIT"]), _minutes("URGENT_REPEAT_MINUTES"), 0
    leads = db.session.execute(select(Lead.id, Lead.reference).where(
        Lead.urgent.is_(True), Lead.acknowledged_at.is_(None), Lead.stage.in_(OPEN_STAGES),
        _alerted(alerts.URGENT))).all()
    for lead_id, reference in leads:
        last = db.session.scalars(select(Alert).where(Alert.lead_id == lead_id, Alert.kind == alerts.URGENT)
                                  .order_by(Alert.created_at.desc(), Alert.round.desc()).limit(1)).first()
        if last.round < limit and last.created_at <= now - every and alerts.urgent_repeat(last, reference, now):
            count += 1
    return count


def first_responses(now: dt.datetime) -> int:
    """Alert about new leads with no attempt after their first-response deadline."""
    hours, within, grace = clinic_hours(), _minutes("FIRST_RESPONSE_MINUTES"), _minutes("AFTER_HOURS_GRACE_MINUTES")
    leads = db.session.scalars(select(Lead).where(
        Lead.stage == Stage.NEW, Lead.first_attempt_at.is_(None), Lead.created_at <= now - within,
        Lead.created_at >= now - FIRST_RESPONSE_LOOKBACK, ~_alerted(alerts.FIRST_RESPONSE))
        .order_by(Lead.created_at))
    count = 0
    for lead in leads:
        deadline = first_response_deadline(lead.created_at, hours, within, grace)
        if deadline > now or not ops.may_contact(lead):
            continue
        notice = alerts.Notice(
            alerts.FIRST_RESPONSE, f"first_response:{lead.id}", f"First call late {lead.reference}",
            f"New lead {lead.reference} has had no call yet; its first call was due by {alerts.clinic_time(deadline)}.",
            lead.id, lead.reference, link_path=alerts.lead_path(lead.id))
        alerts.notify(notice, _recipients(lead.assignee_id), now)
        count += 1
    return count


def overdue_callbacks(now: dt.datetime) -> int:
    """Alert each callback's assignee once it is more than ``CALLBACK_OVERDUE_MINUTES`` late."""
    late = _minutes("CALLBACK_OVERDUE_MINUTES")
    rows = db.session.execute(select(Callback, Lead).join(Lead, Lead.id == Callback.lead_id).where(
        Callback.done_at.is_(None), Callback.due_at <= now - late, Lead.stage.in_(OPEN_STAGES))).all()
    if not rows:
        return 0
    keys = {f"callback_overdue:{callback.id}" for callback, _lead in rows}
    done = set(db.session.scalars(select(Alert.key).where(Alert.key.in_(keys))))
    count = 0
    for callback, lead in rows:
        key = f"callback_overdue:{callback.id}"
        if key in done or not ops.may_contact(lead):
            continue
        minutes = int((now - callback.due_at).total_seconds() // 60)
        notice = alerts.Notice(
            alerts.CALLBACK_OVERDUE, key, f"Callback overdue {lead.reference}",
            f"The callback to lead {lead.reference} was due at {alerts.clinic_time(callback.due_at)} "
            f"and is {minutes} minutes overdue.", lead.id, lead.reference, link_path=alerts.lead_path(lead.id))
        alerts.notify(notice, _recipients(callback.assignee_id, lead.assignee_id), now)
        count += 1
    return count


def _digest_counts(user: User, now: dt.datetime) -> tuple[int, int, int, int]:
    """Callbacks due today and overdue (theirs), new unassigned leads, screenings awaiting sign-off."""
    start, end = cadence.local_day_bounds(now, clinic_zone())
    mine = select(func.count()).select_from(Callback).where(Callback.assignee_id == user.id,
                                                            Callback.done_at.is_(None))
    due_today = db.session.scalar(mine.where(Callback.due_at >= max(start, now), Callback.due_at < end)) or 0
    overdue = db.session.scalar(mine.where(Callback.due_at < now)) or 0
    unassigned = db.session.scalar(select(func.count()).select_from(Lead).where(
        Lead.stage == Stage.NEW, Lead.assignee_id.is_(None))) or 0
    awaiting = db.session.scalar(select(func.count()).select_from(Screening).where(
        Screening.outcome == eligibility.REVIEW, Screening.signed_off_at.is_(None))) or 0
    return due_today, overdue, unassigned, awaiting


def morning_digests(now: dt.datetime) -> int:
    """Send each coordinator one summary on opening days, from ``DIGEST_TIME`` in clinic time (None: off)."""
    start, local = current_app.config["DIGEST_TIME"], to_local(now, clinic_zone())
    if not start or not clinic_hours().is_open_day(local.date()):
        return 0
    if local.time() < dt.time.fromisoformat(start):
        return 0
    count = 0
    for user in alerts.active(Role.COORDINATOR):
        due, overdue, unassigned, awaiting = _digest_counts(user, now)
        notice = alerts.Notice(
            alerts.DIGEST, f"digest:{user.id}:{local.date().isoformat()}",
            f"Morning summary: {due} due today, {overdue} overdue",
            f"Good morning. Your callbacks: {due} due today, {overdue} overdue. "
            f"New leads nobody has claimed: {unassigned}. Screenings awaiting sign-off: {awaiting}.")
        count += alerts.notify(notice, [user], now, webhook=False)
    return count


def exhausted_cadences(now: dt.datetime) -> int:
    """Move leads whose every cadence call went unanswered, with no callback booked, to unreachable."""
    open_callback = exists().where(Callback.lead_id == Lead.id, Callback.done_at.is_(None))
    leads = db.session.scalars(select(Lead).where(
        Lead.stage.in_((Stage.NEW, Stage.CONTACTING)), Lead.attempt_count >= len(cadence.RULES["steps"]),
        ~open_callback))
    count = 0
    for lead in leads:
        if ops.cadence_exhausted(lead):
            ops.move_stage(lead, Stage.UNREACHABLE, cadence.RULES["exhausted_reason"], None, now=now)
            count += 1
    return count


def access_request_reminders(now: dt.datetime) -> int:
    """Remind admins of patients' copy requests near their due date or overdue."""
    return privacy_jobs.access_request_reminders(now, clinic_hours())


JOBS: tuple[Callable[[dt.datetime], int], ...] = (
    urgent_repeats, first_responses, overdue_callbacks, morning_digests, exhausted_cadences,
    access_request_reminders, privacy_jobs.scheduled_retention,
)


def run_all(now: dt.datetime) -> dict[str, int]:
    """Run every job once, each in its own transaction; a failing job is logged and the rest still run."""
    done: dict[str, int] = {}
    for job in JOBS:
        try:
            if _won_lock(job):
                done[job.__name__] = job(now)
            db.session.commit()
        except Exception as exc:  # one broken job must not stop the alerts of the others
            db.session.rollback()
            log.error("periodic job %s failed: %s", job.__name__, type(exc).__name__)
    return done
