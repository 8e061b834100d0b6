"""Daily job runs: one worker at a time holds a run, by a lease on its ``job_runs`` row.

A worker takes the day's run with one conditional UPDATE: nobody holds the lease (or it ran
out), and the row names another day or today's run is unfinished. PostgreSQL re-checks that condition
against the committed row when two workers race (the loser updates nothing); SQLite has one
writer at a time. The holder renews the lease in each transaction it commits, so a worker
that lost it (it stalled past the lease) finds out before committing more.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..models import JobRun, db, new_id


def take(name: str, day: dt.date, now: dt.datetime, lease: dt.timedelta) -> str | None:
    """Take ``day``'s run of job ``name`` unless it is done or held; returns the holder token, or None."""
    _ensure_row(name)
    holder = new_id()
    free = or_(JobRun.lease_until.is_(None), JobRun.lease_until <= now)
    due = and_(free, or_(JobRun.day.is_(None), JobRun.day != day, JobRun.finished_at.is_(None)))
    taken = db.session.execute(update(JobRun).where(JobRun.name == name, due)
                               .values(day=day, holder=holder, lease_until=now + lease, finished_at=None))
    return holder if taken.rowcount == 1 else None


def renew(name: str, holder: str, until: dt.datetime) -> bool:
    """Extend the lease in the caller's transaction; False when another worker took the run over."""
    renewed = db.session.execute(update(JobRun).where(JobRun.name == name, JobRun.holder == holder)
                                 .values(lease_until=until))
    return renewed.rowcount == 1


def end(name: str, holder: str, now: dt.datetime, finished: bool) -> None:
    """Mark the run finished for the day, or hand the rest to whichever worker comes next."""
    values = {"finished_at": now} if finished else {}
    db.session.execute(update(JobRun).where(JobRun.name == name, JobRun.holder == holder)
                       .values(holder=None, lease_until=now, **values))


def _ensure_row(name: str) -> None:
    """Create the job's row the first time (two workers racing to: one wins, nothing fails)."""
    if db.session.scalar(select(JobRun.name).where(JobRun.name == name)) is not None:
        return
    try:
        with db.session.begin_nested():
            db.session.add(JobRun(name=name))
    except IntegrityError:
        pass
