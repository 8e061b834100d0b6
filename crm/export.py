"""A patient's copy of their data (right of access): one self-contained HTML page.

Everything the CRM holds about one lead, decrypted: contact details, every enquiry's
answers and consents, insurance with card images (embedded as ``data:`` URIs, so the file
is complete on its own), contact attempts, callbacks, screenings, benefits checks, notes,
the timeline and who accessed the record and when (from the audit log). The same
document serves the admin download and ``flask privacy export``; producing it is audited
by :func:`crm.operations.privacy.record_export`.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, render_template
from sqlalchemy import select

from . import crypto
from .models import (
    AuditEvent,
    Callback,
    ContactAttempt,
    Lead,
    LeadEvent,
    Screening,
    ScreeningDraft,
    User,
    db,
    utcnow,
)

UNREADABLE = "(unreadable: this value failed its integrity check)"
CONTACT_FIELDS = ("first_name", "last_name", "dob", "phone", "email", "zip_code")


@dataclass
class Reading:
    """Decrypts values for one export, noting the fields that fail authentication."""

    failed: list[str] = field(default_factory=list)

    def get(self, obj: Any, attr: str) -> Any:
        """The decrypted attribute, or a plain marker when it will not decrypt."""
        try:
            return getattr(obj, attr)
        except crypto.CryptoError:
            self.failed.append(f"{obj.__tablename__}.{attr}")
            return UNREADABLE


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested answers as readable (label, value) pairs: ``policyholder › name``."""
    if isinstance(value, dict):
        pairs: list[tuple[str, str]] = []
        for key in sorted(value):
            pairs += flatten(value[key], f"{prefix} › {_words(key)}" if prefix else _words(key))
        return pairs
    if isinstance(value, list):
        return [(prefix, ", ".join(str(item) for item in value))] if value else []
    if value is None or value == "":
        return []
    if isinstance(value, bool):
        return [(prefix, "yes" if value else "no")]
    return [(prefix, str(value))]


def _words(code: str) -> str:
    return str(code).replace("_", " ")


def _staff(users: dict[str, User], user_id: str | None) -> str:
    if user_id is None:
        return "the system"
    user = users.get(user_id)
    return user.shown_name if user else "a former staff account"


def build(lead: Lead) -> tuple[dict[str, Any], Reading]:
    """Everything about ``lead``, decrypted into plain values for the template."""
    reading, users = Reading(), {u.id: u for u in db.session.scalars(select(User))}
    document = {
        "lead": lead,
        "contact": [(name, reading.get(lead, name)) for name in CONTACT_FIELDS],
        "preferences": flatten(reading.get(lead, "preferences") or {}),
        "enquiries": [_enquiry(enquiry, reading) for enquiry in lead.enquiries],
        "insurances": [_insurance(insurance, reading, users) for insurance in lead.insurances],
        "attempts": [_attempt(row, reading, users) for row in _rows(ContactAttempt, ContactAttempt.at, lead)],
        "callbacks": [_callback(row, users) for row in _rows(Callback, Callback.due_at, lead)],
        "screenings": [_screening(row, reading, users) for row in _rows(Screening, Screening.performed_at, lead)]
        + [_draft(row, reading, users) for row in _rows(ScreeningDraft, ScreeningDraft.saved_at, lead)],
        "timeline": [_event(row, reading, users) for row in _rows(LeadEvent, LeadEvent.at, lead)],
        "access_log": _access_log(lead, users),
        "produced_at": utcnow(),
        "clinic": current_app.config["CLINIC_NAME"],
    }
    return document, reading


def render(lead: Lead) -> tuple[str, dict[str, Any], Reading]:
    """The export page, its audit details (counts and codes) and the fields that failed to decrypt."""
    document, reading = build(lead)
    html = render_template("privacy/export.html", **document)
    cards = sum(len(item["cards"]) for item in document["insurances"])
    details = {"format": "html", "enquiries": len(document["enquiries"]), "cards": cards,
               "attempts": len(document["attempts"]), "events": len(document["timeline"])}
    return html, details, reading


def _rows(model: type, order: Any, lead: Lead) -> list[Any]:
    return list(db.session.scalars(select(model).where(model.lead_id == lead.id).order_by(order)))


def _enquiry(enquiry: Any, reading: Reading) -> dict[str, Any]:
    return {
        "received_at": enquiry.received_at,
        "answers": flatten(reading.get(enquiry, "answers") or {}),
        "consent": [("consent wording version", enquiry.consent_version),
                    ("answered at", f"{enquiry.consented_at:%Y-%m-%d %H:%M} UTC"),
                    ("read the privacy notice", "yes" if enquiry.privacy_ack else "no"),
                    ("calls and texts with automated technology",
                     "agreed" if enquiry.contact_consent else "not agreed"),
                    ("marketing messages", "yes" if enquiry.marketing_consent else "no"),
                    ("sent from address", reading.get(enquiry, "consent_ip") or "not recorded")],
        "crisis": enquiry.crisis,
    }


def _insurance(insurance: Any, reading: Reading, users: dict[str, User]) -> dict[str, Any]:
    plain = [("coverage", _words(insurance.coverage_type)),
             ("patient is the policyholder", {True: "yes", False: "no", None: "not said"}[
                 insurance.patient_is_policyholder]),
             ("benefits check", _words(insurance.vob_status)),
             ("benefits outcome", _words(insurance.vob_outcome or "")),
             ("prior authorisation", _words(insurance.pa_status or "")),
             ("authorised units", insurance.pa_units), ("authorised from", insurance.pa_start),
             ("authorised until", insurance.pa_end)]
    if insurance.verified_at:
        plain.append(("verified", f"{insurance.verified_at:%Y-%m-%d} by {_staff(users, insurance.verified_by)}"))
    secret = [(_words(name), reading.get(insurance, name))
              for name in ("carrier", "member_id", "group_number", "pa_auth_number")]
    return {
        "fields": [(label, value) for label, value in plain + secret if value not in (None, "")],
        "policyholder": flatten(reading.get(insurance, "policyholder") or {}),
        "benefits": flatten(reading.get(insurance, "benefits") or {}),
        "cards": [_card(card, reading) for card in insurance.cards],
    }


def _card(card: Any, reading: Reading) -> dict[str, Any]:
    content = reading.get(card, "content")
    readable = isinstance(content, bytes)
    uri = f"data:{card.media_type};base64,{base64.b64encode(content).decode()}" if readable else None
    return {"side": card.side, "media_type": card.media_type, "size": card.size, "uri": uri,
            "image": readable and card.media_type.startswith("image/")}


def _attempt(row: ContactAttempt, reading: Reading, users: dict[str, User]) -> dict[str, Any]:
    return {"at": row.at, "channel": _words(row.channel), "outcome": _words(row.outcome),
            "by": _staff(users, row.user_id), "note": reading.get(row, "note")}


def _callback(row: Callback, users: dict[str, User]) -> dict[str, Any]:
    return {"due_at": row.due_at, "for": _staff(users, row.assignee_id), "created_at": row.created_at,
            "done_at": row.done_at}


def _screening(row: Screening, reading: Reading, users: dict[str, User]) -> dict[str, Any]:
    return {"at": row.performed_at, "by": _staff(users, row.performed_by), "outcome": _words(row.outcome),
            "answers": flatten(reading.get(row, "answers") or {}), "result": flatten(reading.get(row, "result") or {})}


def _draft(row: ScreeningDraft, reading: Reading, users: dict[str, User]) -> dict[str, Any]:
    return {"at": row.saved_at, "by": _staff(users, row.saved_by), "outcome": "draft, not recorded",
            "answers": flatten(reading.get(row, "answers") or {}), "result": []}


def _event(row: LeadEvent, reading: Reading, users: dict[str, User]) -> dict[str, Any]:
    change = f"{_words(row.from_stage or '')} → {_words(row.to_stage or '')}" if row.to_stage else ""
    return {"at": row.at, "kind": _words(row.kind), "change": change, "reason": _words(row.reason or ""),
            "by": _staff(users, row.actor_id), "body": reading.get(row, "body")}


def _access_log(lead: Lead, users: dict[str, User]) -> list[dict[str, Any]]:
    """Every audited event on this lead: who looked at or changed it, and when."""
    rows = db.session.execute(select(AuditEvent.at, AuditEvent.action, AuditEvent.actor_kind, AuditEvent.actor_id,
                                     AuditEvent.outcome)
                              .where(AuditEvent.object_type == "lead", AuditEvent.object_id == lead.id)
                              .order_by(AuditEvent.seq))
    return [{"at": at, "what": _words(action), "who": _who(kind, actor_id, users), "outcome": outcome}
            for at, action, kind, actor_id, outcome in rows]


def _who(kind: str, actor_id: str | None, users: dict[str, User]) -> str:
    if kind == "public":
        return "you (the enquiry form)"
    return _staff(users, actor_id)


def filename(lead: Lead, now: dt.datetime | None = None) -> str:
    """The download's file name: the reference code and date, never a name."""
    return f"patient-copy-{lead.reference}-{(now or utcnow()):%Y%m%d}.html"
