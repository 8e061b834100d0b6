"""The Reports page and its CSV exports; every open, filter change and export is audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import cache
from typing import Any

from flask import Response, abort, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, cadence, vob
from ..clinic import clinic_hours, clinic_today, clinic_zone
from ..csvexport import csv_lines
from ..forms.leads import options
from ..forms.reports import DEFAULT_PERIOD, ReportFilterForm, period_bounds
from ..models import Role, User, db, utcnow
from ..operations.practices import practice_names
from . import REPORT_ROLES, bp, charts, figures, tables

FILTER_FIELDS = ("period", "date_from", "date_to", "source", "coverage", "payer", "coordinator", "urgency")


def _own_only() -> bool:
    """Coordinators see their own leads' figures; admins and managers everyone's."""
    return current_user.role == Role.COORDINATOR


def _staff_names() -> dict[str | None, str]:
    names: dict[str | None, str] = {user.id: user.shown_name for user in db.session.scalars(db.select(User))}
    names[None] = _("Unassigned")
    return names


def _filter_form(names: dict[str | None, str]) -> ReportFilterForm:
    """The filter form bound to the query string, offering coordinators only to those who see everyone."""
    form = ReportFilterForm(request.args)
    if _own_only():
        form.coordinator.choices = options([("", _("My leads"))])
    else:
        people = db.session.execute(db.select(User.id).where(User.role == Role.COORDINATOR)).scalars()
        form.coordinator.choices += options(sorted(((uid, names[uid]) for uid in people), key=lambda p: p[1]))
    return form


def _scope(form: ReportFilterForm, today: dt.date) -> tuple[figures.Scope, tuple[dt.date, dt.date]]:
    """The leads the report counts: the period in clinic days, as UTC bounds, and the other filters."""
    first, last = period_bounds(form.period.data or DEFAULT_PERIOD, today, form.date_from.data, form.date_to.data)
    zone = clinic_zone()
    coordinator = current_user.id if _own_only() else form.coordinator.data or None
    scope = figures.Scope(cadence.midnight_utc(first, zone), cadence.midnight_utc(last + dt.timedelta(days=1), zone),
                          source=form.source.data or None, coverage=form.coverage.data or None,
                          payer=form.payer.data or None, coordinator=coordinator, urgency=form.urgency.data or None)
    return scope, (first, last)


def _filter_codes(form: ReportFilterForm, days: tuple[dt.date, dt.date]) -> dict[str, Any]:
    """The filters as audit details: codes, dates and a staff id, never PHI."""
    codes: dict[str, Any] = {name: form[name].data for name in ("period", "source", "coverage", "payer",
                                                                 "coordinator", "urgency") if form[name].data}
    codes.update({"from": days[0].isoformat(), "to": days[1].isoformat(), "own_leads": _own_only()})
    return codes


def build_tables(scope: figures.Scope, today: dt.date, names: dict[str | None, str],
                 only: str | None = None) -> dict[str, tables.Table]:
    """The report tables for a scope, keyed as their CSVs (just ``only`` when given: an export)."""
    lead_figures = cache(lambda: figures.lead_figures(scope, clinic_hours()))
    builders: dict[str, Callable[[], tables.Table]] = {
        "funnel": lambda: tables.funnel(lead_figures()),
        "exits": lambda: tables.exits(lead_figures(), figures.exit_reasons()),
        "speed": lambda: tables.speed(lead_figures()),
        "speed_distribution": lambda: tables.speed_distribution(lead_figures()),
        "sources": lambda: tables.sources(lead_figures()),
        "referral_practices": lambda: _practice_table(lead_figures(), figures.practice_figures(scope)),
        "payers": lambda: tables.payer_table(figures.payer_figures(scope, vob.RULES["pa_approved"])),
        "coordinators": lambda: tables.coordinators(
            lead_figures(), figures.overdue_callbacks(utcnow(), scope.coordinator), names),
        "trend": lambda: tables.trend(figures.trend(scope, today, clinic_zone())),
    }
    keys = [only] if only else list(builders)
    return {key: builders[key]() for key in keys if key in builders}


def _practice_table(lead_figures: figures.LeadFigures, practices: dict[str, figures.Tally]) -> tables.Table:
    """The per-practice table, unsealing the names of just the practices it shows."""
    return tables.referral_practices(lead_figures, practices, practice_names(practices))


def build_charts(built: dict[str, tables.Table]) -> dict[str, charts.Chart]:
    """The funnel, the speed-to-lead distribution and the two weekly trends, from their tables."""
    funnel, spread, weeks = built["funnel"], built["speed_distribution"], built["trend"]
    return {
        "funnel": charts.horizontal("funnel", _("Leads that reached each step"), [r[0] for r in funnel.rows],
                                    [r[1] for r in funnel.rows], [tables.show(r[1], "count") for r in funnel.rows]),
        "speed_distribution": charts.horizontal(
            "speed_distribution", _("Leads by time to first attempt"), [r[0] for r in spread.rows],
            [r[1] for r in spread.rows], [tables.show(r[1], "count") for r in spread.rows]),
        "trend_enquiries": charts.columns("trend_enquiries", _("Enquiries per week"), [r[0] for r in weeks.rows],
                                          [r[1] for r in weeks.rows], [tables.show(r[1], "count") for r in weeks.rows]),
        "trend_speed": charts.columns("trend_speed", _("Median speed to lead per week"), [r[0] for r in weeks.rows],
                                      [r[2] for r in weeks.rows], [tables.show(r[2], "duration") for r in weeks.rows]),
    }


@bp.get("/")
def index():
    """Show every report for the chosen filters; invalid filters show field errors and no figures."""
    names, today = _staff_names(), clinic_today()
    form = _filter_form(names)
    if not form.validate():
        return render_template("reports/index.html", form=form, built=None, charts=None), 400
    scope, days = _scope(form, today)
    built = build_tables(scope, today, names)
    audit.record("report_viewed", actor=current_user, object_type="report", object_id="all",
                 details=_filter_codes(form, days))
    db.session.commit()
    query = {name: request.args[name] for name in FILTER_FIELDS if request.args.get(name)}
    return render_template("reports/index.html", form=form, built=built, charts=build_charts(built), days=days,
                           export_urls={key: url_for("reports.export", table=key, **query) for key in built},
                           show=tables.show)


@bp.get("/export/<table>.csv")
def export(table: str):
    """Download one report table as CSV (numbers plain, every text cell formula-neutralised)."""
    names, today = _staff_names(), clinic_today()
    form = _filter_form(names)
    if not form.validate():
        abort(400)
    scope, days = _scope(form, today)
    built = build_tables(scope, today, names, only=table)
    if table not in built:
        abort(404)
    chosen = built[table]
    audit.record("report_exported", actor=current_user, object_type="report", object_id=table,
                 details={"format": "csv", **_filter_codes(form, days)})
    db.session.commit()
    rows = ([tables.export_cell(value, column.kind) for value, column in zip(row, chosen.columns, strict=True)]
            for row in chosen.rows)
    filename = f"report-{table}-{days[0]:%Y%m%d}-{days[1]:%Y%m%d}.csv"
    return Response(stream_with_context(csv_lines([tables.export_heading(c) for c in chosen.columns], rows)),
                    mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.app_context_processor
def _report_nav() -> dict[str, Any]:
    """Whether the signed-in user's navigation offers Reports."""
    user = current_user
    return {"can_see_reports": bool(user and user.is_authenticated and user.role in REPORT_ROLES)}

