"""Opening hours and the first-response deadline: pure functions over naive-UTC datetimes.

A new lead should be called within a few minutes while the clinic is open (contact odds
fall sharply after five); one that arrives outside opening hours is due shortly after the
next opening. Hours are wall-clock times in the clinic's zone, so a daylight-saving change
moves their UTC instants and nothing else. Holidays are closed all day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .cadence import to_local, to_utc

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LOOKAHEAD_DAYS = 30  # a closure longer than this is a configuration mistake, not a schedule


@dataclass(frozen=True)
class OpeningHours:
    """The clinic's weekly hours (weekday → opening, closing) and the dates it is closed."""

    week: dict[int, tuple[dt.time, dt.time]]
    holidays: frozenset[dt.date]
    zone: ZoneInfo

    @classmethod
    def parse(cls, hours: Mapping[str, str], holidays: Iterable[str], zone: ZoneInfo) -> OpeningHours:
        """Read ``{"mon": "08:00-18:00", …}`` and ISO holiday dates; raise ``ValueError`` on nonsense."""
        week = {}
        for day, span in hours.items():
            start, _, end = str(span).partition("-")
            opens, closes = dt.time.fromisoformat(start.strip()), dt.time.fromisoformat(end.strip())
            if opens >= closes:
                raise ValueError(f"opening hours for {day} close before they open")
            week[DAYS.index(day.lower()[:3])] = (opens, closes)
        return cls(week, frozenset(dt.date.fromisoformat(str(d)) for d in holidays), zone)

    def _span(self, day: dt.date) -> tuple[dt.time, dt.time] | None:
        return None if day in self.holidays else self.week.get(day.weekday())

    def is_open(self, at: dt.datetime) -> bool:
        """True when naive-UTC ``at`` falls inside opening hours."""
        local = to_local(at, self.zone).replace(tzinfo=None)
        span = self._span(local.date())
        return span is not None and span[0] <= local.time() < span[1]

    def next_opening(self, at: dt.datetime) -> dt.datetime | None:
        """The naive-UTC instant the clinic next opens after ``at`` (None if closed for a month)."""
        local = to_local(at, self.zone).replace(tzinfo=None)
        for offset in range(LOOKAHEAD_DAYS + 1):
            day = local.date() + dt.timedelta(days=offset)
            span = self._span(day)
            if span and dt.datetime.combine(day, span[0]) > local:
                return to_utc(dt.datetime.combine(day, span[0]), self.zone)
        return None

    def is_open_day(self, day: dt.date) -> bool:
        """True when the clinic opens at all on ``day``."""
        return self._span(day) is not None


def first_response_deadline(created_at: dt.datetime, hours: OpeningHours, within: dt.timedelta,
                            grace: dt.timedelta) -> dt.datetime:
    """When a lead created at ``created_at`` should have had its first call (naive UTC).

    Inside opening hours: ``within`` after it arrived. Outside them: ``grace`` after the next
    opening (or ``within`` after arrival when no opening is configured at all).
    """
    if hours.is_open(created_at):
        return created_at + within
    opening = hours.next_opening(created_at)
    return opening + grace if opening is not None else created_at + within
