"""The worker's privacy jobs: reminders of patients' copy requests, and the daily retention run.

Reminders go to every active admin through :mod:`crm.operations.alerts` (in the app, by
e-mail and to the team chat), once when a request is ``ACCESS_REMINDER_WORKING_DAYS``
working days from due and once when it is overdue; the alert keys make each happen once
however often, and on however many workers, the job runs. They carry the lead's reference
and the due date, nothing else.

Retention starts each day at ``RETENTION_TIME`` in clinic time. One worker at a time holds
the day's run (:mod:`crm.jobs.leases`); it shreds for at most ``RETENTION_SLICE_SECONDS``
per round, committing batch by batch with a rest between them, and hands the rest to the
next round, so alerts keep flowing while a large backlog is worked off.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from flask import current_app

from .. import backup as backups
from ..cadence import to_local
from ..clinic import clinic_zone
from ..hours import ClinicHours
from ..models import db, utcnow
from ..operations import alerts, privacy, retention
from . import leases

log = logging.getLogger("crm.jobs")
RETENTION = "retention"
OPEN_REQUESTS = dt.timedelta(days=366)  # every open request, however long the configured deadline


def working_days_left(today: dt.date, due: dt.date, hours: ClinicHours) -> int:
    """Opening days after ``today`` up to and including ``due`` (0 when due today or earlier)."""
    days, day = 0, today + dt.timedelta(days=1)
    while day <= due:
        days += hours.is_open_day(day)
        day += dt.timedelta(days=1)
    return days


def access_request_reminders(now: dt.datetime, hours: ClinicHours) -> int:
    """Remind admins of copy requests near their due date and of overdue ones; returns alerts raised."""
    ahead = int(current_app.config["ACCESS_REMINDER_WORKING_DAYS"])
    zone, count = clinic_zone(), 0
    today = to_local(now, zone).date()
    for lead_id, reference, due in privacy.access_requests_due(now + OPEN_REQUESTS):
        overdue = due <= now
        if overdue or working_days_left(today, to_local(due, zone).date(), hours) <= ahead:
            count += alerts.access_request_reminder(lead_id, reference, due, overdue, now)
    return count


def _retention_day(now: dt.datetime) -> dt.date | None:
    """The clinic day whose run may start at ``now``: today from ``RETENTION_TIME`` on (None when off)."""
    start = current_app.config["RETENTION_TIME"]
    if not start:
        return None
    local = to_local(now, clinic_zone())
    return local.date() if local.time() >= dt.time.fromisoformat(start) else None


def scheduled_retention(now: dt.datetime) -> int:
    """Take today's retention run if it is due and free, and shred for one slice; returns leads shredded."""
    day = _retention_day(now)
    if day is None:
        return 0
    cfg = current_app.config
    lease = dt.timedelta(seconds=float(cfg["RETENTION_LEASE_SECONDS"]))
    holder = leases.take(RETENTION, day, utcnow(), lease)
    db.session.commit()
    if holder is None:
        return 0
    pause, slice_ends = float(cfg["RETENTION_PAUSE_SECONDS"]), time.monotonic() + float(cfg["RETENTION_SLICE_SECONDS"])

    def end_batch(_count: int) -> bool:
        if not leases.renew(RETENTION, holder, utcnow() + lease):
            db.session.rollback()  # another worker took the run over: this batch is theirs to do
            raise LeaseLost
        db.session.commit()
        backups.checkpoint_sqlite("PASSIVE")
        if time.monotonic() >= slice_ends:
            return False
        time.sleep(pause)  # the write turn goes to the workspace's requests between batches
        return True

    try:
        with backups.checkpoints_deferred():
            done, finished = retention.apply(now, retention.batch_size(), end_batch)
    except LeaseLost:
        log.warning("retention run: the lease passed to another worker; stopping")
        return 0
    leases.end(RETENTION, holder, utcnow(), finished)
    db.session.commit()
    total = sum(done.values())
    log.info("retention run for %s: %d leads shredded%s", day.isoformat(), total, "" if finished else ", more to do")
    return total


class LeaseLost(Exception):
    """The retention lease passed to another worker while this one was shredding."""
