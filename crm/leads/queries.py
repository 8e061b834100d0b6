"""Read queries for the workspace, each shaped to use an index so pages stay fast at 1M leads."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import g
from sqlalchemy import Select, exists, func, literal_column, or_, select, true
from sqlalchemy.orm import aliased, joinedload, selectinload

from .. import cadence, crypto, eligibility, models
from ..models import (
    OPEN_STAGES,
    REFERENCE_ALPHABET,
    Appointment,
    AppointmentStatus,
    Callback,
    ConsentRecord,
    ContactAttempt,
    Enquiry,
    Lead,
    LeadChange,
    LeadEvent,
    Screening,
    Stage,
    User,
    db,
    email_index,
    name_dob_index,
    phone_index,
)

if TYPE_CHECKING:
    from .present import Reader

HOME_LIMIT = 25
SEARCH_LIMIT = 50


def with_keys(query: Select) -> Select:
    """Load each lead's wrapped data key in one extra query, not one per row."""
    return query.options(selectinload(Lead.key))


def urgent_unacknowledged() -> list[Lead]:
    """Urgent leads nobody has acknowledged yet, oldest first."""
    query = (select(Lead).where(Lead.urgent == true(), Lead.acknowledged_at.is_(None), Lead.erased_at.is_(None))
             .order_by(Lead.created_at))
    return list(db.session.scalars(with_keys(query.limit(HOME_LIMIT))))


def _callbacks(*conditions: Any) -> list[Callback]:
    query = (select(Callback).where(Callback.done_at.is_(None), *conditions).order_by(Callback.due_at)
             .options(joinedload(Callback.lead).selectinload(Lead.key)).limit(HOME_LIMIT))
    return list(db.session.scalars(query))


def my_callbacks_today(user: User, now: dt.datetime, zone: ZoneInfo) -> list[Callback]:
    """The user's callbacks still to come today (clinic time)."""
    _start, end = cadence.local_day_bounds(now, zone)
    return _callbacks(Callback.assignee_id == user.id, Callback.due_at >= now, Callback.due_at < end)


def overdue_callbacks(now: dt.datetime) -> list[Callback]:
    """Everyone's callbacks whose time has passed, most overdue first."""
    return _callbacks(Callback.due_at < now)


def new_unassigned() -> list[Lead]:
    """New leads nobody has claimed, longest waiting first."""
    # ordered as ix_leads_stage_assignee_created is (the same order, given the filter), so no index walked in
    # date order alone can serve it: new leads are the newest, and such a walk reaches them last
    query = (select(Lead).where(Lead.stage == Stage.NEW, Lead.assignee_id.is_(None), Lead.erased_at.is_(None))
             .order_by(Lead.assignee_id, Lead.created_at).limit(HOME_LIMIT))
    return list(db.session.scalars(with_keys(query)))


def stage_counts() -> dict[str, int]:
    """How many leads sit in each stage, from the trigger-kept counts (flat at any number of leads)."""
    return models.stage_counts()


# --- the lead list -------------------------------------------------------------------


def list_query(filters: dict[str, Any], user: User, zone: ZoneInfo) -> Select:
    """The filtered, sorted lead list (no paging)."""
    query = select(Lead).where(Lead.erased_at.is_(None))  # tombstones have nothing to list
    if filters.get("stage"):
        query = query.where(Lead.stage == filters["stage"])
    query = _assignee_filter(query, filters.get("assignee"), user)
    if filters.get("source"):
        query = query.where(Lead.source == filters["source"])
    if filters.get("language"):
        query = query.where(Lead.preferred_language == filters["language"])
    if filters.get("urgency"):
        query = query.where(Lead.urgent == true())
        if filters["urgency"] == "unacknowledged":
            query = query.where(Lead.acknowledged_at.is_(None))
    query = _date_filter(query, filters.get("created_from"), filters.get("created_to"), zone)
    return _sorted(query, filters.get("sort") or "newest")


def _assignee_filter(query: Select, assignee: str | None, user: User) -> Select:
    if assignee == "me":
        return query.where(Lead.assignee_id == user.id)
    if assignee == "none":
        return query.where(Lead.assignee_id.is_(None))
    return query.where(Lead.assignee_id == assignee) if assignee else query


def _date_filter(query: Select, start: dt.date | None, end: dt.date | None, zone: ZoneInfo) -> Select:
    """Whole clinic-time days: from the start of ``start`` to the end of ``end``."""
    if start:
        query = query.where(Lead.created_at >= cadence.midnight_utc(start, zone))
    if end:
        query = query.where(Lead.created_at < cadence.midnight_utc(end + dt.timedelta(days=1), zone))
    return query


def _sorted(query: Select, sort: str) -> Select:
    if sort == "oldest":
        return query.order_by(Lead.created_at, Lead.id)
    if sort == "callback":
        return query.where(Lead.next_callback_at.is_not(None)).order_by(Lead.next_callback_at, Lead.id)
    return query.order_by(Lead.created_at.desc(), Lead.id.desc())


#: The lead list counts its matches up to this many, so the count costs the same at any number of leads.
LIST_COUNT_CAP = 10_000


def count_of(query: Select) -> int:
    """How many leads the filtered list holds, up to ``LIST_COUNT_CAP + 1`` (more means "over the cap").

    It selects a constant, not a column, so the list's index (which carries ``erased_at``) answers it alone.
    """
    capped = (query.with_only_columns(literal_column("1"), maintain_column_froms=True)
              .order_by(None).limit(LIST_COUNT_CAP + 1))
    return db.session.scalar(select(func.count()).select_from(capped.subquery())) or 0


def page_of(query: Select, page: int, size: int) -> tuple[list[Lead], bool]:
    """One page of leads with their keys, and whether another page follows (no full count)."""
    rows = list(db.session.scalars(with_keys(query.offset((page - 1) * size).limit(size + 1))))
    return rows[:size], len(rows) > size


# --- blind-index search --------------------------------------------------------------


def as_reference(text: str) -> str | None:
    """A reference code as stored (``ABCD-EF23``) from any case, with or without the dash; else ``None``."""
    compact = "".join(ch for ch in text.upper() if ch not in " -")
    if len(compact) != 8 or any(ch not in REFERENCE_ALPHABET for ch in compact):
        return None
    return f"{compact[:4]}-{compact[4:]}"


def search_kind(text: str, dob: dt.date | None, region: str) -> str:
    """Which lookup a search uses: ``email``, ``name_dob``, ``phone`` or ``reference``."""
    if "@" in text:
        return "email"
    if dob is not None:
        return "name_dob"
    if sum(ch.isdigit() for ch in text) >= 7 and crypto.normalize_phone(text, region):
        return "phone"
    if as_reference(text):
        return "reference"
    raise ValueError("Enter a phone number, an e-mail address, a reference code, or a last name with a date of birth.")


def find_by_reference(code: str) -> list[Lead]:
    """The lead whose own code, or one of whose enquiries' codes, is ``code`` (followed to a merge survivor)."""
    from_enquiries = select(Enquiry.lead_id).where(Enquiry.reference == code).scalar_subquery()
    query = select(Lead).where(or_(Lead.reference == code, Lead.id.in_(from_enquiries)))
    leads = list(db.session.scalars(with_keys(query)))
    survivors = [lead.merged_into_id for lead in leads if lead.merged_into_id]
    if survivors:
        leads = [lead for lead in leads if not lead.merged_into_id]
        leads += list(db.session.scalars(with_keys(select(Lead).where(Lead.id.in_(survivors)))))
    return [lead for lead in dict.fromkeys(leads) if lead.key is not None]


def find_leads(text: str, dob: dt.date | None, region: str, reader: Reader) -> list[Lead]:
    """Leads matching a phone, e-mail, reference code or last name + DOB: filter by index, then decrypt and compare."""
    kind = search_kind(text, dob, region)
    if kind == "reference":
        return find_by_reference(as_reference(text))
    column, digest, matches = _matcher(kind, text, dob, region)
    query = select(Lead).where(column == digest).order_by(Lead.created_at.desc()).limit(SEARCH_LIMIT)
    return [lead for lead in db.session.scalars(with_keys(query)) if matches(lead, reader)]


def _matcher(kind: str, text: str, dob: dt.date | None, region: str) -> tuple[Any, int | None, Any]:
    if kind == "email":
        wanted = crypto.normalize_email(text)
        return Lead.email_bidx, email_index(text), lambda lead, r: _norm_email(r.get(lead, "email", lead.id)) == wanted
    if kind == "name_dob":
        wanted_name = crypto.normalize_text(text)
        return Lead.name_dob_bidx, name_dob_index(text, dob), lambda lead, r: (
            _norm_text(r.get(lead, "last_name", lead.id)) == wanted_name and r.get(lead, "dob", lead.id) == dob)
    wanted_phone = crypto.normalize_phone(text, region)
    return Lead.phone_bidx, phone_index(text), lambda lead, r: (
        _norm_phone(r.get(lead, "phone", lead.id), region) == wanted_phone)


def _norm_email(value: Any) -> str | None:
    return crypto.normalize_email(value) if isinstance(value, str) else None


def _norm_text(value: Any) -> str | None:
    return crypto.normalize_text(value) if isinstance(value, str) else None


def _norm_phone(value: Any, region: str) -> str | None:
    return crypto.normalize_phone(value, region) if isinstance(value, str) else None


APPOINTMENT_DAYS = 7


def upcoming_appointments(now: dt.datetime, zone: ZoneInfo, days: int = APPOINTMENT_DAYS) -> list:
    """Booked appointments from the start of today (clinic time) through the next ``days`` days, soonest first."""
    today = cadence.to_local(now, zone).date()
    start = cadence.midnight_utc(today, zone)
    end = cadence.midnight_utc(today + dt.timedelta(days=days + 1), zone)
    query = (select(Appointment).join(Lead, Lead.id == Appointment.lead_id)
             .where(Appointment.status == AppointmentStatus.BOOKED, Appointment.starts_at >= start,
                    Appointment.starts_at < end, Lead.erased_at.is_(None))
             .options(joinedload(Appointment.lead)).order_by(Appointment.starts_at).limit(HOME_LIMIT * 2))
    return list(db.session.scalars(query))


def screenings_awaiting_sign_off(limit: int = HOME_LIMIT) -> list[Screening]:
    """Each open lead's newest pre-screen that needs a clinician's review and has none yet, oldest first.

    Used by the clinician's home and by alerting; returns rows with their leads loaded, no PHI decrypted.
    """
    newer = aliased(Screening)
    query = (select(Screening).join(Lead, Lead.id == Screening.lead_id)
             .where(Screening.outcome == eligibility.REVIEW, Screening.signed_off_at.is_(None),
                    Lead.erased_at.is_(None), Lead.stage.in_(OPEN_STAGES),
                    ~exists().where(newer.lead_id == Screening.lead_id, newer.performed_at > Screening.performed_at))
             .options(joinedload(Screening.lead)).order_by(Screening.performed_at).limit(limit))
    return list(db.session.scalars(query))


def crisis_escalations(limit: int = HOME_LIMIT) -> list[LeadEvent]:
    """The newest crisis escalations (C-SSRS high risk) on leads not erased, newest first."""
    query = (select(LeadEvent).join(Lead, Lead.id == LeadEvent.lead_id)
             .where(LeadEvent.kind == "crisis_escalated", Lead.erased_at.is_(None))
             .options(joinedload(LeadEvent.lead)).order_by(LeadEvent.at.desc()).limit(limit))
    return list(db.session.scalars(query))


# --- one lead's records, for its page --------------------------------------------------


def staff_directory() -> dict[str, User]:
    """Every staff account by id (a clinic has tens, not thousands), read once per request."""
    if "staff_directory" not in g:
        g.staff_directory = {user.id: user for user in db.session.scalars(db.select(User))}
    return g.staff_directory


def has_changes(lead: Lead) -> bool:
    """True when some detail of the lead has been corrected (so previous values can be revealed)."""
    return db.session.scalar(db.select(LeadChange.id).where(LeadChange.lead_id == lead.id).limit(1)) is not None


def lead_callbacks(lead: Lead) -> list[Callback]:
    """Every callback of the lead, soonest due first."""
    return list(db.session.scalars(db.select(Callback).where(Callback.lead_id == lead.id).order_by(Callback.due_at)))


def lead_screenings(lead: Lead) -> list[Screening]:
    """The lead's pre-screens, newest first."""
    return list(db.session.scalars(db.select(Screening).where(Screening.lead_id == lead.id)
                                   .order_by(Screening.performed_at.desc())))


def lead_attempts(lead: Lead) -> list[ContactAttempt]:
    """The lead's contact attempts."""
    return list(db.session.scalars(db.select(ContactAttempt).where(ContactAttempt.lead_id == lead.id)))


def lead_events(lead: Lead) -> list[LeadEvent]:
    """The lead's timeline events."""
    return list(db.session.scalars(db.select(LeadEvent).where(LeadEvent.lead_id == lead.id)))


def consent_records(lead: Lead) -> list[ConsentRecord]:
    """Consents staff recorded for the lead (verbal, written, imported), oldest first."""
    return list(db.session.scalars(select(ConsentRecord).where(ConsentRecord.lead_id == lead.id)
                                   .order_by(ConsentRecord.taken_at)))
