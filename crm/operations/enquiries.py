"""Receive a public enquiry: find or create the lead, store the enquiry, insurance and cards, audit.

A patient who writes again is recognised by the blind index of their phone or e-mail and
the enquiry joins their existing lead; a closed or unreachable lead reopens. Everything is
written in the caller's transaction; the view commits once.

Intake is the busiest write and, on SQLite, every write waits for one lock. So the rows of
a brand-new lead are built and encrypted by :func:`prepare_enquiry` before any query, and
written with one Core insert per table; only the dedupe lookup, those inserts and the
audit append happen while the lock is held. A returning patient's rows are re-encrypted
under their lead's data key once that lead is found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import Table, bindparam, or_, select, text
from sqlalchemy.orm import selectinload

from .. import audit, crypto, statements
from ..models import (
    REOPENABLE_STAGES,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    LeadKey,
    LeadSource,
    Stage,
    db,
    encrypted_columns,
    lead_blind_indexes,
    new_id,
    new_lead_key,
    new_reference,
    utcnow,
)
from . import alerts

#: A batch of rows to insert, by table, in foreign-key order.
Rows = dict[Table, list[dict[str, Any]]]

#: The two lookups made while holding the write lock (a NULL index matches nothing).
_RECEIPT = statements.Lookup(
    lambda: select(Lead.reference, Enquiry.crisis)
    .join(Enquiry, Enquiry.lead_id == Lead.id)
    .where(Enquiry.idempotency_digest == bindparam("digest"))
)
_CANDIDATES = statements.Lookup(
    lambda: select(Lead.id).where(or_(Lead.phone_bidx == bindparam("phone_bidx"),
                                      Lead.email_bidx == bindparam("email_bidx")))
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


@dataclass(frozen=True)
class Receipt:
    """What the thank-you page may show: the lead's reference code and whether help was asked for."""

    reference: str
    urgent: bool


@dataclass(frozen=True)
class PreparedEnquiry:
    """A submission plus the encrypted rows it would add as a brand-new lead (built without the database)."""

    submission: Submission
    lead_id: str
    reference: str
    new_lead_rows: Rows

    @property
    def contact_indexes(self) -> tuple[int | None, int | None]:
        """The blind indexes of the submitted phone and e-mail, computed once for the dedupe lookup."""
        row = self.new_lead_rows[Lead.__table__][0]
        return row["phone_bidx"], row["email_bidx"]


def prepare_enquiry(submission: Submission) -> PreparedEnquiry:
    """Build and encrypt every row of a new lead for this submission; touches no database."""
    now = utcnow()
    lead_id, reference = new_id(), new_reference()
    cipher, key_row = new_lead_key(lead_id)
    rows: Rows = {
        Lead.__table__: [_lead_row(lead_id, reference, submission, now, cipher)],
        LeadKey.__table__: [{**key_row, "wrapped_at": now}],
        LeadEvent.__table__: [_event_row(lead_id, now, "created", to_stage=Stage.NEW)],
    }
    _merge(rows, _submission_rows(lead_id, cipher, submission, now))
    return PreparedEnquiry(submission, lead_id, reference, rows)


def find_receipt(digest: str) -> Receipt | None:
    """The receipt of the enquiry already stored for this form token, if any."""
    row = _RECEIPT.first(digest=digest)
    return Receipt(row[0], bool(row[1])) if row else None


def find_matching_lead(prepared: PreparedEnquiry) -> Lead | None:
    """Return this patient's existing lead: same phone or e-mail and the same date of birth.

    The date of birth keeps relatives who share a phone or an e-mail address from being
    merged into one record. Open leads are preferred, then the newest.
    """
    contact = prepared.submission.contact
    matches = [lead for lead in _contact_candidates(*prepared.contact_indexes) if _same_person(lead, contact)]
    return max(matches, key=lambda lead: (lead.is_open, lead.created_at), default=None)


def _contact_candidates(phone_bidx: int | None, email_bidx: int | None) -> list[Lead]:
    """Leads whose phone or e-mail blind index matches (indexes may collide).

    Ids are looked up first: most patients are new, and then no lead is loaded at all.
    """
    if phone_bidx is None and email_bidx is None:
        return []
    ids = [row[0] for row in _CANDIDATES.rows(phone_bidx=phone_bidx, email_bidx=email_bidx)]
    if not ids:
        return []
    return list(db.session.scalars(select(Lead).options(selectinload(Lead.key)).where(Lead.id.in_(ids))))


def _same_person(lead: Lead, contact: Contact) -> bool:
    """Confirm a candidate by decrypting and comparing; an unreadable one is audited and skipped."""
    try:
        return lead.dob == contact.dob and _same_contact(lead, contact)
    except crypto.CryptoError:
        audit.record("decrypt_failed", actor_kind="public", object_type="lead", object_id=lead.id,
                     outcome="failure", details={"during": "enquiry_dedupe"}, record_ip=False)
        return False


def _same_contact(lead: Lead, contact: Contact) -> bool:
    """Same phone (in any format) or same e-mail (in any case), each decrypted only if compared."""
    if contact.phone and (phone := lead.phone):
        region = current_app.config["PHONE_REGION"]
        if crypto.normalize_phone(phone, region) == crypto.normalize_phone(contact.phone, region):
            return True
    return bool(contact.email and (email := lead.email)
                and crypto.normalize_email(email) == crypto.normalize_email(contact.email))


def receive_enquiry(prepared: PreparedEnquiry) -> Receipt:
    """Store a submission on a new or returning lead, with its audit event; not committed.

    The same form sent twice (double click, back button, two tabs) resolves to the first one's
    receipt: the check runs under the intake lock, so concurrent copies cannot both insert.
    """
    _lock_intake()
    submission = prepared.submission
    stored = find_receipt(submission.idempotency_digest)
    if stored is not None:
        return stored
    lead = find_matching_lead(prepared)
    if lead is None:
        lead_id, reference, rows = prepared.lead_id, prepared.reference, prepared.new_lead_rows
    else:
        lead_id, reference, rows = lead.id, lead.reference, _returning_rows(lead, submission)
    for table, table_rows in rows.items():
        statements.insert_rows(table, table_rows)
    audit.record(
        "enquiry_received",
        actor_kind="public",
        object_type="lead",
        object_id=lead_id,
        details={"returning": lead is not None, "urgent": submission.crisis, "cards": len(submission.cards)},
        record_ip=False,
    )
    if submission.crisis:  # the on-call list hears at once, in this same transaction
        alerts.urgent_enquiry(lead_id, reference, utcnow(), episode=new_id()[:8])
    return Receipt(reference, submission.crisis)


def _lock_intake() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": INTAKE_LOCK_ID})


def _returning_rows(lead: Lead, submission: Submission) -> Rows:
    """Update a returning patient's lead and return the new rows, encrypted under that lead's key."""
    now = utcnow()
    rows: Rows = {LeadEvent.__table__: [_welcome_back(lead, submission.contact, now)]}
    _apply_answers(lead, submission)
    _merge(rows, _submission_rows(lead.id, lead.field_cipher(), submission, now))
    return rows


def _welcome_back(lead: Lead, contact: Contact, now: dt.datetime) -> dict[str, Any]:
    """Reopen a closed lead and fill contact gaps; return the timeline row noting the return."""
    if lead.stage in REOPENABLE_STAGES:
        event = _event_row(lead.id, now, "reopened", from_stage=lead.stage, to_stage=Stage.CONTACTING,
                           reason="patient_returned")
        audit.record("stage_changed", actor_kind="public", object_type="lead", object_id=lead.id,
                     details={"from": str(lead.stage), "to": str(Stage.CONTACTING), "reason": "patient_returned"},
                     record_ip=False)
        lead.set_stage(Stage.CONTACTING, "patient_returned", now)
    else:
        event = _event_row(lead.id, now, "returned", from_stage=lead.stage, to_stage=lead.stage)
    if contact.phone and not lead.phone_enc:
        lead.phone = contact.phone
    if contact.email and not lead.email_enc:
        lead.email = contact.email
    if contact.zip_code and not lead.zip_code_enc:
        lead.zip_code = contact.zip_code
    return event


def _apply_answers(lead: Lead, submission: Submission) -> None:
    """Latest contact preferences win; urgency and marketing consent are only ever raised here."""
    lead.preferences = submission.contact.preferences
    if submission.crisis:
        lead.flag_urgent()
    if submission.consent.marketing:
        lead.marketing_consent = True


def _lead_row(lead_id: str, reference: str, submission: Submission, now: dt.datetime,
              cipher: crypto.FieldCipher) -> dict[str, Any]:
    """The ``leads`` row of a new web-form lead: workflow columns plain, PHI encrypted."""
    contact = submission.contact
    return {
        "id": lead_id, "reference": reference, "stage": Stage.NEW, "source": LeadSource.WEB_FORM,
        "urgent": submission.crisis, "marketing_consent": submission.consent.marketing,
        "created_at": now, "updated_at": now, "stage_changed_at": now,
        **lead_blind_indexes(contact.phone, contact.email, contact.last_name, contact.dob),
        **encrypted_columns(Lead, lead_id, cipher, first_name=contact.first_name, last_name=contact.last_name,
                            dob=contact.dob, phone=contact.phone, email=contact.email, zip_code=contact.zip_code,
                            preferences=contact.preferences),
    }


def _event_row(lead_id: str, now: dt.datetime, kind: str, *, from_stage: str | None = None,
               to_stage: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """One ``lead_events`` timeline row without a note body."""
    return {"id": new_id(), "lead_id": lead_id, "at": now, "actor_id": None, "kind": kind,
            "from_stage": from_stage, "to_stage": to_stage, "reason": reason, "body_enc": None}


def _submission_rows(lead_id: str, cipher: crypto.FieldCipher, submission: Submission, now: dt.datetime) -> Rows:
    """The enquiry, insurance and card rows of one submission, encrypted under ``cipher``."""
    insurance = _insurance_row(lead_id, cipher, submission.coverage, now)
    return {
        Enquiry.__table__: [_enquiry_row(lead_id, cipher, submission, now)],
        Insurance.__table__: [insurance],
        InsuranceCard.__table__: [_card_row(insurance["id"], cipher, card) for card in submission.cards],
    }


def _enquiry_row(lead_id: str, cipher: crypto.FieldCipher, submission: Submission,
                 now: dt.datetime) -> dict[str, Any]:
    contact, consent, enquiry_id = submission.contact, submission.consent, new_id()
    submitted = {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "dob": contact.dob.isoformat(),
        "phone": contact.phone,
        "email": contact.email,
        "zip_code": contact.zip_code,
    }
    return {
        "id": enquiry_id, "lead_id": lead_id, "received_at": now,
        "idempotency_digest": submission.idempotency_digest, "crisis": submission.crisis,
        "consent_version": consent.version, "consented_at": now, "privacy_ack": consent.privacy_ack,
        "marketing_consent": consent.marketing,
        **encrypted_columns(Enquiry, enquiry_id, cipher, answers={**submission.answers, "submitted": submitted},
                            consent_ip=consent.ip),
    }


def _insurance_row(lead_id: str, cipher: crypto.FieldCipher, coverage: Coverage, now: dt.datetime) -> dict[str, Any]:
    insurance_id = new_id()
    return {
        "id": insurance_id, "lead_id": lead_id, "created_at": now, "coverage_type": coverage.coverage_type,
        "patient_is_policyholder": coverage.patient_is_policyholder,
        **encrypted_columns(Insurance, insurance_id, cipher, carrier=coverage.carrier, member_id=coverage.member_id,
                            group_number=coverage.group_number, policyholder=coverage.policyholder),
    }


def _card_row(insurance_id: str, cipher: crypto.FieldCipher, card: Card) -> dict[str, Any]:
    card_id = new_id()
    return {
        "id": card_id, "insurance_id": insurance_id, "side": card.side, "media_type": card.media_type,
        "size": len(card.content), **encrypted_columns(InsuranceCard, card_id, cipher, content=card.content),
    }


def _merge(rows: Rows, more: Rows) -> None:
    """Add ``more`` to ``rows``, dropping empty tables (an insert needs at least one row)."""
    for table, table_rows in more.items():
        if table_rows:
            rows.setdefault(table, []).extend(table_rows)
