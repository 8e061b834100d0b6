"""PHI at rest: raw stored bytes, ciphertext binding, tampering, retired keys, blind indexes."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from crm import crypto
from crm.models import (
    Appointment,
    ContactAttempt,
    Encrypted,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadChange,
    LeadEvent,
    LeadProposal,
    Screening,
    ScreeningDraft,
    User,
    db,
    email_index,
    encrypted_names,
    name_dob_index,
    phone_index,
)
from tests import sentinels

#: Plain columns each PHI-bearing model needs; a model that gains encrypted fields belongs here.
REQUIRED: dict[type, dict[str, Any]] = {
    Lead: {},
    Enquiry: {"consent_version": "2026-01"},
    Insurance: {},
    InsuranceCard: {"side": "front", "media_type": "image/png", "size": 64},
    Screening: {"outcome": "eligible"},
    ScreeningDraft: {},
    ContactAttempt: {"channel": "call", "outcome": "reached"},
    LeadEvent: {"kind": "note"},
    LeadProposal: {"status": "pending"},
    LeadChange: {"field": "phone", "cause": "correction"},
    Appointment: {"kind": "consultation", "starts_at": dt.datetime(2026, 6, 3, 21, 30), "place": "clinic",
                  "clinician": lambda: User(email="clinician@clinic.test", role="clinician")},
}
KNOWN = {
    ("leads", "first_name"): sentinels.FIRST_NAME,
    ("leads", "last_name"): sentinels.LAST_NAME,
    ("leads", "phone"): sentinels.PHONE,
    ("leads", "email"): sentinels.EMAIL,
    ("leads", "zip_code"): sentinels.ZIP_CODE,
    ("insurances", "member_id"): sentinels.MEMBER_ID,
    ("insurances", "group_number"): sentinels.GROUP_NUMBER,
    ("contact_attempts", "note"): sentinels.NOTE,
}
SENTINEL_DOB = dt.date(1961, 7, 23)


def phi_models() -> list[type]:
    """Every mapped model with at least one encrypted attribute, found by walking the registry."""
    return [m.class_ for m in db.Model.registry.mappers if encrypted_names(m.class_)]


def sample(model: type, name: str) -> tuple[Any, str]:
    """A distinctive value for one encrypted column, and the text that must never be stored."""
    table = model.__tablename__
    kind = vars(model)[name].kind
    marker = KNOWN.get((table, name), f"PHI-{table}-{name}-Xylophonic")
    if kind == "date":
        return SENTINEL_DOB, SENTINEL_DOB.isoformat()
    if kind == "json":
        return {"secret": marker, "message": sentinels.MESSAGE}, marker
    if kind == "bytes":
        return b"\x89PNG-" + marker.encode(), marker
    return marker, marker


def build_rows(lead: Lead) -> list[Any]:
    """One row of every PHI model for ``lead``, every encrypted attribute set; returns them all."""
    rows: list[Any] = [lead]
    insurance = None
    for model in sorted(phi_models(), key=lambda m: "insurance_id" in m.__table__.c):
        if model is Lead:
            continue
        owner = {"insurance": insurance} if "insurance_id" in model.__table__.c else {"lead": lead}
        row = model(**owner, **{k: v() if callable(v) else v for k, v in REQUIRED[model].items()})
        insurance = row if model is Insurance else insurance
        rows.append(row)
    for row in rows:
        for name in encrypted_names(type(row)):
            setattr(row, name, sample(type(row), name)[0])
    return rows


def needles() -> list[bytes]:
    """Every plaintext that must not appear in raw storage."""
    found = {sample(model, name)[1] for model in phi_models() for name in encrypted_names(model)}
    return sorted({n.encode() for n in found | set(sentinels.ALL)})


@pytest.fixture
def stored(app) -> str:
    """A lead with one row of every PHI model, every encrypted field filled; returns its id."""
    with app.app_context():
        lead = Lead()
        db.session.add_all(build_rows(lead))
        db.session.commit()
        return lead.id


def raw(sql: str, **params: Any) -> Any:
    return db.session.execute(text(sql), params)


def as_bytes(value: Any) -> bytes:
    return bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()


def test_every_phi_model_is_covered_by_this_test():
    assert set(phi_models()) == set(REQUIRED), "a model gained encrypted fields: add it to REQUIRED"


def test_every_encrypted_column_holds_ciphertext_only(app, stored):
    with app.app_context():
        for model in phi_models():
            for name in encrypted_names(model):
                column = vars(model)[name].column
                blobs = [as_bytes(b) for (b,) in raw(f"SELECT {column} FROM {model.__tablename__}")]
                value, _ = sample(model, name)
                assert blobs, f"{model.__tablename__}.{column} is empty"
                for blob in blobs:
                    assert blob[0] == crypto.FIELD_FORMAT
                    assert vars(model)[name].encode(value) not in blob
                    assert not [n for n in needles() if n in blob], f"plaintext in {column}"


def test_no_plaintext_in_any_column_of_any_table(app, stored):
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in raw(f"SELECT * FROM {table.name}"):
                stored_bytes = b"\x00".join(as_bytes(v) for v in row if v is not None)
                leaked = [n for n in needles() if n in stored_bytes]
                assert not leaked, f"plaintext {leaked} in table {table.name}"


def test_sqlite_database_file_holds_no_plaintext(app, stored):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("file scan applies to the embedded SQLite database")
        db.session.remove()
        connection = db.engine.raw_connection()
        try:
            busy, _, _ = connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection.close()
        assert busy == 0
        path = Path(db.engine.url.database)
    contents = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert len(contents) > 4096
    assert [n for n in needles() if n in contents] == []


def test_every_value_reads_back_through_the_models(app, stored):
    with app.app_context():
        lead = db.session.get(Lead, stored)
        rows = [lead] + [db.session.scalars(select(m).where(m.id.is_not(None))).one() for m in phi_models()
                         if m is not Lead]
        for row in rows:
            for name in encrypted_names(type(row)):
                assert getattr(row, name) == sample(type(row), name)[0]


def test_same_plaintext_twice_gives_different_ciphertexts(app, make_lead):
    values = {"first_name": sentinels.FIRST_NAME, "last_name": sentinels.LAST_NAME, "phone": sentinels.PHONE,
              "email": sentinels.EMAIL, "dob": SENTINEL_DOB, "zip_code": sentinels.ZIP_CODE}
    first, second = make_lead(**values), make_lead(**values)
    with app.app_context():
        for name in values:
            column = f"{name}_enc"
            a = raw(f"SELECT {column} FROM leads WHERE id = :id", id=first).scalar_one()
            b = raw(f"SELECT {column} FROM leads WHERE id = :id", id=second).scalar_one()
            assert a != b
        lead = db.session.get(Lead, first)
        before = lead.first_name_enc
        lead.first_name = sentinels.FIRST_NAME
        assert lead.first_name_enc != before


def copy_value(source_table: str, source_column: str, source_id: str, target_table: str, target_column: str,
               target_id: str) -> None:
    blob = raw(f"SELECT {source_column} FROM {source_table} WHERE id = :id", id=source_id).scalar_one()
    raw(f"UPDATE {target_table} SET {target_column} = :blob WHERE id = :id", blob=blob, id=target_id)
    db.session.commit()
    db.session.expunge_all()


def test_ciphertext_copied_to_another_lead_fails(app, make_lead):
    a, b = make_lead(phone=sentinels.PHONE), make_lead(phone="(714) 555-0199", first_name="Robin")
    with app.app_context():
        copy_value("leads", "phone_enc", a, "leads", "phone_enc", b)
        lead = db.session.get(Lead, b)
        with pytest.raises(crypto.DecryptionError):
            _ = lead.phone
        assert lead.first_name == "Robin"


def test_ciphertext_copied_to_another_column_of_the_same_lead_fails(app, make_lead):
    lead_id = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME)
    with app.app_context():
        copy_value("leads", "first_name_enc", lead_id, "leads", "last_name_enc", lead_id)
        lead = db.session.get(Lead, lead_id)
        with pytest.raises(crypto.DecryptionError):
            _ = lead.last_name
        assert lead.first_name == sentinels.FIRST_NAME


def test_ciphertext_copied_between_rows_and_tables_under_one_data_key_fails(app):
    with app.app_context():
        lead = Lead(first_name="Robin")
        first = Enquiry(lead=lead, consent_version="2026-01", answers={"message": sentinels.MESSAGE})
        second = Enquiry(lead=lead, consent_version="2026-01", answers={"message": "other"})
        screening = Screening(lead=lead, outcome="eligible", answers={"phq2": 3})
        db.session.add_all([lead, first, second, screening])
        db.session.commit()
        ids = first.id, second.id, screening.id
        copy_value("enquiries", "answers_enc", ids[0], "enquiries", "answers_enc", ids[1])
        copy_value("enquiries", "answers_enc", ids[0], "screenings", "answers_enc", ids[2])
        for model, row_id in ((Enquiry, ids[1]), (Screening, ids[2])):
            with pytest.raises(crypto.DecryptionError):
                _ = db.session.get(model, row_id).answers
        assert db.session.get(Enquiry, ids[0]).answers == {"message": sentinels.MESSAGE}


def assert_email_unreadable_after_commit(lead_id: str) -> None:
    """Commit the tampering, reload the lead from the database and expect its e-mail to fail authentication."""
    db.session.commit()
    db.session.expunge_all()
    with pytest.raises(crypto.DecryptionError):
        _ = db.session.get(Lead, lead_id).email


@pytest.mark.parametrize("position", [0, 1, 2, 13, 14, -17, -1])
def test_flipped_stored_byte_fails(app, make_lead, position):
    lead_id = make_lead(email=sentinels.EMAIL)
    with app.app_context():
        blob = bytearray(raw("SELECT email_enc FROM leads WHERE id = :id", id=lead_id).scalar_one())
        blob[position] ^= 0x80
        raw("UPDATE leads SET email_enc = :blob WHERE id = :id", blob=bytes(blob), id=lead_id)
        assert_email_unreadable_after_commit(lead_id)


def test_tampered_wrapped_data_key_fails(app, make_lead):
    lead_id = make_lead(email=sentinels.EMAIL)
    with app.app_context():
        wrapped = bytearray(raw("SELECT wrapped FROM lead_keys WHERE lead_id = :id", id=lead_id).scalar_one())
        wrapped[5] ^= 0x01
        raw("UPDATE lead_keys SET wrapped = :w WHERE lead_id = :id", w=bytes(wrapped), id=lead_id)
        assert_email_unreadable_after_commit(lead_id)


def test_lead_wrapped_by_a_retired_key_is_refused(app, make_lead):
    lead_id = make_lead(first_name=sentinels.FIRST_NAME)
    with app.app_context():
        ring = app.extensions["crm_keyring"]
        ring.promote(ring.add_key().kid)
        assert db.session.get(Lead, lead_id).first_name == sentinels.FIRST_NAME
        db.session.expunge_all()
        ring.retire(1)
        with pytest.raises(crypto.RetiredKeyError):
            _ = db.session.get(Lead, lead_id).first_name


def find(column: Any, index: int | None, attribute: str, wanted: str, normalize: Any) -> list[str]:
    """Blind-index lookup then decrypt-and-compare, as intake dedupe does."""
    candidates = db.session.scalars(select(Lead).where(column == index))
    return [lead.id for lead in candidates if normalize(getattr(lead, attribute)) == normalize(wanted)]


@pytest.mark.parametrize("written", ["(949) 555-0100", "949.555.0100", "+19495550100", "949 555 0100"])
def test_blind_index_finds_a_lead_by_phone_in_any_format(app, make_lead, written):
    target = make_lead(phone="(949) 555-0100")
    make_lead(phone="(949) 555-0101")
    with app.app_context():
        found = find(Lead.phone_bidx, phone_index(written), "phone", written, crypto.normalize_phone)
        assert found == [target]


@pytest.mark.parametrize("written", ["pat.doe@example.com", "PAT.DOE@EXAMPLE.COM", "  Pat.Doe@example.COM "])
def test_blind_index_finds_a_lead_by_email_in_any_case(app, make_lead, written):
    target = make_lead(email="Pat.Doe@Example.com")
    make_lead(email="pat.doe2@example.com")
    with app.app_context():
        found = find(Lead.email_bidx, email_index(written), "email", written, crypto.normalize_email)
        assert found == [target]


def test_blind_index_columns_hold_truncated_values_only(app, make_lead):
    lead_id = make_lead(phone=sentinels.PHONE, email=sentinels.EMAIL, last_name=sentinels.LAST_NAME,
                        dob=SENTINEL_DOB)
    with app.app_context():
        bits = app.extensions["crm_indexer"].bits
        row = raw("SELECT phone_bidx, email_bidx, name_dob_bidx FROM leads WHERE id = :id", id=lead_id).one()
        assert all(value is not None and 0 <= value < 2**bits for value in row)


def test_setting_an_indexed_field_reindexes_it_without_decrypting(app, make_lead, monkeypatch):
    lead_id = make_lead(phone="(949) 555-0100", email="pat@example.com", last_name="Doe", dob=SENTINEL_DOB)
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        lead.field_cipher()  # unwrap the data key before counting

        def no_decrypt(*_args: Any) -> bytes:
            raise AssertionError("a blind-index hook decrypted a field")

        monkeypatch.setattr(crypto.FieldCipher, "decrypt", no_decrypt)
        lead.phone, lead.email = "949.555.0199", ""
        monkeypatch.undo()
        lead.last_name, lead.dob = "Roe", dt.date(1990, 5, 6)  # the compound index reads its other half
        db.session.commit()
        row = raw("SELECT phone_bidx, email_bidx, name_dob_bidx FROM leads WHERE id = :id", id=lead_id).one()
        assert row == (phone_index("(949) 555-0199"), None, name_dob_index("Roe", dt.date(1990, 5, 6)))


@pytest.mark.parametrize("rows", [10_000, 100_000, 1_000_000])
def test_configured_blind_index_length_is_within_ciphersweet_bounds(config, tmp_path, rows):
    from crm import create_app

    config["BLIND_INDEX_ROWS"] = rows
    application = create_app(config, instance_path=str(tmp_path / "instance"))
    bits = application.extensions["crm_indexer"].bits
    assert 2 <= rows / 2**bits <= math.sqrt(rows)
    with application.app_context():
        db.engine.dispose()


def test_encrypted_descriptor_is_used_for_every_enc_column():
    for model in phi_models():
        enc_columns = {c.name for c in model.__table__.columns if c.name.endswith("_enc")}
        described = {vars(model)[n].column for n in encrypted_names(model)}
        assert enc_columns == described, model.__tablename__
        assert all(isinstance(vars(model)[n], Encrypted) for n in encrypted_names(model))
