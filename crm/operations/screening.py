"""Eligibility pre-screens: record the checklist and scores, escalate crisis risk, clinician sign-off."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import gettext as _

from .. import eligibility
from ..models import EXIT_REASONS, Lead, Role, Screening, Stage, User, db, utcnow
from . import alerts
from .guards import refuse_if_erased
from .leads import add_event, record


def record_screening(lead: Lead, actor: User, answers: dict[str, Any], phq9: list[int],
                     cssrs: dict[str, bool | None], q6_recent: bool | None = None,
                     now: dt.datetime | None = None) -> Screening:
    """Score and store a pre-screen; high C-SSRS risk marks the lead urgent and escalates."""
    if not lead.is_open:
        raise ValueError(_("Reopen the lead before screening."))
    result = eligibility.evaluate(answers, phq9, cssrs, q6_recent)
    screening = Screening(lead=lead, performed_by=actor.id, performed_at=now or utcnow(), outcome=result.outcome,
                          answers={"checklist": answers, "phq9": phq9, "cssrs": cssrs, "q6_recent": q6_recent},
                          result=result.as_dict())
    db.session.add(screening)
    record("screening_recorded", lead.id, actor, {"screening_id": screening.id})
    if eligibility.is_escalation(result.cssrs_risk):
        escalate_crisis(lead, actor, screening)
    if result.outcome == eligibility.REVIEW:
        alerts.sign_off_awaiting(lead.id, lead.reference, screening.id, screening.performed_at)
    return screening


def escalate_crisis(lead: Lead, actor: User, screening: Screening) -> None:
    """Flag the lead urgent (to be acknowledged again) and log the immutable escalation event."""
    lead.flag_urgent()
    add_event(lead, actor, "crisis_escalated", at=screening.performed_at)
    record("crisis_escalated", lead.id, actor, {"screening_id": screening.id})


ELIGIBLE, NOT_ELIGIBLE, MORE_INFORMATION = "eligible", "not_eligible", "needs_more_information"
DECISIONS = (ELIGIBLE, NOT_ELIGIBLE, MORE_INFORMATION)


def sign_off(screening: Screening, actor: User, decision: str, note: str, reason: str | None = None,
             now: dt.datetime | None = None) -> None:
    """Record a clinician's decision on a pre-screen (eligible, not eligible with a reason, needs more information)."""
    if actor.role != Role.CLINICIAN:
        raise PermissionError(_("Only a clinician can sign off a screening."))
    refuse_if_erased(screening.lead)
    if screening.signed_off_at is not None:
        raise ValueError(_("This screening is already signed off."))
    if decision not in DECISIONS:
        raise ValueError(_("Choose a decision."))
    if decision == NOT_ELIGIBLE and reason not in EXIT_REASONS[Stage.INELIGIBLE]:
        raise ValueError(_("Choose why the patient is not eligible."))
    if not (note or "").strip():
        raise ValueError(_("Write a note for the coordinator."))
    screening.signed_off_by, screening.signed_off_at = actor.id, now or utcnow()
    screening.sign_off_decision = decision
    screening.sign_off_reason = reason if decision == NOT_ELIGIBLE else None
    screening.sign_off_note = note.strip()
    record("screening_signed_off", screening.lead_id, actor, {"screening_id": screening.id, "decision": decision,
                                                               "reason": screening.sign_off_reason})
