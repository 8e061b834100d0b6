"""The clinic's opening hours: is a moment inside them, when do they next start, and deadlines.

A new lead should be called within a few minutes while the clinic is open (contact odds
fall sharply after five); one that arrives outside opening hours is due shortly after the
next opening (:func:`first_response_deadline`). Reports count "one business day" from a
submission (:meth:`ClinicHours.business_day_deadline`). Hours come from configuration
(``OPENING_HOURS``: weekday → ``"08:00-18:00"``; ``CLINIC_HOLIDAYS``: ISO dates) and are read
in the clinic's time zone, so a daylight-saving change moves the UTC instants, never the
wall-clock hours. Pure functions over naive UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

from .cadence import to_local, to_utc

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS_AHEAD = 366  # a calendar with no business day in a year has no "next business day"
OPENING_LOOKAHEAD_DAYS = 30  # a closure longer than this is a configuration mistake, not a schedule


def parse_weekly(spec: Mapping[str, str]) -> dict[int, tuple[dt.time, dt.time]]:
    """``{"mon": "08:00-18:00", …}`` → weekday number → (opens, closes); refuses malformed hours."""
    weekly = {}
    for day, span in spec.items():
        if day not in WEEKDAYS:
            raise ValueError(f"OPENING_HOURS: unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
        opens, _, closes = str(span).partition("-")
        start, end = dt.time.fromisoformat(opens.strip()), dt.time.fromisoformat(closes.strip())
        if end <= start:
            raise ValueError(f"OPENING_HOURS: {day} closes before it opens")
        weekly[WEEKDAYS.index(day)] = (start, end)
    return weekly


@dataclass(frozen=True)
class ClinicHours:
    """Weekly opening hours, holidays and the time zone they are read in."""

    zone: ZoneInfo
    weekly: dict[int, tuple[dt.time, dt.time]]
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, zone: ZoneInfo, spec: Mapping[str, str], holidays: Iterable[str | dt.date]) -> ClinicHours:
        """Build from the configuration's shapes (holidays as ISO date strings or dates)."""
        days = frozenset(day if isinstance(day, dt.date) else dt.date.fromisoformat(day) for day in holidays)
        return cls(zone, parse_weekly(spec), days)

    def __post_init__(self) -> None:
        # hashed on every cached day lookup: compute it once
        object.__setattr__(self, "_hash", hash((str(self.zone), tuple(sorted(self.weekly.items())), self.holidays)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def hours_on(self, day: dt.date) -> tuple[dt.time, dt.time] | None:
        """When the clinic opens and closes on ``day``, or None on a closed day or holiday."""
        if day in self.holidays:
            return None
        return self.weekly.get(day.weekday())

    def is_open(self, moment: dt.datetime) -> bool:
        """True when the naive-UTC ``moment`` falls inside opening hours (closing time itself is outside)."""
        span = _span_utc(self, to_local(moment, self.zone).date())
        return span is not None and span[0] <= moment < span[1]

    def is_open_day(self, day: dt.date) -> bool:
        """True when the clinic opens at all on ``day``."""
        return self.hours_on(day) is not None

    def next_opening(self, moment: dt.datetime) -> dt.datetime | None:
        """The naive-UTC instant the clinic next opens after ``moment`` (None if closed for a month)."""
        day = to_local(moment, self.zone).date()
        for offset in range(OPENING_LOOKAHEAD_DAYS + 1):
            span = _span_utc(self, day + dt.timedelta(days=offset))
            if span is not None and span[0] > moment:
                return span[0]
        return None

    def business_day_deadline(self, submitted: dt.datetime) -> dt.datetime | None:
        """Naive UTC of "one business day" after a submission: the same clock time on the next business day.

        A submission outside hours starts its clock at the next opening, so Friday 17:59 is due
        by Monday 17:59 and Friday 18:01 by Tuesday 08:00 (Monday-to-Friday, 8 to 6 hours).
        Clock times are counted from each day's opening, in UTC instants computed in the
        clinic's zone, so a daylight-saving change outside opening hours shifts the deadline.
        """
        day = to_local(submitted, self.zone).date()
        span = _span_utc(self, day)
        if span is not None and span[0] <= submitted < span[1]:
            start_day, clock = day, _since_midnight(self.hours_on(day)[0]) + (submitted - span[0])  # type: ignore[index]
        elif span is not None and submitted < span[0]:
            start_day, clock = day, _since_midnight(self.hours_on(day)[0])  # type: ignore[index]
        else:
            start_day = _next_business_day(self, day)
            if start_day is None:
                return None
            clock = _since_midnight(self.hours_on(start_day)[0])  # type: ignore[index]
        due_day = _next_business_day(self, start_day)
        if due_day is None:
            return None
        opens, closes = (_since_midnight(t) for t in self.hours_on(due_day))  # type: ignore[union-attr]
        return _span_utc(self, due_day)[0] + (min(max(clock, opens), closes) - opens)  # type: ignore[index]


def first_response_deadline(created_at: dt.datetime, hours: ClinicHours, within: dt.timedelta,
                            grace: dt.timedelta) -> dt.datetime:
    """When a lead created at ``created_at`` should have had its first call (naive UTC).

    Inside opening hours: ``within`` after it arrived. Outside them: ``grace`` after the next
    opening (or ``within`` after arrival when no opening is configured at all).
    """
    if hours.is_open(created_at):
        return created_at + within
    opening = hours.next_opening(created_at)
    return opening + grace if opening is not None else created_at + within


@lru_cache(maxsize=256)
def _since_midnight(clock: dt.time) -> dt.timedelta:
    return dt.timedelta(hours=clock.hour, minutes=clock.minute, seconds=clock.second)


@lru_cache(maxsize=8192)
def _span_utc(hours: ClinicHours, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
    """Naive-UTC opening and closing instants of ``day`` (None when closed), computed once per day."""
    span = hours.hours_on(day)
    if span is None:
        return None
    return (to_utc(dt.datetime.combine(day, span[0]), hours.zone),
            to_utc(dt.datetime.combine(day, span[1]), hours.zone))


@lru_cache(maxsize=4096)
def _next_business_day(hours: ClinicHours, after: dt.date) -> dt.date | None:
    day = after
    for _ in range(MAX_DAYS_AHEAD):
        day += dt.timedelta(days=1)
        if hours.hours_on(day) is not None:
            return day
    return None
