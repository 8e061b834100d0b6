"""Read side of the workspace: decrypt what a page shows into plain values, never crashing.

Templates receive plain values only. A field that fails to decrypt becomes
:data:`UNREADABLE` and is remembered, so the view can audit ``decrypt_failed``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from flask_babel import gettext as _

from .. import cadence, crypto, eligibility, metrics, vob
from ..clinic import age_on, clinic_today
from ..forms.leads import language_name
from ..forms.public import CONTACT_CONSENT, EnquiryForm
from ..i18n import translate
from ..labels import field_name, label, shown
from ..models import (
    Callback,
    ConsentRecord,
    Insurance,
    Lead,
    LeadEvent,
    User,
)
from ..operations.leads import calls_made
from ..operations.records import pending_proposals
from ..operations.screening import current_draft
from . import queries


class _Unreadable:
    """Marker for a value that failed authentication."""

    def __str__(self) -> str:
        return _("unreadable")


UNREADABLE: Any = _Unreadable()


class Reader:
    """Reads encrypted attributes for one page, each once, turning a failed decryption into :data:`UNREADABLE`.

    A lead that shows in two queues of the home page is decrypted, and a failure recorded, once.
    """

    def __init__(self) -> None:
        self.failed: dict[str, list[str]] = {}
        self._read: dict[tuple[str, str, str], Any] = {}

    def get(self, obj: Any, attr: str, lead_id: str) -> Any:
        """The decrypted attribute, or the marker (remembered per lead) when it will not decrypt."""
        key = (obj.__tablename__, obj.id, attr)
        if key not in self._read:
            self._read[key] = self._decrypt(obj, attr, lead_id)
        return self._read[key]

    def _decrypt(self, obj: Any, attr: str, lead_id: str) -> Any:
        try:
            return getattr(obj, attr)
        except crypto.CryptoError:
            self.failed.setdefault(lead_id, []).append(f"{obj.__tablename__}.{attr}")
            return UNREADABLE


def mask_tail(value: Any, keep: int = 4) -> str:
    """Show only the last ``keep`` characters of an identifier."""
    if value is None or value is UNREADABLE:
        return str(value or "")
    text = str(value)
    return "•" * max(len(text) - keep, 4) + (text[-keep:] if len(text) > keep else "")


def mask_phone(value: Any) -> str:
    """Show a phone number as ``•••-•••-0142``: enough to confirm, not to dial."""
    if value is None or value is UNREADABLE:
        return str(value or "")
    digits = re.sub(r"\D", "", str(value))
    return f"•••-•••-{digits[-4:]}" if len(digits) >= 4 else "•••"


def short_name(first: Any, last: Any) -> str:
    """First name and last initial, or ``unreadable``."""
    if first is UNREADABLE or last is UNREADABLE:
        return str(UNREADABLE)
    first, last = first or "", last or ""
    return f"{first} {last[:1]}.".strip() if last else first


# --- lists ---------------------------------------------------------------------------


@dataclass
class LeadRow:
    """What a list needs to pick a lead: no full identifiers."""

    id: str
    reference: str
    name: str
    phone: str
    stage: str
    urgent: bool
    acknowledged: bool
    source: str
    assignee: str
    created_at: dt.datetime
    next_callback_at: dt.datetime | None
    waiting: dt.timedelta
    speed_to_lead: dt.timedelta | None
    due_at: dt.datetime | None = None
    overdue: bool = False
    language: str | None = None
    last_activity: dt.datetime | None = None


def lead_row(lead: Lead, reader: Reader, users: dict[str, User], now: dt.datetime,
             due_at: dt.datetime | None = None) -> LeadRow:
    """Decrypt one lead's name and phone into a list row."""
    first = reader.get(lead, "first_name", lead.id)
    last = reader.get(lead, "last_name", lead.id)
    assignee = users.get(lead.assignee_id) if lead.assignee_id else None
    return LeadRow(
        id=lead.id, reference=lead.reference, name=short_name(first, last),
        phone=mask_phone(reader.get(lead, "phone", lead.id)), stage=lead.stage, urgent=lead.urgent,
        acknowledged=lead.acknowledged_at is not None, source=lead.source,
        assignee=staff_name(assignee), created_at=lead.created_at, next_callback_at=lead.next_callback_at,
        waiting=now - lead.created_at,
        speed_to_lead=metrics.lead_speed_to_lead(lead),
        due_at=due_at, overdue=due_at is not None and due_at < now, language=lead.preferred_language,
        last_activity=lead.updated_at,
    )


def staff_name(user: User | None) -> str:
    """How a staff member is named on screen."""
    return user.shown_name if user else ""


# --- detail --------------------------------------------------------------------------


@dataclass
class TimelineEntry:
    """One line of a lead's history."""

    at: dt.datetime
    kind: str
    actor: str = ""
    summary: str = ""
    body: Any = None
    details: dict[str, Any] = field(default_factory=dict)


def contact_block(lead: Lead, reader: Reader) -> dict[str, Any]:
    """The lead's identity and contact details, decrypted."""
    values = {name: reader.get(lead, name, lead.id)
              for name in ("first_name", "last_name", "dob", "phone", "email", "zip_code", "preferences")}
    phone = values["phone"]
    region = current_app.config["PHONE_REGION"]
    values["tel"] = crypto.normalize_phone(phone, region) if isinstance(phone, str) else None
    dob = values["dob"]
    values["age"] = age_on(dob, clinic_today()) if isinstance(dob, dt.date) else None  # None when unreadable
    return values


def latest_consent(lead: Lead, users: dict[str, User] | None = None) -> dict[str, Any] | None:
    """The latest contact consent: what was agreed, the wording's version and language, when and how.

    A web consent comes with the enquiry that carried it; a verbal one is a :class:`ConsentRecord`
    a coordinator took on the phone, read in English from the staff page.
    """
    given = [_web_consent(enquiry) for enquiry in lead.enquiries]
    given += [_recorded_consent(row, users or {}) for row in queries.consent_records(lead)]
    return max(given, key=lambda consent: consent["at"]) if given else None


def _web_consent(enquiry: Any) -> dict[str, Any]:
    return {"how": label("web", "contact_ways"), "language": enquiry.consent_language,
            "version": enquiry.consent_version, "at": enquiry.consented_at, "marketing": enquiry.marketing_consent,
            "automated": enquiry.contact_consent, "wording": _consent_wording(enquiry.consent_version), "by": ""}


def _recorded_consent(row: ConsentRecord, users: dict[str, User]) -> dict[str, Any]:
    """Consent staff took (on the phone, in writing, from an import) only ever agrees."""
    wording = CONTACT_CONSENT.get(row.wording_version)
    return {"how": label(row.method, "contact_ways"), "language": wording.language if wording else None,
            "version": row.wording_version, "at": row.taken_at, "marketing": False, "automated": True,
            "wording": _consent_wording(row.wording_version), "by": staff_name(users.get(row.taken_by))}


def _consent_wording(version: str) -> str:
    """The exact sentence of a consent version, as the patient read or heard it."""
    wording = CONTACT_CONSENT.get(version)
    return wording.text.format(clinic=current_app.config["CLINIC_NAME"]) if wording else ""


def source_details(lead: Lead, reader: Reader) -> dict[str, Any]:
    """The referring provider or VA authorisation a phone or referral lead came with, decrypted."""
    details = reader.get(lead, "source_details", lead.id) if lead.source_details_enc else {}
    return details if isinstance(details, dict) else {"unreadable": UNREADABLE}


def insurance_block(lead: Lead, reader: Reader, revealed: bool) -> dict[str, Any] | None:
    """The current insurance with member ID and group number masked unless revealed, and every other one on file."""
    ins = lead.current_insurance
    if ins is None:
        return None
    block = _one_insurance(lead, ins, reader, revealed)
    block["others"] = [_one_insurance(lead, other, reader, revealed) for other in lead.insurances if other is not ins]
    block["card_count"] = sum(len(i.cards) for i in lead.insurances)
    return block


def _one_insurance(lead: Lead, ins: Insurance, reader: Reader, revealed: bool) -> dict[str, Any]:
    member_id = reader.get(ins, "member_id", lead.id)
    group = reader.get(ins, "group_number", lead.id)
    return {
        "record": ins,
        "carrier": reader.get(ins, "carrier", lead.id),
        "member_id": member_id if revealed else mask_tail(member_id),
        "group_number": group if revealed else mask_tail(group),
        "auth_number": reader.get(ins, "pa_auth_number", lead.id),
        "policyholder": reader.get(ins, "policyholder", lead.id) or {},
        "benefits": reader.get(ins, "benefits", lead.id) or {},
        "cards": list(ins.cards) if revealed else [],
        "card_count": len(ins.cards),
        "status": translate(vob.label("statuses", ins.vob_status)),
        "outcome": translate(vob.label("outcomes", ins.vob_outcome)),
        "pa_status": translate(vob.label("pa_statuses", ins.pa_status)),
    }


#: The public form's policyholder answers → the benefits check's subscriber fields.
_SUBSCRIBER = {"name": "subscriber_name", "dob": "subscriber_dob", "relationship": "subscriber_relationship"}
_RELATIONSHIP = {"spouse": "spouse"}  # the patient's parent is "other" from the subscriber's side


def subscriber_prefill(ins: Insurance, policyholder: dict[str, Any]) -> dict[str, Any]:
    """What the patient typed about the policyholder, in the shape of the benefits check's subscriber fields."""
    if ins.patient_is_policyholder:
        return {"subscriber_relationship": "self"}
    out = {_SUBSCRIBER[key]: value for key, value in policyholder.items() if key in _SUBSCRIBER and value}
    if "subscriber_relationship" in out:
        out["subscriber_relationship"] = _RELATIONSHIP.get(out["subscriber_relationship"], "other")
    return out


def vob_prefill(block: dict[str, Any] | None) -> dict[str, Any]:
    """Stored verification answers in the shape of the VOB form."""
    if not block:
        return {}
    ins: Insurance = block["record"]
    stored = {name: getattr(ins, name) for name in
              ("coverage_type", "vob_status", "vob_outcome", "pa_status", "pa_units", "pa_start", "pa_end")}
    for name, key in (("carrier", "carrier"), ("pa_auth_number", "auth_number")):
        stored[name] = block[key] if block[key] is not UNREADABLE else None
    if isinstance(block["policyholder"], dict):
        stored.update(subscriber_prefill(ins, block["policyholder"]))
        stored.update(block["policyholder"])
    if isinstance(block["benefits"], dict):
        stored.update(block["benefits"])
    return stored


def screenings(lead: Lead, reader: Reader, users: dict[str, User]) -> list[dict[str, Any]]:
    """The lead's pre-screens, newest first, with their results and reason wording."""
    rows = queries.lead_screenings(lead)
    out = []
    for row in rows:
        result = reader.get(row, "result", lead.id)
        result = result if isinstance(result, dict) else {}
        out.append({"record": row, "result": result, "by": staff_name(users.get(row.performed_by)),
                    "signed_by": staff_name(users.get(row.signed_off_by)),
                    "sign_off_note": reader.get(row, "sign_off_note", lead.id) if row.signed_off_at else None,
                    "reasons": [translate(eligibility.reason_text(code)) for code in result.get("reasons", [])],
                    "steps": [translate(step) for step in
                              eligibility.RULES["cssrs"]["steps"].get(result.get("cssrs_risk"), [])]})
    return out


def screening_draft(lead: Lead, reader: Reader, users: dict[str, User]) -> dict[str, Any] | None:
    """The lead's pre-screen saved part-way, decrypted (answers ``{}`` when unreadable), or None."""
    draft = current_draft(lead)
    if draft is None:
        return None
    answers = reader.get(draft, "answers", lead.id)
    return {"record": draft, "by": staff_name(users.get(draft.saved_by)), "unreadable": answers is UNREADABLE,
            "answers": answers if isinstance(answers, dict) else {}}


def cadence_status(lead: Lead, now: dt.datetime, zone: Any) -> dict[str, Any]:
    """Where the lead is in the contact cadence and when the next call is due."""
    made = calls_made(lead)
    contacting = lead.stage in ("new", "contacting")
    return {
        "calls_made": made,
        "steps": len(cadence.RULES["steps"]),
        "next_label": translate(cadence.next_step_label(made)) if contacting else None,
        "suggested": cadence.suggest_next(lead.created_at, made, now, zone),
        "exhausted": contacting and cadence.is_exhausted(made),
        "exhausted_text": translate(cadence.RULES["exhausted_text"]),
        "exhausted_reason": cadence.RULES["exhausted_reason"],
    }


def open_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """Callbacks not yet done, soonest first."""
    return [callback for callback in callbacks if callback.done_at is None]


# --- timeline ------------------------------------------------------------------------


def timeline(lead: Lead, reader: Reader, users: dict[str, User], screens: list[dict[str, Any]],
             callbacks: list[Callback]) -> list[TimelineEntry]:
    """Enquiries, attempts, callbacks, stage changes, notes, assignments and screens, newest first."""
    entries = _enquiries(lead, reader) + _attempts(lead, reader, users) + _events(lead, reader, users)
    entries += _callbacks(callbacks, users)
    entries += [TimelineEntry(s["record"].performed_at, "screening", s["by"],
                              _("Pre-screen: %(outcome)s", outcome=label(s["record"].outcome, "screening")))
                for s in screens]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)


def _enquiries(lead: Lead, reader: Reader) -> list[TimelineEntry]:
    out = []
    for enquiry in lead.enquiries:
        answers = reader.get(enquiry, "answers", lead.id)
        if enquiry.reference:
            summary = _("Enquiry received (%(reference)s)", reference=enquiry.reference)
        else:
            summary = _("Enquiry received")
        summary += " " + _("(crisis answer)") if enquiry.crisis else ""
        details = enquiry_answers(answers) if isinstance(answers, dict) else {_("Answers"): str(answers)}
        out.append(TimelineEntry(enquiry.received_at, "enquiry", "", summary, details=details))
    return out


#: Stored answers that are the enquiry's own bookkeeping, not something the patient was asked.
_NOT_ASKED = ("submitted", "consent_user_agent")


def enquiry_answers(answers: dict[str, Any]) -> dict[str, str]:
    """The patient's answers as they saw them: each question of the public form, then the choice they picked."""
    out = {}
    for name, value in answers.items():
        if name in _NOT_ASKED or value in (None, "", []):
            continue
        question = getattr(EnquiryForm, name, None)
        if question is None:
            out[label(name)] = shown(value)
            continue
        words = {choice.value: str(choice.label) for choice in question.kwargs.get("choices") or ()}
        picked = value if isinstance(value, list) else [value]
        out[str(question.args[0])] = ", ".join(words.get(str(item), shown(item)) for item in picked)
    return out


def _attempts(lead: Lead, reader: Reader, users: dict[str, User]) -> list[TimelineEntry]:
    rows = queries.lead_attempts(lead)
    return [TimelineEntry(row.at, "attempt", staff_name(users.get(row.user_id)),
                          _("%(channel)s: %(outcome)s", channel=label(row.channel, "channels"),
                            outcome=label(row.outcome, "attempt_outcomes")),
                          reader.get(row, "note", lead.id)) for row in rows]


def _stage_summary(event: LeadEvent) -> str:
    moved = _("Stage %(from)s → %(to)s", **{"from": label(event.from_stage, "stages") or "—",
                                             "to": label(event.to_stage, "stages")})
    return moved + (f" ({label(event.reason, 'stage_reasons')})" if event.reason else "")


_EVENT_SUMMARY = {
    "stage_changed": _stage_summary,
    "assigned": lambda e: {"claimed": _("Claimed"), "handover": _("Handed over"),
                           "unassigned": _("Handed back to the unassigned pool")}.get(e.reason, _("Assigned")),
    "appointment": lambda e: _("Appointment %(what)s", what=label(e.reason, "appointment_statuses").lower()),
    "vob_recorded": lambda e: _("Benefits check: %(status)s", status=translate(vob.label("statuses", e.reason))),
    "language_changed": lambda e: _("Preferred language: %(language)s", language=language_name(e.reason)),
    "consent_recorded": lambda e: _("Contact consent recorded (%(how)s)",
                                    how=label(e.reason, "contact_ways").lower()),
    "do_not_contact": lambda e: _("Marked do not contact (%(how)s)", how=label(e.reason, "contact_ways").lower()),
}


def event_summary(event: LeadEvent) -> str:
    """The timeline's words for one event of the lead."""
    summary = _EVENT_SUMMARY.get(event.kind)
    return summary(event) if summary else label(event.kind, "events")


def _events(lead: Lead, reader: Reader, users: dict[str, User]) -> list[TimelineEntry]:
    rows = queries.lead_events(lead)
    out = []
    for row in rows:
        actor = staff_name(users.get(row.actor_id))
        if row.kind == "field_changed":  # "Phone changed by Dana", never the value
            summary = _("%(field)s changed by %(name)s", field=field_name(row.reason or "").capitalize(), name=actor)
            shown_actor = ""
        else:
            summary, shown_actor = event_summary(row), actor
        out.append(TimelineEntry(row.at, row.kind, shown_actor, summary, reader.get(row, "body", lead.id)))
    return out


def proposals(lead: Lead, reader: Reader) -> list[dict[str, Any]]:
    """Pending details from unverified enquiries, decrypted, with the fields' names in words."""
    out = []
    for proposal in pending_proposals(lead):
        values = reader.get(proposal, "values", lead.id)
        values = values if isinstance(values, dict) else {}
        insurance_id = values.get("insurance_id")
        fields = {field_name(k).capitalize(): _shown_value(v) for k, v in values.items() if k != "insurance_id"}
        if insurance_id:
            fields[_("Insurance")] = _("the insurance this enquiry gave (listed under Insurance)")
        out.append({"record": proposal, "shown": fields})
    return out


def _shown_value(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{label(k)}: {shown(v)}" for k, v in value.items() if v not in (None, ""))
    return shown(value)


def _callbacks(rows: list[Callback], users: dict[str, User]) -> list[TimelineEntry]:
    return [TimelineEntry(row.created_at, "callback", staff_name(users.get(row.created_by)),
                          _("Callback scheduled"), details={"due": row.due_at,
                                                         "caller": staff_name(users.get(row.assignee_id))})
            for row in rows]
