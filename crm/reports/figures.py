"""Report figures: read plain workflow columns for a date range, aggregate in one pass.

Queries touch only non-PHI columns (no data key, no ciphertext), filter by the lead's
creation date first, so their cost follows the range rather than the table, and leave out
leads closed as duplicates (:func:`crm.metrics.counted_once`). Definitions come from
:mod:`crm.metrics`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, exists, func, select, true
from sqlalchemy.orm import aliased

from .. import cadence, metrics
from ..hours import ClinicHours
from ..labels import label
from ..models import EXIT_REASONS, EXIT_STAGES, PIPELINE_STEPS, Callback, Insurance, Lead, LeadSource, Stage, db

#: Speed-to-lead shares the report shows: label → limit.
WITHIN = ((_l("Within 5 minutes"), dt.timedelta(minutes=5)), (_l("Within 15 minutes"), dt.timedelta(minutes=15)),
          (_l("Within 1 hour"), dt.timedelta(hours=1)))
#: The speed-to-lead distribution chart's bars: label → upper limit (None: no attempt yet).
SPEED_BUCKETS = ((_l("Within 5 min"), dt.timedelta(minutes=5)), (_l("5 to 15 min"), dt.timedelta(minutes=15)),
                 (_l("15 to 60 min"), dt.timedelta(hours=1)), (_l("1 to 4 hours"), dt.timedelta(hours=4)),
                 (_l("4 to 24 hours"), dt.timedelta(days=1)), (_l("Over a day"), dt.timedelta.max))
TREND_WEEKS = 26
STEP_NAMES = tuple(LazyString(lambda stages=stages: " / ".join(label(stage, "stages") for stage in stages))
                   for stages in PIPELINE_STEPS)


@dataclass
class Scope:
    """Which leads count: the UTC creation range and the plain-column filters."""

    start: dt.datetime
    end: dt.datetime
    source: str | None = None
    coverage: str | None = None
    payer: str | None = None
    coordinator: str | None = None  # a user id, or "none" for unassigned
    urgency: str | None = None


def _filtered(query: Select, scope: Scope) -> Select:
    """Apply every filter but the date range (the trend has its own)."""
    query = query.where(metrics.counted_once())
    if scope.source:
        query = query.where(Lead.source == scope.source)
    if scope.coordinator == "none":
        query = query.where(Lead.assignee_id.is_(None))
    elif scope.coordinator:
        query = query.where(Lead.assignee_id == scope.coordinator)
    if scope.urgency == "urgent":
        query = query.where(Lead.urgent == true())
    elif scope.urgency == "not_urgent":
        query = query.where(Lead.urgent.is_not(True))
    if scope.coverage or scope.payer:
        query = query.where(_insured(scope))
    return query


def _insured(scope: Scope) -> Any:
    """The lead has an insurance of the chosen coverage type and payer (probed per lead by its index)."""
    insurance = aliased(Insurance)  # the payers query also selects from insurances
    condition = exists().where(insurance.lead_id == Lead.id)
    if scope.coverage:
        condition = condition.where(insurance.coverage_type == scope.coverage)
    if scope.payer:
        condition = condition.where(insurance.payer == scope.payer)
    return condition.correlate(Lead)


def _in_range(query: Select, scope: Scope) -> Select:
    return _filtered(query.where(Lead.created_at >= scope.start, Lead.created_at < scope.end), scope)


# --- tallies ---------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts and durations for one group of leads (everyone, a source, a coordinator…).

    ``at_step`` counts leads by the furthest step they reached; "reached step k" and the
    contacted / eligible / converted counts are sums over it, so adding a lead stays cheap.
    """

    at_step: list[int] = field(default_factory=lambda: [0] * len(PIPELINE_STEPS))
    exited_at: list[int] = field(default_factory=lambda: [0] * len(PIPELINE_STEPS))
    attempts: int = 0
    speeds: list[float] = field(default_factory=list)  # seconds to first attempt
    contact_speeds: list[float] = field(default_factory=list)  # seconds to first live contact
    within_business_day: int = 0

    def add(self, row: Any, speed: float | None, in_business_day: bool, exited: bool) -> None:
        """Count one lead (``speed`` in seconds, None before any attempt)."""
        step = row.reached_step or 0
        self.at_step[step] += 1
        if exited:
            self.exited_at[step] += 1
        self.attempts += row.attempt_count or 0
        contact = metrics.speed_to_contact(row.created_at, row.first_contact_at)
        if contact is not None:
            self.contact_speeds.append(contact.total_seconds())
        if speed is not None:
            self.speeds.append(speed)
            self.within_business_day += in_business_day

    @property
    def leads(self) -> int:
        """Leads counted."""
        return sum(self.at_step)

    @property
    def reached(self) -> list[int]:
        """Leads that reached each step or went further."""
        out, running = [], 0
        for count in reversed(self.at_step):
            running += count
            out.append(running)
        return out[::-1]

    @property
    def attempted(self) -> int:
        """Leads with at least one attempt."""
        return len(self.speeds)

    @property
    def contacted(self) -> int:
        """Leads that reached the contacted step (:func:`crm.metrics.is_contacted`)."""
        return sum(c for step, c in enumerate(self.at_step) if metrics.is_contacted(step))

    @property
    def eligible(self) -> int:
        """Leads that reached the eligible step."""
        return sum(c for step, c in enumerate(self.at_step) if metrics.is_eligible(step))

    @property
    def converted(self) -> int:
        """Leads that converted."""
        return sum(c for step, c in enumerate(self.at_step) if metrics.is_converted(step))

    @property
    def within(self) -> list[int]:
        """Leads first attempted within each of :data:`WITHIN`'s limits."""
        ordered = sorted(self.speeds)
        return [bisect.bisect_right(ordered, limit.total_seconds()) for _label, limit in WITHIN]

    def speed(self, pct: float) -> float | None:
        """Percentile of seconds to first attempt."""
        return metrics.percentile(sorted(self.speeds), pct)

    def contact_speed(self, pct: float) -> float | None:
        """Percentile of seconds to first live contact."""
        return metrics.percentile(sorted(self.contact_speeds), pct)


@dataclass
class LeadFigures:
    """Everything computed from the leads of the range."""

    total: Tally = field(default_factory=Tally)
    inside_hours: Tally = field(default_factory=Tally)
    outside_hours: Tally = field(default_factory=Tally)
    by_source: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_coordinator: dict[str | None, Tally] = field(default_factory=lambda: defaultdict(Tally))
    exits: Counter = field(default_factory=Counter)  # (exit stage, reason) → leads
    speed_buckets: list[int] = field(default_factory=lambda: [0] * (len(SPEED_BUCKETS) + 1))


LEAD_COLUMNS = (Lead.created_at, Lead.first_attempt_at, Lead.first_contact_at, Lead.attempt_count, Lead.stage,
                Lead.stage_reason, Lead.reached_step, Lead.source, Lead.assignee_id)


def lead_figures(scope: Scope, hours: ClinicHours) -> LeadFigures:
    """Funnel, exits, speed to lead (inside and outside hours), sources and coordinators in one pass."""
    figures = LeadFigures()
    total, inside, outside = figures.total, figures.inside_hours, figures.outside_hours
    by_source, by_coordinator, exits, buckets = (figures.by_source, figures.by_coordinator, figures.exits,
                                                 figures.speed_buckets)
    limits = [limit.total_seconds() for _label, limit in SPEED_BUCKETS[:-1]]
    for row in db.session.execute(_in_range(select(*LEAD_COLUMNS), scope)):
        delta = metrics.speed_to_lead(row.created_at, row.first_attempt_at)
        speed = None if delta is None else delta.total_seconds()
        in_day = speed is not None and _within_business_day(hours, row.created_at, row.first_attempt_at)
        exited = row.stage in EXIT_STAGES
        for tally in (total, inside if hours.is_open(row.created_at) else outside, by_source[row.source],
                      by_coordinator[row.assignee_id]):
            tally.add(row, speed, in_day, exited)
        if exited:
            exits[(row.stage, row.stage_reason or "")] += 1
        buckets[len(SPEED_BUCKETS) if speed is None else bisect.bisect_left(limits, speed)] += 1
    return figures


def practice_figures(scope: Scope) -> dict[str, Tally]:
    """Referral leads of the range per referring practice named (steps reached only), from its partial index."""
    query = _in_range(select(Lead.referring_practice_id, Lead.reached_step)
                      .where(Lead.source == LeadSource.REFERRAL, Lead.referring_practice_id.is_not(None)), scope)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for practice, step in db.session.execute(query):
        tallies[practice].at_step[step or 0] += 1
    return dict(tallies)


def _within_business_day(hours: ClinicHours, created: dt.datetime, attempted: dt.datetime) -> bool:
    deadline = hours.business_day_deadline(created)
    return deadline is None or attempted <= deadline


# --- payers ------------------------------------------------------------------------------


@dataclass
class PayerTally:
    """One coverage type and payer: leads, benefits-check and prior-authorisation figures."""

    leads: int = 0
    verified: int = 0
    vob_hours: list[float] = field(default_factory=list)
    pa_submitted: int = 0
    pa_decided: int = 0
    pa_approved: int = 0
    pa_days: list[float] = field(default_factory=list)


INSURANCE_COLUMNS = (Insurance.lead_id, Insurance.created_at, Insurance.coverage_type, Insurance.payer,
                     Insurance.verified_at, Insurance.pa_status, Insurance.pa_submitted_at, Insurance.pa_decided_at)


def payer_figures(scope: Scope, approved_status: str) -> dict[tuple[str, str | None], PayerTally]:
    """Per coverage type and payer, for each lead's latest insurance: leads, VOB turnaround, PA approval."""
    query = _in_range(select(*INSURANCE_COLUMNS).join(Lead, Lead.id == Insurance.lead_id), scope)
    latest: dict[str, Any] = {}
    for row in db.session.execute(query):
        kept = latest.get(row.lead_id)
        if kept is None or row.created_at > kept.created_at:
            latest[row.lead_id] = row
    tallies: dict[tuple[str, str | None], PayerTally] = defaultdict(PayerTally)
    for row in latest.values():
        _count_payer(tallies[(row.coverage_type, row.payer)], row, approved_status)
    return dict(sorted(tallies.items(), key=lambda item: -item[1].leads))


def _count_payer(tally: PayerTally, row: Any, approved_status: str) -> None:
    tally.leads += 1
    if row.verified_at:
        tally.verified += 1
        tally.vob_hours.append((row.verified_at - row.created_at).total_seconds() / 3600)
    tally.pa_submitted += row.pa_submitted_at is not None
    if row.pa_decided_at:
        tally.pa_decided += 1
        tally.pa_approved += row.pa_status == approved_status
        if row.pa_submitted_at:
            tally.pa_days.append((row.pa_decided_at - row.pa_submitted_at).total_seconds() / 86400)


# --- coordinators now, and the trend -------------------------------------------------------


def overdue_callbacks(now: dt.datetime, coordinator: str | None) -> dict[str | None, int]:
    """Callbacks past due right now, per assignee (only ``coordinator``'s when given)."""
    query = (select(Callback.assignee_id, func.count()).where(Callback.done_at.is_(None), Callback.due_at < now)
             .group_by(Callback.assignee_id))
    if coordinator == "none":
        query = query.where(Callback.assignee_id.is_(None))
    elif coordinator:
        query = query.where(Callback.assignee_id == coordinator)
    return {assignee: count for assignee, count in db.session.execute(query)}


@dataclass
class Week:
    """One week of the trend."""

    starts: dt.date
    enquiries: int = 0
    speeds: list[float] = field(default_factory=list)

    @property
    def median_speed(self) -> float | None:
        """Median seconds to first attempt that week."""
        return metrics.percentile(sorted(self.speeds), 50)


def trend(scope: Scope, today: dt.date, zone: Any) -> list[Week]:
    """Enquiries and median speed to lead per clinic week (Monday first), the last 26 weeks to this one."""
    monday = today - dt.timedelta(days=today.weekday())
    weeks = [Week(monday - dt.timedelta(weeks=TREND_WEEKS - 1 - n)) for n in range(TREND_WEEKS)]
    bounds = [cadence.midnight_utc(week.starts, zone) for week in weeks]
    end = cadence.midnight_utc(monday + dt.timedelta(days=7), zone)
    query = _filtered(select(Lead.created_at, Lead.first_attempt_at)
                      .where(Lead.created_at >= bounds[0], Lead.created_at < end), scope)
    for created, attempted in db.session.execute(query):
        week = weeks[bisect.bisect_right(bounds, created) - 1]
        week.enquiries += 1
        speed = metrics.speed_to_lead(created, attempted)
        if speed is not None:
            week.speeds.append(speed.total_seconds())
    return weeks


def exit_reasons() -> list[tuple[str, str]]:
    """Every (exit stage, reason) pair in pipeline order, so the exits table lists zeros too."""
    return [(stage, reason) for stage in (Stage.INELIGIBLE, Stage.UNREACHABLE, Stage.CLOSED)
            for reason in EXIT_REASONS[stage] if not metrics.is_duplicate(stage, reason)]
