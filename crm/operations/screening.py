"""Eligibility pre-screens: record the checklist and scores, escalate crisis risk, drafts, clinician sign-off."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import delete, select

from .. import eligibility
from ..models import EXIT_REASONS, Lead, Role, Screening, ScreeningDraft, Stage, User, db, utcnow
from . import alerts
from .guards import refuse_if_erased
from .leads import add_event, record
from .refusals import Refused, Stale


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
    replaced = discard_drafts(lead)
    record("screening_recorded", lead.id, actor, {"screening_id": screening.id, "draft_replaced": replaced})
    if eligibility.is_escalation(result.cssrs_risk):
        escalate_crisis(lead, actor, screening)
    if result.outcome == eligibility.REVIEW:
        alerts.sign_off_awaiting(lead.id, lead.reference, screening.id, screening.performed_at)
    return screening


def current_draft(lead: Lead) -> ScreeningDraft | None:
    """The lead's pre-screen saved part-way, if any (the newest, should a merge have brought two)."""
    return db.session.scalars(select(ScreeningDraft).where(ScreeningDraft.lead_id == lead.id)
                              .order_by(ScreeningDraft.saved_at.desc()).limit(1)).first()


def save_draft(lead: Lead, actor: User, answers: dict[str, Any], cssrs: dict[str, bool | None],
               q6_recent: bool | None = None, now: dt.datetime | None = None) -> ScreeningDraft:
    """Keep a partly answered pre-screen to finish later; saving again replaces it. A draft is never scored.

    C-SSRS answers that already mean high risk cannot wait in a draft: the screening must be recorded,
    so the escalation starts.
    """
    if not lead.is_open:
        raise ValueError(_("Reopen the lead before screening."))
    if not answers:
        raise Refused(_("Answer at least one question before saving a draft."))
    if eligibility.is_escalation(eligibility.cssrs_risk(cssrs, q6_recent)):
        raise Refused(_("These C-SSRS answers mean high risk: record the screening now so the escalation starts."))
    draft = current_draft(lead)
    if draft is None:
        draft = ScreeningDraft(lead=lead)
        db.session.add(draft)
    draft.answers, draft.saved_by, draft.saved_at = answers, actor.id, now or utcnow()
    record("screening_draft_saved", lead.id, actor, {"draft_id": draft.id, "answered": len(answers)})
    return draft


def discard_drafts(lead: Lead) -> bool:
    """Delete the lead's drafts (a recorded screening replaces them); True when there was one."""
    result = db.session.execute(delete(ScreeningDraft).where(ScreeningDraft.lead_id == lead.id)
                                .execution_options(synchronize_session="fetch"))
    return bool(result.rowcount)


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
        raise Stale(_("This screening is already signed off."))
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
