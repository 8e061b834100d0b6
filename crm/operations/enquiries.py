"""Receive a public enquiry: find or create the lead, store the enquiry, insurance and cards, audit.

A patient who writes again is recognised by the blind index of their phone or e-mail and
the enquiry joins their existing lead; a closed or unreachable lead reopens. The web form is
anonymous, so a returning enquiry never writes the lead's contact details, preferences or
current insurance: it keeps its own answers, insurance and cards, gets its own reference code,
and any details that differ become a proposal a coordinator accepts or dismisses after
speaking to the patient. Everything is written in the caller's transaction; the view commits once.

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
from sqlalchemy import Table, bindparam, func, or_, select
from sqlalchemy.orm import selectinload

from .. import audit, crypto, locks, payers, statements
from ..locks import EMAIL_LOCK, FORM_LOCK, PHONE_LOCK
from ..models import (
    OPEN_STAGES,
    REOPENABLE_STAGES,
    CoverageType,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    LeadKey,
    LeadProposal,
    LeadSource,
    Stage,
    db,
    encrypted_columns,
    lead_blind_indexes,
    lead_cipher,
    new_id,
    new_lead_key,
    new_reference,
    table_row,
    utcnow,
)
from . import alerts
from .leads import apply_move

#: A batch of rows to insert, by table, in foreign-key order.
Rows = dict[Table, list[dict[str, Any]]]

#: The two lookups made while holding the write lock (a NULL index matches nothing).
_RECEIPT = statements.Lookup(
    lambda: select(func.coalesce(Enquiry.reference, Lead.reference), Enquiry.crisis).select_from(Lead)
    .join(Enquiry, Enquiry.lead_id == Lead.id)
    .where(Enquiry.idempotency_digest == bindparam("digest"), Enquiry.idempotency_digest.is_not(None))
)
_CANDIDATES = statements.Lookup(
    lambda: select(Lead.id, Lead.stage, Lead.created_at, Lead.dob_enc, Lead.phone_enc, Lead.email_enc,
                   LeadKey.kid, LeadKey.nonce, LeadKey.wrapped, LeadKey.dek_version)
    .select_from(Lead).outerjoin(LeadKey, LeadKey.lead_id == Lead.id)
    .where(or_(Lead.phone_bidx == bindparam("phone_bidx"), Lead.email_bidx == bindparam("email_bidx")))
)

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
    language: str = "en"  # the language of the wording agreed to
    contact: bool = False  # calls and texts with automated technology (the box is optional)


@dataclass(frozen=True)
class Submission:
    """One complete, validated public-form submission."""

    contact: Contact
    coverage: Coverage
    consent: Consent
    idempotency_digest: str
    language: str = "en"  # the page language, the lead's first preferred language
    crisis: bool = False
    answers: dict[str, Any] = field(default_factory=dict)
    cards: tuple[Card, ...] = ()


class Candidate:
    """A lead whose phone or e-mail blind index matches a submission's, read from its row alone.

    Blind indexes are truncated so that several leads share each value: at a million leads a
    submission has some eight such candidates, nearly all of them other people, whom the date of
    birth rejects. Each decrypts only what a comparison reads, under its lead's data key.
    """

    def __init__(self, row: tuple):
        (self.id, self.stage, self.created_at, self._dob, self._phone, self._email, *self._key) = row
        self._cipher: crypto.FieldCipher | None = None

    @property
    def is_open(self) -> bool:
        """True while the lead is still moving through the pipeline."""
        return self.stage in OPEN_STAGES

    @property
    def dob(self) -> dt.date | None:
        return self._read(Lead.dob, self._dob)

    @property
    def phone(self) -> str | None:
        return self._read(Lead.phone, self._phone)

    @property
    def email(self) -> str | None:
        return self._read(Lead.email, self._email)

    def _read(self, field: Any, blob: bytes | None) -> Any:
        if blob is None:
            return None
        if self._cipher is None:
            if self._key[0] is None:
                raise crypto.DecryptionError(f"lead {self.id} has been shredded")
            self._cipher = lead_cipher(self.id, *self._key)
        return field.decrypt_value(self._cipher, Lead.__tablename__, self.id, bytes(blob))


@dataclass(frozen=True)
class Receipt:
    """What the thank-you page may show: the enquiry's own reference code and whether help was asked for."""

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
    _merge(rows, _submission_rows(lead_id, cipher, submission, now, reference))
    return PreparedEnquiry(submission, lead_id, reference, rows)


def find_receipt_and_candidates(prepared: PreparedEnquiry) -> tuple[Receipt | None, list[Candidate]]:
    """Under this form's and this person's locks, the receipt of the enquiry already stored for the
    form token, if any, and the leads sharing its phone or e-mail blind index (indexes collide):
    one round trip on PostgreSQL.

    The form and the person are locked first, so concurrent copies of one form cannot both insert
    and two enquiries from one person take turns (the second finds the lead the first created).
    """
    phone_bidx, email_bidx = prepared.contact_indexes
    *_, receipts, candidates = statements.rows_in_turn(
        *locks.taking_in_order(intake_lock_keys(prepared)),
        (_RECEIPT, {"digest": prepared.submission.idempotency_digest}),
        (_CANDIDATES, {"phone_bidx": phone_bidx, "email_bidx": email_bidx}))
    receipt = Receipt(receipts[0][0], bool(receipts[0][1])) if receipts else None
    return receipt, [Candidate(row) for row in candidates]


def find_matching_lead(prepared: PreparedEnquiry, candidates: list[Candidate]) -> Lead | None:
    """Return this patient's existing lead among the candidates: same phone or e-mail and the same date of birth.

    The date of birth keeps relatives who share a phone or an e-mail address from being
    merged into one record. Open leads are preferred, then the newest. Only the lead found
    is loaded; most patients are new, and then none is.
    """
    contact = prepared.submission.contact
    matches = [candidate for candidate in candidates if _same_person(candidate, contact)]
    found = max(matches, key=lambda candidate: (candidate.is_open, candidate.created_at), default=None)
    return None if found is None else db.session.get(Lead, found.id, options=[selectinload(Lead.key)])


def _same_person(lead: Candidate, contact: Contact) -> bool:
    """Confirm a candidate by decrypting and comparing; an unreadable one is audited and skipped."""
    try:
        return lead.dob == contact.dob and _same_contact(lead, contact)
    except crypto.CryptoError:
        audit.record("decrypt_failed", actor_kind="public", object_type="lead", object_id=lead.id,
                     outcome="failure", details={"during": "enquiry_dedupe"}, record_ip=False)
        return False


def _same_contact(lead: Candidate, contact: Contact) -> bool:
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
    receipt (see :func:`find_receipt_and_candidates`).
    """
    submission = prepared.submission
    stored, candidates = find_receipt_and_candidates(prepared)
    if stored is not None:
        return stored
    lead = find_matching_lead(prepared, candidates)
    if lead is None:
        lead_id, reference, rows = prepared.lead_id, prepared.reference, prepared.new_lead_rows
    else:
        lead_id, reference = lead.id, new_reference()  # never the lead's: it would confirm a lead exists
        rows = _returning_rows(lead, submission, reference)
        db.session.flush()  # a reopened lead's changes, before the rows that follow them
    with statements.pipelined():  # every row and the audit event: two round trips
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


def intake_lock_keys(prepared: PreparedEnquiry) -> list[tuple[int, int]]:
    """The advisory locks an enquiry takes, in the one fixed order every enquiry uses (no deadlock).

    Keyed by the form token's digest and the phone's and e-mail's blind indexes (truncated
    keyed HMACs, never the values): different patients seldom share one, and when their
    indexes collide they merely take turns.
    """
    phone_bidx, email_bidx = prepared.contact_indexes
    form_key = int(prepared.submission.idempotency_digest[:8], 16) - 2**31  # a signed 32-bit key
    keys = [(FORM_LOCK, form_key), (PHONE_LOCK, phone_bidx), (EMAIL_LOCK, email_bidx)]
    return [(kind, key) for kind, key in keys if key is not None]


def _returning_rows(lead: Lead, submission: Submission, reference: str) -> Rows:
    """The rows a returning enquiry adds, encrypted under its lead's key; the lead's details stay as they are."""
    now, cipher = utcnow(), lead.field_cipher()
    rows: Rows = _welcome_back(lead, now)
    if submission.crisis:
        lead.flag_urgent()  # safety first: a crisis answer always raises the flag, whoever sent it
    _merge(rows, _submission_rows(lead.id, cipher, submission, now, reference))
    enquiry, insurance = rows[Enquiry.__table__][0], rows[Insurance.__table__][0]
    proposed = proposal_values(lead, submission, insurance["id"])
    if proposed:
        rows[LeadProposal.__table__] = [_proposal_row(lead.id, cipher, enquiry["id"], proposed, now)]
    return rows


def _welcome_back(lead: Lead, now: dt.datetime) -> Rows:
    """Reopen a closed lead through the one stage-change path, or return the timeline row noting the return."""
    if lead.stage in REOPENABLE_STAGES:
        apply_move(lead, Stage.CONTACTING, "patient_returned", None, now, kind="reopened", public=True)
        return {}
    return {LeadEvent.__table__: [_event_row(lead.id, now, "returned", from_stage=lead.stage, to_stage=lead.stage)]}


#: Lead fields an unverified enquiry may propose, with how two values are compared.
PROPOSABLE = ("first_name", "last_name", "phone", "email", "zip_code", "preferences")


def _comparable(name: str, value: Any) -> Any:
    """A value as compared for a proposal: phones in E.164, e-mails and names case-folded."""
    if not isinstance(value, str) or not value:
        return value or None
    if name == "phone":
        return crypto.normalize_phone(value, current_app.config["PHONE_REGION"])
    if name == "email":
        return crypto.normalize_email(value)
    return crypto.normalize_text(value)


def proposal_values(lead: Lead, submission: Submission, insurance_id: str | None) -> dict[str, Any]:
    """What the enquiry says that the lead does not: each differing field, marketing consent, its insurance."""
    return differing_details(lead, submission.contact, submission.coverage, submission.consent.marketing,
                             insurance_id)


def differing_details(lead: Any, contact: Contact, coverage: Coverage, marketing: bool,
                      insurance_id: str | None) -> dict[str, Any]:
    """What an unverified source says that the lead does not: each differing field, marketing consent, insurance.

    ``lead`` needs only the :data:`PROPOSABLE` attributes and ``marketing_consent``.
    """
    proposed = {}
    for name in PROPOSABLE:
        given = getattr(contact, name)
        if given and _comparable(name, given) != _comparable(name, getattr(lead, name)):
            proposed[name] = given
    if marketing and not lead.marketing_consent:
        proposed["marketing_consent"] = True
    if insurance_id and coverage.coverage_type != CoverageType.NOT_SURE:
        proposed["insurance_id"] = insurance_id
    return proposed


def unverified_details_rows(lead: Any, cipher: crypto.FieldCipher, contact: Contact, coverage: Coverage,
                            now: dt.datetime, origin: str) -> Rows:
    """The rows details from an unverified source other than the web form (an import) add to an existing lead.

    As for a returning enquiry, the lead's own details stay as they are: the insurance given is
    stored beside the lead's, and whatever differs becomes a proposal for a coordinator.
    """
    rows: Rows = {}
    insurance_id = None
    if coverage.coverage_type != CoverageType.NOT_SURE:
        insurance = _insurance_row(lead.id, cipher, coverage, now, None)
        rows[Insurance.__table__], insurance_id = [insurance], insurance["id"]
    proposed = differing_details(lead, contact, coverage, False, insurance_id)
    if proposed:
        rows[LeadProposal.__table__] = [_proposal_row(lead.id, cipher, None, proposed, now, origin)]
    return rows


def _proposal_row(lead_id: str, cipher: crypto.FieldCipher, enquiry_id: str | None, values: dict[str, Any],
                  now: dt.datetime, origin: str = "enquiry") -> dict[str, Any]:
    proposal_id = new_id()
    return {"id": proposal_id, "lead_id": lead_id, "enquiry_id": enquiry_id, "origin": origin, "created_at": now,
            "status": "pending", "decided_by": None, "decided_at": None,
            **encrypted_columns(LeadProposal, proposal_id, cipher, values=values)}


def _lead_row(lead_id: str, reference: str, submission: Submission, now: dt.datetime,
              cipher: crypto.FieldCipher) -> dict[str, Any]:
    """The ``leads`` row of a new web-form lead: workflow columns plain, PHI encrypted."""
    contact = submission.contact
    return table_row(
        Lead, id=lead_id, reference=reference, stage=Stage.NEW, source=LeadSource.WEB_FORM,
        urgent=submission.crisis, marketing_consent=submission.consent.marketing,
        preferred_language=submission.language, created_at=now, updated_at=now, stage_changed_at=now,
        **lead_blind_indexes(contact.phone, contact.email, contact.last_name, contact.dob),
        **encrypted_columns(Lead, lead_id, cipher, first_name=contact.first_name, last_name=contact.last_name,
                            dob=contact.dob, phone=contact.phone, email=contact.email, zip_code=contact.zip_code,
                            preferences=contact.preferences),
    )


def _event_row(lead_id: str, now: dt.datetime, kind: str, **fields: Any) -> dict[str, Any]:
    """One ``lead_events`` timeline row written by the public form (no actor, no note body)."""
    return table_row(LeadEvent, id=new_id(), lead_id=lead_id, at=now, kind=kind, **fields)


def _submission_rows(lead_id: str, cipher: crypto.FieldCipher, submission: Submission, now: dt.datetime,
                     reference: str) -> Rows:
    """The enquiry, insurance and card rows of one submission, encrypted under ``cipher``."""
    enquiry = _enquiry_row(lead_id, cipher, submission, now, reference)
    insurance = _insurance_row(lead_id, cipher, submission.coverage, now, enquiry["id"])
    return {
        Enquiry.__table__: [enquiry],
        Insurance.__table__: [insurance],
        InsuranceCard.__table__: [_card_row(insurance["id"], cipher, card) for card in submission.cards],
    }


def _enquiry_row(lead_id: str, cipher: crypto.FieldCipher, submission: Submission,
                 now: dt.datetime, reference: str) -> dict[str, Any]:
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
        "id": enquiry_id, "lead_id": lead_id, "received_at": now, "reference": reference,
        "idempotency_digest": submission.idempotency_digest, "crisis": submission.crisis,
        "consent_version": consent.version, "consent_language": consent.language,
        "consented_at": now, "privacy_ack": consent.privacy_ack,
        "marketing_consent": consent.marketing, "contact_consent": consent.contact,
        **encrypted_columns(Enquiry, enquiry_id, cipher, answers={**submission.answers, "submitted": submitted},
                            consent_ip=consent.ip),
    }


def _insurance_row(lead_id: str, cipher: crypto.FieldCipher, coverage: Coverage, now: dt.datetime,
                   enquiry_id: str | None) -> dict[str, Any]:
    insurance_id = new_id()
    return {
        "id": insurance_id, "lead_id": lead_id, "enquiry_id": enquiry_id, "created_at": now,
        "coverage_type": coverage.coverage_type,
        "patient_is_policyholder": coverage.patient_is_policyholder, "payer": payers.classify(coverage.carrier),
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
