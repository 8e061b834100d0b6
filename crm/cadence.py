"""Contact cadence and clinic-time helpers: pure functions over naive-UTC datetimes.

The cadence (``data/cadence.json``) says when the next call is due after a
number of unanswered calls; suggestions land inside the clinic's calling window.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

RULES: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "cadence.json").read_text())


def to_local(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Convert a naive-UTC datetime to an aware datetime in ``zone``."""
    return value.replace(tzinfo=dt.UTC).astimezone(zone)


def to_utc(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Convert a naive wall-clock time in ``zone`` to naive UTC."""
    return local.replace(tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)


def midnight_utc(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """Naive UTC of the midnight in ``zone`` that starts ``day``."""
    return to_utc(dt.datetime.combine(day, dt.time()), zone)


def local_day_bounds(now: dt.datetime, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """Naive-UTC start and end of the clinic's calendar day that contains ``now``."""
    day = to_local(now, zone).date()
    return midnight_utc(day, zone), midnight_utc(day + dt.timedelta(days=1), zone)


def _clock(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def fit_window(due: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Move a naive-UTC time into the calling window: later that day or the next morning."""
    local = to_local(due, zone).replace(tzinfo=None)
    start, end = _clock(RULES["call_window"]["start"]), _clock(RULES["call_window"]["end"])
    if local.time() < start:
        local = dt.datetime.combine(local.date(), start)
    elif local.time() >= end:
        local = dt.datetime.combine(local.date() + dt.timedelta(days=1), start)
    return to_utc(local, zone)


def step_due(created_at: dt.datetime, step: dict[str, Any], zone: ZoneInfo) -> dt.datetime:
    """When one cadence step falls due, before fitting it to the calling window."""
    if "after_minutes" in step:
        return created_at + dt.timedelta(minutes=step["after_minutes"])
    day = to_local(created_at, zone).date() + dt.timedelta(days=step["day"])
    return to_utc(dt.datetime.combine(day, _clock(RULES["call_window"]["start"])), zone)


def is_exhausted(calls_made: int) -> bool:
    """True once every call in the cadence has been made without reaching the lead."""
    return calls_made >= len(RULES["steps"])


def suggest_next(created_at: dt.datetime, calls_made: int, now: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
    """The naive-UTC time the next call is due, never in the past, or None when exhausted."""
    if is_exhausted(calls_made):
        return None
    due = max(step_due(created_at, RULES["steps"][calls_made], zone), now)
    return fit_window(due, zone)


def next_step_label(calls_made: int) -> str | None:
    """What the next cadence step asks the coordinator to do."""
    return None if is_exhausted(calls_made) else RULES["steps"][calls_made]["label"]
