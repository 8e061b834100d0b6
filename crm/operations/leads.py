"""Coordinator actions on a lead: views and reveals, assignment, contact, callbacks, notes, stages.

Each function checks its state rules before changing anything (raising ``ValueError`` with a
message the view can flash, never PHI), then changes rows, flushes and audits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import func, select, update

from .. import audit, cadence, eligibility, vob
from ..clinic import clinic_zone
from ..models import (
    EXIT_REASONS,
    EXIT_STAGES,
    PREFERRED_LANGUAGES,
    REOPEN_REASONS,
    REOPENABLE_STAGES,
    Appointment,
    AppointmentStatus,
    Callback,
    ContactAttempt,
    CoverageType,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    Screening,
    Stage,
    User,
    allowed_moves,
    db,
    move_needs_reason,
    utcnow,
)
from .guards import refuse_if_do_not_contact, refuse_text_without_consent
from .refusals import Refused, Stale

REVEALED_FIELDS = ["member_id", "group_number", "cards"]


def record(action: str, lead_id: str, actor: User | None, details: dict[str, object] | None = None,
           outcome: str = "success") -> None:
    """Audit an action on a lead (details are codes and ids only)."""
    audit.record(action, actor=actor, object_type="lead", object_id=lead_id, outcome=outcome, details=details)


def add_event(lead: Lead, actor: User | None, kind: str, at: dt.datetime | None = None, **fields: object) -> LeadEvent:
    """Append an entry to the lead's timeline."""
    event = LeadEvent(lead=lead, actor_id=actor.id if actor else None, kind=kind, at=at or utcnow(), **fields)
    db.session.add(event)
    return event


# --- reads that must be audited ------------------------------------------------------


def record_view(lead_id: str, actor: User, unreadable: list[str]) -> None:
    """Audit a view of a lead, and any field that failed to decrypt while showing it."""
    record("lead_viewed", lead_id, actor)
    record_unreadable(lead_id, actor, unreadable)


def record_unreadable(lead_id: str, actor: User, unreadable: list[str]) -> None:
    """Audit fields that failed authentication (tampered, moved or shredded)."""
    if unreadable:
        record("decrypt_failed", lead_id, actor, {"fields": sorted(set(unreadable))}, outcome="failure")


def record_listing(actor: User, view: str, lead_ids: list[str]) -> None:
    """Audit a page that showed leads (masked names and phones are still PHI): which leads, by whom."""
    audit.record("leads_listed", actor=actor, object_type="lead", details={"view": view, "leads": lead_ids})


def reveal_insurance(lead: Lead, actor: User) -> None:
    """Audit an explicit reveal of the member ID, group number and card images."""
    if not lead.insurances:
        raise ValueError(_("There is no insurance on file to reveal."))
    record("field_revealed", lead.id, actor, {"fields": REVEALED_FIELDS})


def record_card_view(lead: Lead, card: InsuranceCard, actor: User) -> None:
    """Audit one card image being served."""
    record("card_viewed", lead.id, actor, {"card_id": card.id, "side": card.side})


# --- assignment ----------------------------------------------------------------------


def assign(lead: Lead, assignee: User, actor: User) -> None:
    """Give the lead (and its open callbacks) to ``assignee``."""
    if not assignee.is_active_flag:
        raise ValueError(_("That account is deactivated."))
    if lead.assignee_id == assignee.id:
        raise ValueError(_("The lead is already assigned to that person."))
    lead.assignee_id = assignee.id
    db.session.execute(update(Callback).where(Callback.lead_id == lead.id, Callback.done_at.is_(None))
                       .values(assignee_id=assignee.id))
    kind = "claimed" if assignee.id == actor.id else "assigned"
    add_event(lead, actor, "assigned", reason=kind, body=assignee.shown_name)
    record("lead_assigned", lead.id, actor, {"assignee": assignee.id})


def claim(lead: Lead, actor: User) -> None:
    """Take an unassigned lead; someone else's lead must be reassigned explicitly."""
    if lead.assignee_id and lead.assignee_id != actor.id:
        raise ValueError(_("Another coordinator has this lead; use Assign to take it over."))
    assign(lead, actor, actor)


def set_preferred_language(lead: Lead, language: str, actor: User) -> None:
    """Record the language the patient prefers, as staff heard it (a language code, not PHI)."""
    if language not in PREFERRED_LANGUAGES:
        raise Refused(_("Choose a language from the list."), "language")
    if lead.preferred_language == language:
        raise Refused(_("The lead already has that preferred language."), "language")
    previous, lead.preferred_language = lead.preferred_language, language
    add_event(lead, actor, "language_changed", reason=language)
    record("preferred_language_changed", lead.id, actor, {"from": previous, "to": language})


# --- contact -------------------------------------------------------------------------


@dataclass
class AttemptResult:
    """What logging an attempt changed: the new stage, and whether the cadence is used up."""

    moved_to: str | None
    exhausted: bool


def calls_made(lead: Lead) -> int:
    """Unanswered attempts on the channels the cadence counts."""
    return db.session.scalar(select(func.count()).select_from(ContactAttempt).where(
        ContactAttempt.lead_id == lead.id,
        ContactAttempt.channel.in_(cadence.RULES["counted_channels"]),
        ContactAttempt.outcome.not_in(cadence.RULES["live_outcomes"]),
    )) or 0


def cadence_exhausted(lead: Lead) -> bool:
    """True while a not-yet-contacted lead has had every call in the cadence."""
    return lead.stage in (Stage.NEW, Stage.CONTACTING) and cadence.is_exhausted(calls_made(lead))


def _close_callbacks(lead: Lead, now: dt.datetime) -> None:
    db.session.execute(update(Callback).where(Callback.lead_id == lead.id, Callback.done_at.is_(None))
                       .values(done_at=now))
    lead.next_callback_at = None


def _stage_after_attempt(lead: Lead, outcome: str) -> Stage | None:
    if outcome in cadence.RULES["live_outcomes"]:
        return Stage.CONTACTED if lead.stage in (Stage.NEW, Stage.CONTACTING) else None
    return Stage.CONTACTING if lead.stage == Stage.NEW else None


REPEAT_WINDOW = dt.timedelta(minutes=2)


def recent_attempt(lead: Lead, now: dt.datetime) -> bool:
    """True when an attempt was logged on the lead in the last two minutes (a double submit, usually)."""
    return bool(db.session.scalar(select(func.count()).select_from(ContactAttempt).where(
        ContactAttempt.lead_id == lead.id, ContactAttempt.at > now - REPEAT_WINDOW)))


def log_attempt(lead: Lead, actor: User, channel: str, outcome: str, note: str | None = None,
                now: dt.datetime | None = None) -> AttemptResult:
    """Record a call, text or e-mail; advance the stage and close due callbacks.

    Its events are appended last, after the cadence's counts and the next call's booking.
    """
    refuse_if_do_not_contact(lead)
    refuse_text_without_consent(lead, channel)
    if not lead.is_open:
        raise ValueError(_("Reopen the lead before logging contact."))
    now = now or utcnow()
    with audit.appended_last():
        db.session.add(ContactAttempt(lead=lead, user_id=actor.id, at=now, channel=channel, outcome=outcome,
                                      note=note or None))
        lead.attempt_count = (lead.attempt_count or 0) + 1
        lead.first_attempt_at = lead.first_attempt_at or now
        if outcome in cadence.RULES["live_outcomes"]:
            lead.first_contact_at = lead.first_contact_at or now
        _close_callbacks(lead, now)
        target = _stage_after_attempt(lead, outcome)
        if target:
            move_stage(lead, target, None, actor, now=now)
        record("attempt_logged", lead.id, actor, {"channel": channel, "outcome": outcome})
        result = _after_cadence(lead, actor, target, now)
        if outcome not in cadence.RULES["live_outcomes"]:
            _book_next_call(lead, actor, now)
    return result


def may_contact(lead: Lead) -> bool:
    """Whether the clinic may still reach out to this lead: open, not erased, and not on do-not-contact."""
    return lead.is_open and not lead.is_erased and not lead.is_do_not_contact


def _book_next_call(lead: Lead, actor: User, now: dt.datetime) -> Callback | None:
    """Schedule the cadence's next call after an unanswered attempt; the coordinator may change it."""
    if lead.stage not in (Stage.NEW, Stage.CONTACTING) or not may_contact(lead):
        return None
    due = cadence.suggest_next(lead.created_at, calls_made(lead), now, clinic_zone())
    if due is None:
        return None
    return schedule_callback(lead, actor, max(due, now + dt.timedelta(minutes=1)), now=now, by="cadence")


def _after_cadence(lead: Lead, actor: User, moved_to: Stage | None, now: dt.datetime) -> AttemptResult:
    """Move an exhausted lead to unreachable when the rules say so; otherwise just report it."""
    exhausted = cadence_exhausted(lead)
    if exhausted and cadence.RULES["on_exhausted"] == Stage.UNREACHABLE:
        move_stage(lead, Stage.UNREACHABLE, cadence.RULES["exhausted_reason"], actor, now=now)
        moved_to = Stage.UNREACHABLE
    return AttemptResult(moved_to, exhausted)


def schedule_callback(lead: Lead, actor: User, due_at: dt.datetime, assignee_id: str | None = None,
                      now: dt.datetime | None = None, by: str = "coordinator") -> Callback:
    """Schedule the next call (replacing any open one) for the lead's coordinator or ``assignee_id``."""
    now = now or utcnow()
    refuse_if_do_not_contact(lead)
    if not lead.is_open:
        raise ValueError(_("Closed leads get no callbacks; reopen the lead first."))
    if due_at <= now:
        raise Refused(_("Pick a callback time in the future."), "due_at")
    _close_callbacks(lead, now)
    callback = Callback(lead=lead, assignee_id=assignee_id or lead.assignee_id or actor.id, due_at=due_at,
                        created_by=actor.id, created_at=now)
    db.session.add(callback)
    lead.next_callback_at = due_at
    record("callback_scheduled", lead.id, actor, {"callback_id": callback.id, "by": by})
    return callback


def acknowledge_urgent(lead: Lead, actor: User, now: dt.datetime | None = None) -> None:
    """Record who took charge of an urgent lead, and when."""
    if not lead.urgent:
        raise ValueError(_("This lead is not flagged urgent."))
    if lead.acknowledged_at is not None:
        raise ValueError(_("Someone has already acknowledged this lead."))
    lead.acknowledged_by, lead.acknowledged_at = actor.id, now or utcnow()
    add_event(lead, actor, "acknowledged", at=lead.acknowledged_at)
    record("urgent_acknowledged", lead.id, actor)


def add_note(lead: Lead, actor: User, body: str) -> LeadEvent:
    """Add an encrypted note to the timeline."""
    body = body.strip()
    if not body:
        raise ValueError(_("Write the note first."))
    event = add_event(lead, actor, "note", body=body)
    record("note_added", lead.id, actor, {"event_id": event.id})
    return event


# --- stages --------------------------------------------------------------------------


def readiness_problem(lead: Lead) -> str | None:
    """Why the lead cannot be eligible yet: it needs a passing pre-screen and finished benefits."""
    screening = db.session.scalars(select(Screening).where(Screening.lead_id == lead.id)
                                   .order_by(Screening.performed_at.desc()).limit(1)).first()
    outcome = screening.outcome if screening else None
    cleared = screening is not None and screening.sign_off_decision == eligibility.ELIGIBLE
    passed = outcome == eligibility.ELIGIBLE or outcome == eligibility.REVIEW and cleared
    if not passed:
        return "Eligible needs a passing pre-screen (or a clinician's sign-off of one needing review as eligible)."
    finished = db.session.scalar(select(func.count()).select_from(Insurance).where(
        Insurance.lead_id == lead.id,
        (Insurance.vob_status == vob.RULES["finished_status"]) | (Insurance.coverage_type == CoverageType.SELF_PAY)))
    return None if finished else "Eligible needs a verified benefits check or a self-pay decision."


def check_move(lead: Lead, target: str, reason: str | None, expected: str | None = None) -> None:
    """Refuse a move the pipeline does not allow, or an exit or reopen without a valid reason."""
    source = Stage(lead.stage)
    if expected and expected != source:
        raise Stale(_("The lead changed stage meanwhile; check the page and try again."))
    if target not in allowed_moves(source):
        raise Refused(_("The pipeline does not allow that move from this stage."), "target")
    if move_needs_reason(source, Stage(target)):
        valid = REOPEN_REASONS if source in REOPENABLE_STAGES else EXIT_REASONS[Stage(target)]
        if reason not in valid:
            raise Refused(_("Choose a reason that fits this move."), "reason")
    if target == Stage.ELIGIBLE:
        problem = readiness_problem(lead)
        if problem:
            raise ValueError(problem)
    if target == Stage.SCHEDULED and not has_booked_appointment(lead):
        raise ValueError(_("Book the appointment (kind, time, place, clinician) to move the lead to scheduled."))
    if target == Stage.CONVERTED and lead.first_treatment_on is None:
        raise ValueError(_("Converting needs the first treatment's date: record it under Appointments."))


def has_booked_appointment(lead: Lead) -> bool:
    """True while the lead has an appointment booked and not yet attended, missed or cancelled."""
    return bool(db.session.scalar(select(func.count()).select_from(Appointment).where(
        Appointment.lead_id == lead.id, Appointment.status == AppointmentStatus.BOOKED)))


def move_stage(lead: Lead, target: str, reason: str | None, actor: User | None,
               now: dt.datetime | None = None, expected: str | None = None) -> None:
    """Move the lead to ``target`` as the pipeline allows, recording who, when and why."""
    check_move(lead, target, reason, expected)
    source = lead.stage
    reason = reason if move_needs_reason(Stage(source), Stage(target)) else None
    apply_move(lead, target, reason, actor, now or utcnow())


def apply_move(lead: Lead, target: str, reason: str | None, actor: User | None, now: dt.datetime, *,
               kind: str = "stage_changed", public: bool = False) -> None:
    """Put the lead in ``target`` and record it; callers have checked the move (a no-show steps back).

    ``public`` marks a move a patient's own enquiry made (a return reopening the lead): audited
    as the public's, without the address, which is PHI.
    """
    source = lead.stage
    if target in EXIT_STAGES:
        _close_callbacks(lead, now)
    lead.set_stage(target, reason, now)
    add_event(lead, actor, kind, at=now, from_stage=source, to_stage=target, reason=reason)
    audit.record("stage_changed", actor=actor, actor_kind="public" if public else None, object_type="lead",
                 object_id=lead.id, details={"from": str(source), "to": str(target), "reason": reason},
                 record_ip=not public)
