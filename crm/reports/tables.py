"""Report tables: the figures as rows of typed cells, shown on the page and exported as CSV.

A cell's column kind says how it is shown (``count``, ``pct``, ``duration`` in seconds,
``hours``, ``days``, ``text``); the page and the CSV read the same rows, so both carry the
same figures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _

from .. import metrics, payers
from ..forms.leads import code_label
from ..models import LeadSource
from ..templating import duration
from .figures import SPEED_BUCKETS, STEP_NAMES, WITHIN, LeadFigures, PayerTally, Tally, Week


@dataclass(frozen=True)
class Column:
    """A table column: its heading and how its cells are shown."""

    label: str
    kind: str = "count"


@dataclass
class Table:
    """One report table: a key (for its CSV), a caption, columns and rows."""

    key: str
    title: str
    columns: list[Column]
    rows: list[list[Any]]


def funnel(figures: LeadFigures) -> Table:
    """How many leads reached each step, the conversion to the next, and exits at each step."""
    total = figures.total
    rows = []
    for index, name in enumerate(STEP_NAMES):
        following = total.reached[index + 1] if index + 1 < len(STEP_NAMES) else None
        rows.append([str(name), total.reached[index], metrics.rate(total.reached[index], total.leads),
                     metrics.rate(following, total.reached[index]) if following is not None else None,
                     total.exited_at[index]])
    return Table("funnel", _("Funnel: leads that reached each step"), [
        Column(_("Step"), "text"), Column(_("Leads reached")), Column(_("Share of all leads"), "pct"),
        Column(_("Conversion to next step"), "pct"), Column(_("Left the pipeline after this step"))], rows)


def exits(figures: LeadFigures, reasons: list[tuple[str, str]]) -> Table:
    """Leads that left the pipeline, by exit and reason (reopened leads are no longer exits)."""
    known = set(reasons)
    rows = [[code_label(stage), code_label(reason), figures.exits.get((stage, reason), 0)]
            for stage, reason in reasons]
    rows += [[code_label(stage), code_label(reason) if reason else _("No reason"), count]
             for (stage, reason), count in sorted(figures.exits.items()) if (stage, reason) not in known]
    return Table("exits", _("Exits by stage and reason"), [
        Column(_("Exit"), "text"), Column(_("Reason"), "text"), Column(_("Leads"))], rows)


def speed(figures: LeadFigures) -> Table:
    """Speed to lead for all leads and split by whether they came in during opening hours."""
    groups = ((_("All leads"), figures.total), (_("Submitted during opening hours"), figures.inside_hours),
              (_("Submitted outside opening hours"), figures.outside_hours))
    rows = [[label, *_speed_cells(tally)] for label, tally in groups]
    return Table("speed", _("Speed to lead"), [
        Column(_("Leads"), "text"), Column(_("Leads")), Column(_("Attempted")), Column(_("Median"), "duration"),
        Column(_("90th percentile"), "duration"),
        *(Column(str(label), "pct") for label, _limit in WITHIN),
        Column(_("Within 1 business day"), "pct"), Column(_("Median to first live contact"), "duration"),
        Column(_("Attempts per lead"), "decimal"), Column(_("Contact rate"), "pct")], rows)


def _speed_cells(tally: Tally) -> list[Any]:
    shares = [metrics.rate(count, tally.leads) for count in tally.within]
    return [tally.leads, tally.attempted, tally.speed(50), tally.speed(90), *shares,
            metrics.rate(tally.within_business_day, tally.leads), tally.contact_speed(50),
            tally.attempts / tally.leads if tally.leads else None, metrics.rate(tally.contacted, tally.leads)]


def speed_distribution(figures: LeadFigures) -> Table:
    """How many leads got their first attempt within each band, and how many none yet."""
    labels = [str(label) for label, _limit in SPEED_BUCKETS] + [_("No attempt yet")]
    rows = [[label, count, metrics.rate(count, figures.total.leads)]
            for label, count in zip(labels, figures.speed_buckets, strict=True)]
    return Table("speed_distribution", _("Time to first attempt"), [
        Column(_("Time to first attempt"), "text"), Column(_("Leads")), Column(_("Share"), "pct")], rows)


def rate_columns() -> list[Column]:
    """The columns every per-source and per-practice table shares after its first."""
    return [Column(_("Enquiries")), Column(_("Contact rate"), "pct"), Column(_("Eligible rate"), "pct"),
            Column(_("Conversion"), "pct")]


def _rate_cells(tally: Tally) -> list[Any]:
    return [tally.leads, metrics.rate(tally.contacted, tally.leads), metrics.rate(tally.eligible, tally.leads),
            metrics.rate(tally.converted, tally.leads)]


def sources(figures: LeadFigures) -> Table:
    """Enquiries, contact, eligible and conversion rates per source."""
    rows = [[code_label(source), *_rate_cells(tally)]
            for source, tally in sorted(figures.by_source.items(), key=lambda item: -item[1].leads)]
    return Table("sources", _("Sources"), [Column(_("Source"), "text"), *rate_columns()], rows)


def referral_practices(figures: LeadFigures, practices: dict[str, Tally], names: dict[str, str]) -> Table:
    """The same rates per referring practice; referrals naming none make one row of their own."""
    rows = sorted(([names.get(practice, _("Unreadable practice name")), *_rate_cells(tally)]
                   for practice, tally in practices.items()), key=lambda row: (-row[1], row[0].casefold()))
    unnamed = _less(figures.by_source.get(LeadSource.REFERRAL) or Tally(), practices.values())
    if unnamed.leads:
        rows.append([_("No practice given"), *_rate_cells(unnamed)])
    return Table("referral_practices", _("Referrals by referring practice"),
                 [Column(_("Referring practice"), "text"), *rate_columns()], rows)


def _less(whole: Tally, parts: Iterable[Tally]) -> Tally:
    """The leads of ``whole`` in none of ``parts`` (steps reached only)."""
    rest = list(whole.at_step)
    for part in parts:
        rest = [left - taken for left, taken in zip(rest, part.at_step, strict=True)]
    return Tally(at_step=rest)


def payer_table(tallies: dict[tuple[str, str | None], PayerTally]) -> Table:
    """Leads per coverage type and payer, benefits-check turnaround, PA approval and turnaround."""
    rows = [[code_label(coverage), payers.label(payer), t.leads, t.verified,
             metrics.percentile(sorted(t.vob_hours), 50), t.pa_decided, metrics.rate(t.pa_approved, t.pa_decided),
             metrics.percentile(sorted(t.pa_days), 50)]
            for (coverage, payer), t in tallies.items()]
    return Table("payers", _("Payers"), [
        Column(_("Coverage type"), "text"), Column(_("Carrier"), "text"), Column(_("Leads")),
        Column(_("Benefits verified")), Column(_("Median benefits check (requested to verified)"), "hours"),
        Column(_("Prior authorisations decided")), Column(_("Approval rate"), "pct"),
        Column(_("Median prior authorisation (submitted to decided)"), "days")], rows)


def coordinators(figures: LeadFigures, overdue: dict[str | None, int], names: dict[str | None, str]) -> Table:
    """Per coordinator: leads assigned, attempts, speed to lead, overdue callbacks now, conversions."""
    people = sorted(set(figures.by_coordinator) | set(overdue), key=lambda key: names.get(key, ""))
    rows = []
    for person in people:
        tally = figures.by_coordinator.get(person) or Tally()
        rows.append([names.get(person, _("Former staff")), tally.leads, tally.attempts, tally.speed(50),
                     overdue.get(person, 0), tally.converted])
    return Table("coordinators", _("Coordinators"), [
        Column(_("Coordinator"), "text"), Column(_("Leads assigned")), Column(_("Attempts")),
        Column(_("Median speed to lead"), "duration"), Column(_("Overdue callbacks now")),
        Column(_("Conversions"))], rows)


def trend(weeks: list[Week]) -> Table:
    """Enquiries and median speed to lead per week."""
    rows = [[week.starts.isoformat(), week.enquiries, week.median_speed] for week in weeks]
    return Table("trend", _("Last 26 weeks"), [
        Column(_("Week starting"), "text"), Column(_("Enquiries")),
        Column(_("Median speed to lead"), "duration")], rows)


# --- cells as text ---------------------------------------------------------------------


def show(value: Any, kind: str) -> str:
    """A cell as the page shows it; an empty figure (nothing to divide) is a dash."""
    if value is None:
        return "—"
    if kind == "count":
        return f"{value:,}"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "decimal":
        return f"{value:.1f}"
    if kind == "duration":
        return duration(dt.timedelta(seconds=value))
    if kind == "hours":
        return f"{value:.1f} h"
    if kind == "days":
        return f"{value:.1f} days"
    return str(value)


def export_cell(value: Any, kind: str) -> Any:
    """A cell as the CSV holds it: plain numbers (percent, minutes, hours, days), text as is."""
    if value is None:
        return ""
    if kind == "pct":
        return round(value * 100, 1)
    if kind == "duration":
        return round(value / 60, 1)
    if kind in ("decimal", "hours", "days"):
        return round(value, 1)
    return value


def export_heading(column: Column) -> str:
    """A CSV heading naming the unit of its numbers."""
    unit = {"pct": " (%)", "duration": " (minutes)", "hours": " (hours)", "days": " (days)"}.get(column.kind, "")
    return column.label + unit
