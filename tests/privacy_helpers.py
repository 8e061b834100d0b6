"""A lead with one row of every kind, each encrypted field holding its own sentinel, for the privacy tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from crm.models import (
    Callback,
    ContactAttempt,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    Screening,
    db,
    encrypted_names,
    utcnow,
)
from tests import sentinels

PNG_CARD = b"\x89PNG\r\n\x1a\n" + b"CARDIMAGE-Vorpalwyrm-" * 30
DOB = dt.date(1961, 7, 23)


@dataclass
class FullLead:
    """What was stored: the lead id, reference and every plaintext sentinel."""

    id: str
    reference: str
    sentinels: dict[str, str] = field(default_factory=dict)


def store_full_lead(app: Flask, tag: str = "A", phone: str = sentinels.PHONE, email: str = sentinels.EMAIL) -> FullLead:
    """Store a lead with an enquiry, insurance, card, attempt, callback, screening and note, all sentinel-filled."""
    marks = {name: f"{name.upper()}-{tag}-Quixotrel" for name in (
        "answer", "consent_ip", "carrier", "policyholder", "benefits", "pa_auth", "attempt_note",
        "screening_answer", "screening_result", "note", "zip", "preference")}
    marks.update(first_name=f"{sentinels.FIRST_NAME}{tag}", last_name=f"{sentinels.LAST_NAME}{tag}",
                 member_id=f"{sentinels.MEMBER_ID}{tag}", group_number=f"{sentinels.GROUP_NUMBER}{tag}")
    with app.app_context():
        now = utcnow()
        lead = Lead(first_name=marks["first_name"], last_name=marks["last_name"], dob=DOB, phone=phone, email=email,
                    zip_code=marks["zip"], preferences={"best_time": marks["preference"]})
        insurance = Insurance(lead=lead, coverage_type="ppo", carrier=marks["carrier"], member_id=marks["member_id"],
                              group_number=marks["group_number"], policyholder={"name": marks["policyholder"]},
                              benefits={"reference_number": marks["benefits"]}, pa_auth_number=marks["pa_auth"],
                              vob_status="verified", vob_outcome="in_network_no_pa")
        rows = [
            lead, insurance,
            Enquiry(lead=lead, consent_version="2026-01", answers={"message": marks["answer"]},
                    consent_ip=marks["consent_ip"]),
            InsuranceCard(insurance=insurance, side="front", media_type="image/png", size=len(PNG_CARD),
                          content=PNG_CARD + tag.encode()),
            ContactAttempt(lead=lead, channel="call", outcome="no_answer", note=marks["attempt_note"]),
            Callback(lead=lead, due_at=now + dt.timedelta(days=1)),
            Screening(lead=lead, outcome="eligible", answers={"history": marks["screening_answer"]},
                      result={"reasons": [], "summary": marks["screening_result"]}),
            LeadEvent(lead=lead, kind="note", body=marks["note"]),
            LeadEvent(lead=lead, kind="stage_changed", from_stage="new", to_stage="contacting"),
        ]
        db.session.add_all(rows)
        db.session.commit()
        marks.update(phone=phone, email=email)
        return FullLead(lead.id, lead.reference, marks)


def stored_ciphertexts(app: Flask, lead_id: str) -> list[bytes]:
    """Every ciphertext and the wrapped data key stored for one lead, as raw bytes."""
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        blobs = [bytes(lead.key.wrapped)]
        owned = [lead, *lead.enquiries, *lead.insurances, *[c for i in lead.insurances for c in i.cards]]
        for model in (ContactAttempt, Screening, LeadEvent):
            owned += db.session.scalars(select(model).where(model.lead_id == lead_id))
        for row in owned:
            for name in encrypted_names(type(row)):
                value = getattr(row, f"{name}_enc")
                if value is not None:
                    blobs.append(bytes(value))
        db.session.rollback()
        return blobs


def sqlite_files(app: Flask) -> bytes:
    """The SQLite database file and its WAL, after a truncating checkpoint."""
    with app.app_context():
        db.session.remove()
        raw = db.engine.raw_connection()
        try:
            busy = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            raw.close()
        assert busy == 0
        path = Path(db.engine.url.database)
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")) if p.is_file())


def all_stored_values(app: Flask) -> bytes:
    """Every value of every column of every table, as bytes (what PostgreSQL hands back)."""
    from sqlalchemy import text

    with app.app_context():
        chunks = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(text(f'SELECT * FROM "{table.name}"')):
                chunks += [bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row
                           if v is not None]
        db.session.rollback()
        return b"\x00".join(chunks)
