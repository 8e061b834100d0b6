"""The audit viewer: filtered, paged events, one lead's access history and CSV export.

Every page here is itself audited (``audit_viewed``, ``audit_exported``). Nothing on these
pages decrypts a lead: events carry ids and codes, shown as staff names, reference codes and
words (:mod:`crm.admin.audit_rows`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from .. import audit as audit_log
from .. import cadence
from ..access import fresh_required
from ..clinic import clinic_zone
from ..csvexport import csv_lines
from ..forms.audit import AuditFilterForm
from ..labels import label
from ..models import UUID_TEXT, Lead, User, db, utcnow
from . import bp
from .audit_rows import event_rows


def _filter_form(formdata: MultiDict) -> AuditFilterForm:
    """The filter form bound to ``formdata``, with today's staff and the action vocabulary."""
    form = AuditFilterForm(formdata)
    emails = db.session.execute(select(User.id, User.email).order_by(User.email)).all()
    form.user.choices = [("", _("Anyone")), *((row.id, row.email) for row in emails)]
    actions = sorted((label(a, "audit_actions"), a) for a in audit_log.ACTIONS)
    form.action.choices = [("", _("Any action")), *((a, words) for words, a in actions)]
    return form


def _lead_id(key: str | None) -> str | None:
    """Resolve a lead reference or id to the lead id events are recorded under."""
    if not key or UUID_TEXT.match(key.lower()):
        return key.lower() if key else None
    return db.session.scalar(select(Lead.id).where(func.upper(Lead.reference) == key.upper()))


def _utc(day: dt.date | None, days_after: int = 0) -> dt.datetime | None:
    """Clinic-local midnight starting ``day`` (plus ``days_after``) as naive UTC."""
    if day is None:
        return None
    return cadence.midnight_utc(day + dt.timedelta(days=days_after), clinic_zone())


def _filters(form: AuditFilterForm) -> audit_log.AuditFilter | None:
    """The validated form as a filter, or None (with a field error) when it cannot apply."""
    if not form.validate():
        return None
    lead_id = _lead_id(form.lead.data)
    if form.lead.data and lead_id is None:
        form.lead.errors.append(_("No lead has that reference."))
        return None
    return audit_log.AuditFilter(
        actor_id=form.user.data or None,
        lead_id=lead_id,
        action=form.action.data or None,
        since=_utc(form.date_from.data),
        until=_utc(form.date_to.data, days_after=1),
        before=form.before.data,
        after=form.after.data,
    )


@bp.get("/audit")
def audit():
    """Browse the audit log by staff member, lead, action and date, newest first."""
    form = _filter_form(request.args)
    filters = _filters(form)
    page = audit_log.page_of_events(filters) if filters else None
    details = {"page": "log", **(filters.codes() if filters else {})}
    audit_log.record("audit_viewed", actor=current_user, object_type="audit", details=details)
    db.session.commit()
    return render_template("admin/audit.html", form=form, page=page, rows=event_rows(page.rows) if page else [])


@bp.get("/leads/<lead_id>/access")
def lead_access(lead_id: str):
    """Show everyone who viewed or changed one lead's record, newest first."""
    if not UUID_TEXT.match(lead_id):
        abort(404)
    reference = db.session.scalar(select(Lead.reference).where(Lead.id == lead_id))
    filters = audit_log.AuditFilter(
        lead_id=lead_id, before=request.args.get("before", type=int), after=request.args.get("after", type=int)
    )
    page = audit_log.page_of_events(filters)
    if reference is None and not page.rows:
        abort(404)
    audit_log.record("audit_viewed", actor=current_user, object_type="lead", object_id=lead_id,
                     details={"page": "lead_access"})
    db.session.commit()
    return render_template("admin/lead_access.html", lead_id=lead_id, reference=reference, page=page,
                           rows=event_rows(page.rows))


@bp.post("/audit/export")
@fresh_required
def audit_export():
    """Download the filtered events as CSV: event columns and actor e-mails, never PHI."""
    form = _filter_form(request.form)
    filters = _filters(form)
    if filters is None:
        flash(_("Those filters could not be applied; check them and export again."), "error")
        return redirect(url_for("admin.audit"))
    audit_log.record("audit_exported", actor=current_user, object_type="audit",
                     details={"format": "csv", **filters.codes()})
    db.session.commit()
    filename = f"audit-events-{utcnow():%Y%m%dT%H%M%SZ}.csv"
    return Response(
        stream_with_context(_csv_lines(filters)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _csv_lines(filters: audit_log.AuditFilter) -> Iterator[str]:
    """Yield the CSV header and one line per event, oldest first."""
    return csv_lines(audit_log.EXPORT_COLUMNS, audit_log.export_rows(filters))
