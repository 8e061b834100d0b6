"""Leads a coordinator records: a call, a referral, VA Community Care, a walk-in; and the match check before.

Such a lead is created by the staff member and audited as them. Consent taken on the phone
is recorded as verbal, with the wording version read, who took it and when; it is never
stored as the patient's own web consent. Before creating, possible matches are looked up
through the blind indexes so the coordinator can add the call to the existing lead instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from .. import crypto
from ..models import (
    ConsentRecord,
    Insurance,
    Lead,
    LeadSource,
    User,
    db,
    email_index,
    name_dob_index,
    phone_index,
    utcnow,
)
from .leads import add_event, log_attempt, record

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


def possible_matches(who: Identity) -> list[Lead]:
    """Leads of the same phone (any format), e-mail (any case) or last name + date of birth, newest first.

    Candidates come from the blind indexes and are confirmed by decrypting; merged and shredded
    leads are left out (the first points at its survivor, the second cannot be read).
    """
    indexes = [(Lead.phone_bidx, phone_index(who.phone)), (Lead.email_bidx, email_index(who.email)),
               (Lead.name_dob_bidx, name_dob_index(who.last_name, who.dob))]
    conditions = [column == digest for column, digest in indexes if digest is not None]
    if not conditions:
        return []
    # No ORDER BY in SQL: sorting there would tempt the planner to walk the created_at index instead
    # of the blind indexes. Candidates are few; they are sorted and filtered here.
    # Merged leads are left out here, not in SQL: a merged_into_id condition could steer the planner off them.
    query = select(Lead).where(or_(*conditions)).options(selectinload(Lead.key)).limit(MATCH_LIMIT * 5)
    found = [lead for lead in db.session.scalars(query)
             if lead.key is not None and not lead.merged_into_id and _confirmed(lead, who)]
    return sorted(found, key=lambda lead: lead.created_at, reverse=True)[:MATCH_LIMIT]


def _confirmed(lead: Lead, who: Identity) -> bool:
    try:
        return _same_phone(lead, who) or _same_email(lead, who) or _same_name_dob(lead, who)
    except crypto.CryptoError:
        return False  # an unreadable lead is not offered as a match; the page audits what it shows


def _same_phone(lead: Lead, who: Identity) -> bool:
    region = current_app.config["PHONE_REGION"]
    wanted = crypto.normalize_phone(who.phone, region) if who.phone else None
    return bool(wanted and lead.phone and crypto.normalize_phone(lead.phone, region) == wanted)


def _same_email(lead: Lead, who: Identity) -> bool:
    return bool(who.email and lead.email and crypto.normalize_email(lead.email) == crypto.normalize_email(who.email))


def _same_name_dob(lead: Lead, who: Identity) -> bool:
    return bool(who.last_name and who.dob and lead.dob == who.dob and lead.last_name
                and crypto.normalize_text(lead.last_name) == crypto.normalize_text(who.last_name))


def create_staff_lead(actor: User, data: StaffLead, now: dt.datetime | None = None) -> Lead:
    """Create the lead as ``actor``, with its insurance, verbal consent and (for a live call) the call itself.

    :raises ValueError: when possible matches were shown and no reason was given to create anyway.
    """
    if data.matches and not data.duplicate_reason:
        raise ValueError(_("This person may already have a lead: open it, or give a reason to create a new one."))
    now = now or utcnow()
    values = data.values
    lead = Lead(source=data.source, created_by=actor.id, created_at=now, updated_at=now, stage_changed_at=now,
                source_details=data.source_details,
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
