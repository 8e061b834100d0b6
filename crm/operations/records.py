"""Correct a lead's details, keep what each change replaced, and settle an unverified enquiry's proposal.

Every change writes the previous value encrypted into ``lead_changes`` (shown later only
through an audited reveal), a timeline entry naming the field, and one audit event listing
field names, never values. Blind indexes follow the new values through the model's hooks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from .. import crypto
from ..labels import FIELDS
from ..models import PREFERRED_LANGUAGES, Insurance, Lead, LeadChange, LeadProposal, User, db, utcnow
from .guards import refuse_if_erased
from .leads import add_event, record

#: Lead attributes a coordinator may correct.
LEAD_FIELDS = ("first_name", "last_name", "dob", "phone", "email", "zip_code", "preferences", "preferred_language")
#: Attributes of the lead's current insurance a coordinator may correct (stored as ``insurance.<name>``).
INSURANCE_FIELDS = ("coverage_type", "carrier", "member_id", "group_number", "patient_is_policyholder",
                    "policyholder")
#: What a timeline entry calls each field.
FIELD_LABELS = FIELDS


def _jsonable(value: Any) -> Any:
    """A value as stored in a change record (dates as ISO text)."""
    return value.isoformat() if isinstance(value, dt.date) else value


def _same(old: Any, new: Any) -> bool:
    """True when a correction would not change anything (blank equals missing)."""
    if old in (None, "", {}) and new in (None, "", {}):
        return True
    return old == new


def _change(lead: Lead, target: Any, stored_as: str, name: str, value: Any, actor: User, cause: str,
            now: dt.datetime) -> bool:
    """Set one attribute, keeping the old value as an encrypted change row; False when nothing changed."""
    old = getattr(target, name)
    if _same(old, value):
        return False
    db.session.add(LeadChange(lead=lead, at=now, actor_id=actor.id, field=stored_as, cause=cause,
                              old_value={"value": _jsonable(old)}))
    setattr(target, name, value)
    add_event(lead, actor, "field_changed", at=now, reason=stored_as)
    return True


def correct_lead(lead: Lead, actor: User, values: dict[str, Any], cause: str = "correction",
                 now: dt.datetime | None = None) -> list[str]:
    """Apply corrected details to the lead and its current insurance; return the names of the changed fields.

    :raises ValueError: when nothing would change, or the lead was erased, so the view can say so.
    """
    refuse_if_erased(lead)
    unknown = set(values) - set(LEAD_FIELDS) - {f"insurance.{n}" for n in INSURANCE_FIELDS}
    assert not unknown, unknown  # noqa: S101 - a programming error, never user input
    if values.get("preferred_language", PREFERRED_LANGUAGES[0]) not in PREFERRED_LANGUAGES:
        raise ValueError("Choose a language from the list.")
    now = now or utcnow()
    changed = [name for name in LEAD_FIELDS if name in values
               and _change(lead, lead, name, name, values[name], actor, cause, now)]
    changed += _correct_insurance(lead, actor, values, cause, now)
    if not changed:
        raise ValueError(_("Nothing was changed."))
    record("lead_corrected", lead.id, actor, {"fields": changed, "cause": cause})
    return changed


def _correct_insurance(lead: Lead, actor: User, values: dict[str, Any], cause: str, now: dt.datetime) -> list[str]:
    wanted = {name: values[f"insurance.{name}"] for name in INSURANCE_FIELDS if f"insurance.{name}" in values}
    if not wanted:
        return []
    insurance = lead.current_insurance
    if insurance is None:
        insurance = Insurance(lead=lead, created_at=now)
        db.session.add(insurance)
        lead.insurances.append(insurance)
        lead.current_insurance_id = insurance.id
    return [f"insurance.{name}" for name, value in wanted.items()
            if _change(lead, insurance, f"insurance.{name}", name, value, actor, cause, now)]


# --- the previous values, behind an audited reveal -----------------------------------


def lead_changes(lead: Lead) -> list[LeadChange]:
    """Every recorded change of the lead, newest first."""
    return list(db.session.scalars(select(LeadChange).where(LeadChange.lead_id == lead.id)
                                   .order_by(LeadChange.at.desc(), LeadChange.id)))


def reveal_previous_values(lead: Lead, actor: User) -> list[dict[str, Any]]:
    """Decrypt the lead's previous values for one page view, audited with the change ids (never the values)."""
    changes = lead_changes(lead)
    if not changes:
        raise ValueError(_("No detail of this lead has been changed."))
    shown, unreadable = [], []
    for change in changes:
        try:
            value = change.old_value.get("value")
        except crypto.CryptoError:
            value, unreadable = None, [*unreadable, change.id]
        shown.append({"record": change, "value": value, "label": FIELD_LABELS.get(change.field, change.field)})
    record("previous_values_revealed", lead.id, actor, {"changes": [c.id for c in changes]})
    if unreadable:
        record("decrypt_failed", lead.id, actor, {"fields": ["lead_changes.old_value"]}, outcome="failure")
    return shown


# --- proposals from unverified enquiries ---------------------------------------------


def pending_proposals(lead: Lead) -> list[LeadProposal]:
    """Proposals still waiting for a coordinator, oldest first."""
    return list(db.session.scalars(select(LeadProposal).where(LeadProposal.lead_id == lead.id,
                                                              LeadProposal.status == "pending")
                                   .order_by(LeadProposal.created_at)))


def _pending(lead: Lead, proposal_id: str) -> LeadProposal:
    proposal = db.session.get(LeadProposal, proposal_id)
    if proposal is None or proposal.lead_id != lead.id:
        raise LookupError(proposal_id)
    if proposal.status != "pending":
        raise ValueError(_("Someone has already settled these details."))
    return proposal


def accept_proposal(lead: Lead, actor: User, proposal_id: str, now: dt.datetime | None = None) -> list[str]:
    """Make the proposed details the lead's own (after speaking to the patient); audited by field name."""
    now = now or utcnow()
    proposal = _pending(lead, proposal_id)
    values = dict(proposal.values)
    changed = []
    insurance_id = values.pop("insurance_id", None)
    on_file = any(i.id == insurance_id for i in lead.insurances)
    if insurance_id and on_file and insurance_id != (lead.current_insurance or lead).id:
        changed += _choose_insurance(lead, actor, insurance_id, "proposal", now)
    if values.pop("marketing_consent", False) and not lead.marketing_consent:
        changed += [name for name in ("marketing_consent",)
                    if _change(lead, lead, name, name, True, actor, "proposal", now)]
    if values:
        try:
            changed += correct_lead(lead, actor, values, cause="proposal", now=now)
        except ValueError:
            pass  # the lead already holds these values
    _settle(proposal, actor, "accepted", now, changed)
    return changed


def dismiss_proposal(lead: Lead, actor: User, proposal_id: str, now: dt.datetime | None = None) -> None:
    """Leave the lead as it is; the enquiry itself stays on the timeline."""
    _settle(_pending(lead, proposal_id), actor, "dismissed", now or utcnow(), [])


def _settle(proposal: LeadProposal, actor: User, status: str, now: dt.datetime, changed: list[str]) -> None:
    proposal.status, proposal.decided_by, proposal.decided_at = status, actor.id, now
    add_event(proposal.lead, actor, f"proposal_{status}", at=now)
    record(f"proposal_{status}", proposal.lead_id, actor, {"proposal_id": proposal.id, "fields": changed})


def _choose_insurance(lead: Lead, actor: User, insurance_id: str, cause: str, now: dt.datetime) -> list[str]:
    current = lead.current_insurance
    db.session.add(LeadChange(lead=lead, at=now, actor_id=actor.id, field="current_insurance", cause=cause,
                              old_value={"value": current.id if current else None}))
    lead.current_insurance_id = insurance_id
    add_event(lead, actor, "field_changed", at=now, reason="current_insurance")
    return ["current_insurance"]


def choose_insurance(lead: Lead, actor: User, insurance_id: str, now: dt.datetime | None = None) -> None:
    """Make one of the lead's insurances (e.g. from a later enquiry) the current one."""
    if not any(i.id == insurance_id for i in lead.insurances):
        raise LookupError(insurance_id)
    if lead.current_insurance and lead.current_insurance.id == insurance_id:
        raise ValueError(_("That insurance is already the current one."))
    _choose_insurance(lead, actor, insurance_id, "correction", now or utcnow())
    record("lead_corrected", lead.id, actor, {"fields": ["current_insurance"], "cause": "correction"})
