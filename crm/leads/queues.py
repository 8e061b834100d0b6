"""Home queues, the lead list and blind-index search."""

from __future__ import annotations

from types import SimpleNamespace

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..clinic import clinic_zone
from ..forms.appointments import KIND_LABELS, PLACE_LABELS
from ..forms.leads import LeadFilterForm, SearchForm, options
from ..models import Lead, Role, db, utcnow
from ..operations import leads as ops
from . import bp
from . import queries as q
from .present import Reader, lead_row, staff_name
from .queries import staff_directory

SEARCH_HITS = "search_hits"


def audit_listing(view: str, rows: list, reader: Reader) -> None:
    """Audit which leads a page showed, and every field it failed to decrypt; then commit."""
    for lead_id, fields in reader.failed.items():
        ops.record_unreadable(lead_id, current_user, fields)
    shown = list(dict.fromkeys(row.id for row in rows))
    if shown:
        ops.record_listing(current_user, view, shown)
    db.session.commit()


@bp.get("/home")
def home():
    """Show the day's queues: unacknowledged urgent leads first, then callbacks, new leads, counts."""
    now, zone, reader, users = utcnow(), clinic_zone(), Reader(), staff_directory()
    queues = {
        "urgent": [lead_row(lead, reader, users, now) for lead in q.urgent_unacknowledged()],
        "today": [lead_row(c.lead, reader, users, now, c.due_at)
                  for c in q.my_callbacks_today(current_user, now, zone)],
        "overdue": [lead_row(c.lead, reader, users, now, c.due_at) for c in q.overdue_callbacks(now)],
        "new": [lead_row(lead, reader, users, now) for lead in q.new_unassigned()],
    }
    counts = q.stage_counts()
    appointments = appointment_rows(q.upcoming_appointments(now, zone), users)
    clinical = clinician_queues(reader, users, now) if current_user.role == Role.CLINICIAN else {}
    shown = [row for rows in (*queues.values(), *clinical.values()) for row in rows] + appointments
    audit_listing("home", shown, reader)
    return render_template("leads/home.html", queues=queues, counts=counts, search=SearchForm(formdata=None),
                           appointments=appointments, appointment_days=q.APPOINTMENT_DAYS, clinical=clinical)


def clinician_queues(reader: Reader, users: dict, now) -> dict[str, list]:
    """A clinician's queues: pre-screens awaiting sign-off, and crisis escalations."""
    return {
        "sign_off": [lead_row(s.lead, reader, users, now) for s in q.screenings_awaiting_sign_off()],
        "crisis": [lead_row(e.lead, reader, users, now) for e in q.crisis_escalations()],
    }


def appointment_rows(appointments: list, users: dict) -> list[SimpleNamespace]:
    """Home's appointment rows: reference code, kind, place and clinician only (no PHI is decrypted)."""
    return [SimpleNamespace(id=a.lead_id, lead_id=a.lead_id, reference=a.lead.reference, starts_at=a.starts_at,
                            kind=KIND_LABELS.get(a.kind, a.kind), place=PLACE_LABELS.get(a.place, a.place),
                            clinician=staff_name(users.get(a.clinician_id)), appointment_id=a.id)
            for a in appointments]


def assignee_choices(users: dict) -> list[tuple[str, str]]:
    """Every staff member, active ones first; former staff stay listed (marked) so their leads stay findable."""
    ordered = sorted(users.values(), key=lambda u: (not u.is_active_flag, staff_name(u).lower()))
    return [(u.id, staff_name(u) if u.is_active_flag else _("%(name)s (inactive)", name=staff_name(u)))
            for u in ordered]


@bp.get("/")
def index():
    """List leads by stage, assignee, source, urgency and date; decrypt only the rows shown."""
    users = staff_directory()
    form = LeadFilterForm(request.args)
    form.assignee.choices += options(assignee_choices(users))
    form.validate()
    filters = {name: value for name, value in form.data.items() if name not in form.errors}
    page = filters.get("page") or 1
    query = q.list_query(filters, current_user, clinic_zone())
    leads, more = q.page_of(query, page, current_app.config["LEADS_PAGE_SIZE"])
    total = q.count_of(query)
    reader, now = Reader(), utcnow()
    rows = [lead_row(lead, reader, users, now) for lead in leads]
    audit_listing("list", rows, reader)
    return render_template("leads/index.html", form=form, rows=rows, page=page, more=more,
                           total=total, count_cap=q.LIST_COUNT_CAP)


@bp.route("/search", methods=["GET", "POST"])
def search():
    """Find leads by phone, e-mail or last name + DOB; a POST, so no identifier reaches a URL or log."""
    form = SearchForm()
    if form.validate_on_submit():
        reader = Reader()
        try:
            found = q.find_leads(form.query.data, form.dob.data, current_app.config["PHONE_REGION"], reader)
        except ValueError as exc:
            form.query.errors.append(str(exc))
        else:
            audit_listing("search", [], reader)  # the hits are audited where they are shown
            return _show_hits(found)
    return render_template("leads/search.html", form=form, rows=_remembered_hits())


def _show_hits(found: list[Lead]):
    """Open a single match; remember several (ids only) for the results page."""
    if len(found) == 1:
        session.pop(SEARCH_HITS, None)
        return redirect(url_for("leads.detail", lead_id=found[0].id))
    session[SEARCH_HITS] = [lead.id for lead in found]
    if not found:
        flash(_("No lead matches that search."), "info")
    return redirect(url_for("leads.search"))


def _remembered_hits() -> list:
    """Rows for the ids the search just found, shown (and audited) once: a later visit runs no search."""
    ids = session.pop(SEARCH_HITS, None) or []
    if not ids:
        return []
    leads = db.session.scalars(q.with_keys(db.select(Lead).where(Lead.id.in_(ids))
                                           .order_by(Lead.created_at.desc())))
    reader, users, now = Reader(), staff_directory(), utcnow()
    rows = [lead_row(lead, reader, users, now) for lead in leads]
    audit_listing("search", rows, reader)
    return rows
