"""Leads a coordinator records: a call, a referral, VA Community Care, a walk-in; and the match check before.

Such a lead is created by the staff member and audited as them. Consent taken on the phone
is recorded as verbal, with the wording version read, who took it and when; it is never
stored as the patient's own web consent. Before creating, possible matches are looked up
through the blind indexes so the coordinator can add the call to the existing lead instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import bindparam, or_, select

from .. import crypto, statements
from ..models import (
    ConsentRecord,
    Insurance,
    Lead,
    LeadKey,
    LeadSource,
    User,
    db,
    email_index,
    lead_cipher,
    name_dob_index,
    phone_index,
    utcnow,
)
from .leads import add_event, log_attempt, record
from .practices import practice_id

#: Sources where the coordinator is speaking to the patient as the lead is recorded.
LIVE_SOURCES = (LeadSource.PHONE, LeadSource.WALK_IN)
MATCH_LIMIT = 20


@dataclass(frozen=True)
class Identity:
    """What identifies a person for the match check."""

    last_name: str | None
    dob: dt.date | None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class StaffLead:
    """A validated lead from a coordinator."""

    source: str
    values: dict[str, Any]  # lead attributes and ``insurance.*``, as the correction form gives them
    source_details: dict[str, Any] | None = None
    verbal_consent: bool = False
    note: str | None = None
    duplicate_reason: str | None = None
    matches: list[str] = field(default_factory=list)  # ids of the possible matches shown


class _Candidate(NamedTuple):
    """What the match check reads of a candidate before deciding: its indexes, the compared fields and its key.

    Blind indexes coincide by design (more often as leads grow), so strangers are turned away
    from these few columns, each with one decryption, and only the leads that match are loaded whole.
    """

    id: str
    merged_into_id: str | None
    phone_bidx: int | None
    email_bidx: int | None
    name_dob_bidx: int | None
    phone_enc: bytes | None
    email_enc: bytes | None
    dob_enc: bytes | None
    last_name_enc: bytes | None
    kid: int
    nonce: bytes
    wrapped: bytes
    dek_version: int


#: Compiled once: a NULL index matches nothing. No ORDER BY: sorting there would tempt the planner to walk
#: the created_at index instead of the blind indexes; merged leads are left out here, not in SQL, for the
#: same reason. Candidates are few; they are sorted and filtered in Python.
_CANDIDATES = statements.Lookup(
    lambda: select(*(getattr(LeadKey if name in ("kid", "nonce", "wrapped", "dek_version") else Lead, name)
                     for name in _Candidate._fields))
    .join(LeadKey, LeadKey.lead_id == Lead.id)
    .where(or_(Lead.phone_bidx == bindparam("phone"), Lead.email_bidx == bindparam("email"),
               Lead.name_dob_bidx == bindparam("name_dob")))
    .limit(MATCH_LIMIT * 5)
)


def possible_matches(who: Identity) -> list[Lead]:
    """Leads of the same phone (any format), e-mail (any case) or last name + date of birth, newest first.

    Candidates come from the blind indexes and are confirmed by decrypting only the field whose
    index matched; merged and shredded leads are left out (the first points at its survivor, the
    second has no key and cannot be read).
    """
    digests = {"phone": phone_index(who.phone), "email": email_index(who.email),
               "name_dob": name_dob_index(who.last_name, who.dob)}
    if all(digest is None for digest in digests.values()):
        return []
    ciphers = {}
    for row in map(_Candidate._make, _CANDIDATES.rows(**digests)):
        if not row.merged_into_id and (cipher := _confirmed(row, who, digests)):
            ciphers[row.id] = cipher
    found = []
    for lead_id, cipher in ciphers.items():
        lead = db.session.get(Lead, lead_id)
        if lead is None:  # erased since the candidates were read
            continue
        lead._cipher = cipher  # already unwrapped: the page reads the lead without loading its key row
        found.append(lead)
    return sorted(found, key=lambda lead: lead.created_at, reverse=True)[:MATCH_LIMIT]


def _confirmed(row: _Candidate, who: Identity, digests: dict[str, int | None]) -> crypto.FieldCipher | None:
    """The candidate's cipher when a field whose index matched is really the same; else ``None``."""
    try:
        cipher = lead_cipher(row.id, row.kid, row.nonce, row.wrapped, row.dek_version)

        def read(name: str) -> Any:
            blob = getattr(row, f"{name}_enc")
            return None if blob is None else vars(Lead)[name].decrypt_value(cipher, "leads", row.id, bytes(blob))

        same = ((digests["phone"] is not None and row.phone_bidx == digests["phone"] and _same_phone(read, who))
                or (digests["email"] is not None and row.email_bidx == digests["email"] and _same_email(read, who))
                or (digests["name_dob"] is not None and row.name_dob_bidx == digests["name_dob"]
                    and _same_name_dob(read, who)))
    except crypto.CryptoError:
        return None  # an unreadable lead is not offered as a match; the page audits what it shows
    return cipher if same else None


def _same_phone(read: Callable[[str], Any], who: Identity) -> bool:
    region = current_app.config["PHONE_REGION"]
    phone = read("phone")
    return bool(phone and crypto.normalize_phone(phone, region) == crypto.normalize_phone(who.phone, region))


def _same_email(read: Callable[[str], Any], who: Identity) -> bool:
    email = read("email")
    return bool(email and crypto.normalize_email(email) == crypto.normalize_email(who.email))


def _same_name_dob(read: Callable[[str], Any], who: Identity) -> bool:
    if read("dob") != who.dob:
        return False
    last_name = read("last_name")
    return bool(last_name and crypto.normalize_text(last_name) == crypto.normalize_text(who.last_name))


def create_staff_lead(actor: User, data: StaffLead, now: dt.datetime | None = None) -> Lead:
    """Create the lead as ``actor``, with its insurance, verbal consent and (for a live call) the call itself.

    :raises ValueError: when possible matches were shown and no reason was given to create anyway.
    """
    if data.matches and not data.duplicate_reason:
        raise ValueError(_("This person may already have a lead: open it, or give a reason to create a new one."))
    now = now or utcnow()
    values = data.values
    lead = Lead(source=data.source, created_by=actor.id, created_at=now, updated_at=now, stage_changed_at=now,
                source_details=data.source_details, referring_practice_id=practice_id(data.source_details),
                **{name: values.get(name) for name in ("first_name", "last_name", "dob", "phone", "email",
                                                       "zip_code", "preferences")})
    db.session.add(lead)
    insurance = _insurance(lead, values, now)
    lead.current_insurance_id = insurance.id
    add_event(lead, actor, "created", at=now, to_stage=lead.stage)
    if data.duplicate_reason:
        add_event(lead, actor, "created_despite_match", at=now, body=data.duplicate_reason)
    consent = record_verbal_consent(lead, actor, now) if data.verbal_consent else None
    db.session.flush()
    record("lead_created", lead.id, actor, {"source": data.source, "verbal_consent": consent is not None,
                                            "possible_matches": data.matches})
    if data.source in LIVE_SOURCES:
        log_attempt(lead, actor, "call", "reached", data.note, now=now)
    elif data.note:
        add_event(lead, actor, "note", at=now, body=data.note)
    return lead


def _insurance(lead: Lead, values: dict[str, Any], now: dt.datetime) -> Insurance:
    insurance = Insurance(lead=lead, created_at=now, coverage_type=values.get("insurance.coverage_type"),
                          patient_is_policyholder=values.get("insurance.patient_is_policyholder"),
                          **{name: values.get(f"insurance.{name}")
                             for name in ("carrier", "member_id", "group_number", "policyholder")})
    db.session.add(insurance)
    return insurance


def record_verbal_consent(lead: Lead, actor: User, now: dt.datetime) -> ConsentRecord:
    """Consent the patient gave on the phone after hearing the configured wording version."""
    consent = ConsentRecord(lead=lead, method="verbal", wording_version=current_app.config["CONSENT_VERSION"],
                            taken_by=actor.id, taken_at=now)
    db.session.add(consent)
    add_event(lead, actor, "consent_recorded", at=now, reason="verbal")
    return consent


def add_call(lead: Lead, actor: User, note: str | None, verbal_consent: bool, now: dt.datetime | None = None) -> None:
    """Add an inbound call to an existing lead (found by the match check) instead of creating a twin."""
    now = now or utcnow()
    if not lead.is_open:
        raise ValueError(_("Reopen the lead before adding the call to it."))
    if verbal_consent:
        record_verbal_consent(lead, actor, now)
    log_attempt(lead, actor, "call", "reached", note, now=now)
    record("call_added", lead.id, actor, {"verbal_consent": verbal_consent})
