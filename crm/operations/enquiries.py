"""Receive a public enquiry: find or create the lead, store the enquiry, insurance and cards, audit.

A patient who writes again is recognised by the blind index of their phone or e-mail and
the enquiry joins their existing lead; a closed or unreachable lead reopens. Everything is
added and flushed in the caller's transaction; the view commits once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import or_, select, text

from .. import audit, crypto
from ..models import (
    REOPENABLE_STAGES,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    LeadSource,
    Stage,
    db,
    email_index,
    phone_index,
    utcnow,
)

#: Serialises intake on PostgreSQL so two simultaneous enquiries can't create twin leads
#: (SQLite already serialises writers with BEGIN IMMEDIATE).
INTAKE_LOCK_ID = 727_274_002


@dataclass(frozen=True)
class Contact:
    """Who the enquiry is from and how to reach them."""

    first_name: str
    last_name: str
    dob: dt.date
    phone: str | None = None
    email: str | None = None
    zip_code: str | None = None
    preferences: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Coverage:
    """The insurance the patient described."""

    coverage_type: str
    carrier: str | None = None
    member_id: str | None = None
    group_number: str | None = None
    patient_is_policyholder: bool | None = None
    policyholder: dict[str, Any] | None = None


@dataclass(frozen=True)
class Card:
    """One side of an insurance card, already checked by content."""

    side: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class Consent:
    """What the patient agreed to, and where from."""

    version: str
    ip: str | None
    privacy_ack: bool
    marketing: bool


@dataclass(frozen=True)
class Submission:
    """One complete, validated public-form submission."""

    contact: Contact
    coverage: Coverage
    consent: Consent
    idempotency_digest: str
    crisis: bool = False
    answers: dict[str, Any] = field(default_factory=dict)
    cards: tuple[Card, ...] = ()


def find_by_digest(digest: str) -> Enquiry | None:
    """Return the enquiry already stored for this form token, if any."""
    return db.session.scalar(select(Enquiry).where(Enquiry.idempotency_digest == digest))


def find_matching_lead(contact: Contact) -> Lead | None:
    """Return this patient's existing lead: same phone or e-mail and the same date of birth.

    The date of birth keeps relatives who share a phone or an e-mail address from being
    merged into one record. Open leads are preferred, then the newest.
    """
    matches = [lead for lead in _contact_candidates(contact) if _same_person(lead, contact)]
    return max(matches, key=lambda lead: (lead.is_open, lead.created_at), default=None)


def _contact_candidates(contact: Contact) -> list[Lead]:
    """Leads whose phone or e-mail blind index matches (indexes may collide)."""
    conditions = []
    if phone_bidx := phone_index(contact.phone):
        conditions.append(Lead.phone_bidx == phone_bidx)
    if email_bidx := email_index(contact.email):
        conditions.append(Lead.email_bidx == email_bidx)
    if not conditions:
        return []
    return list(db.session.scalars(select(Lead).where(or_(*conditions))))


def _same_person(lead: Lead, contact: Contact) -> bool:
    """Confirm a candidate by decrypting and comparing; an unreadable one is audited and skipped."""
    try:
        return lead.dob == contact.dob and _same_contact(lead, contact)
    except crypto.CryptoError:
        audit.record("decrypt_failed", actor_kind="public", object_type="lead", object_id=lead.id,
                     outcome="failure", details={"during": "enquiry_dedupe"}, record_ip=False)
        return False


def _same_contact(lead: Lead, contact: Contact) -> bool:
    region = current_app.config["PHONE_REGION"]
    if contact.phone and lead.phone:
        if crypto.normalize_phone(lead.phone, region) == crypto.normalize_phone(contact.phone, region):
            return True
    return bool(
        contact.email and lead.email and crypto.normalize_email(lead.email) == crypto.normalize_email(contact.email)
    )


def receive_enquiry(submission: Submission) -> Enquiry:
    """Store a submission on a new or returning lead, with its audit event; flushed, not committed."""
    _lock_intake()
    contact = submission.contact
    lead = find_matching_lead(contact)
    returning = lead is not None
    if lead is None:
        lead = _new_lead(contact)
    else:
        _welcome_back(lead, contact)
    _apply_answers(lead, submission)
    enquiry = _new_enquiry(lead, submission)
    insurance = _new_insurance(lead, submission.coverage)
    for card in submission.cards:
        InsuranceCard(insurance=insurance, side=card.side, media_type=card.media_type,
                      size=len(card.content), content=card.content)
    db.session.add_all([lead, enquiry, insurance])
    db.session.flush()
    audit.record(
        "enquiry_received",
        actor_kind="public",
        object_type="lead",
        object_id=lead.id,
        details={"returning": returning, "urgent": submission.crisis, "cards": len(submission.cards)},
        record_ip=False,
    )
    return enquiry


def _lock_intake() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": INTAKE_LOCK_ID})


def _new_lead(contact: Contact) -> Lead:
    lead = Lead(
        stage=Stage.NEW,
        source=LeadSource.WEB_FORM,
        first_name=contact.first_name,
        last_name=contact.last_name,
        dob=contact.dob,
        phone=contact.phone,
        email=contact.email,
        zip_code=contact.zip_code,
    )
    db.session.add(LeadEvent(lead=lead, kind="created", to_stage=Stage.NEW))
    return lead


def _welcome_back(lead: Lead, contact: Contact) -> None:
    """Note the return on the timeline, reopen a closed lead and fill contact gaps."""
    if lead.stage in REOPENABLE_STAGES:
        db.session.add(LeadEvent(lead=lead, kind="reopened", from_stage=lead.stage,
                                 to_stage=Stage.CONTACTING, reason="patient_returned"))
        audit.record("stage_changed", actor_kind="public", object_type="lead", object_id=lead.id,
                     details={"from": str(lead.stage), "to": str(Stage.CONTACTING), "reason": "patient_returned"},
                     record_ip=False)
        lead.stage = Stage.CONTACTING
        lead.stage_reason = "patient_returned"
        lead.stage_changed_at = utcnow()
    else:
        db.session.add(LeadEvent(lead=lead, kind="returned", from_stage=lead.stage, to_stage=lead.stage))
    if contact.phone and not lead.phone_enc:
        lead.phone = contact.phone
    if contact.email and not lead.email_enc:
        lead.email = contact.email
    if contact.zip_code and not lead.zip_code_enc:
        lead.zip_code = contact.zip_code


def _apply_answers(lead: Lead, submission: Submission) -> None:
    """Latest contact preferences win; urgency and marketing consent are only ever raised here."""
    lead.preferences = submission.contact.preferences
    if submission.crisis:
        lead.urgent = True
        lead.acknowledged_at = None
        lead.acknowledged_by = None
    if submission.consent.marketing:
        lead.marketing_consent = True


def _new_enquiry(lead: Lead, submission: Submission) -> Enquiry:
    contact = submission.contact
    submitted = {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "dob": contact.dob.isoformat(),
        "phone": contact.phone,
        "email": contact.email,
        "zip_code": contact.zip_code,
    }
    return Enquiry(
        lead=lead,
        idempotency_digest=submission.idempotency_digest,
        crisis=submission.crisis,
        consent_version=submission.consent.version,
        consented_at=utcnow(),
        privacy_ack=submission.consent.privacy_ack,
        marketing_consent=submission.consent.marketing,
        consent_ip=submission.consent.ip,
        answers={**submission.answers, "submitted": submitted},
    )


def _new_insurance(lead: Lead, coverage: Coverage) -> Insurance:
    return Insurance(
        lead=lead,
        coverage_type=coverage.coverage_type,
        patient_is_policyholder=coverage.patient_is_policyholder,
        carrier=coverage.carrier,
        member_id=coverage.member_id,
        group_number=coverage.group_number,
        policyholder=coverage.policyholder,
    )
