"""The `flask` commands: create-user, keys, rotate-keys and seed-demo."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from crm import crypto
from crm.cli import keys as keys_cli
from crm.cli import users as users_cli
from crm.cli.demo import AREA_CODES, CARRIERS, FIRST_NAMES
from crm.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    ContactAttempt,
    Enquiry,
    Insurance,
    Lead,
    LeadEvent,
    LeadKey,
    Role,
    Stage,
    User,
    allowed_moves,
    db,
    email_index,
    name_dob_index,
    phone_index,
)
from crm.passwords import verify_password
from tests import sentinels

PASSWORD = "correct horse battery staple orbit"


@pytest.fixture
def keyring_file(config, keyring, tmp_path) -> Path:
    """Keep the keyring in a 0600 file (key commands write it back) instead of the environment."""
    path = tmp_path / "keyring.json"
    crypto.write_keyring_file(path, keyring)
    config["KEYRING"] = None
    config["KEYRING_FILE"] = str(path)
    return path


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


# --- create-user ---------------------------------------------------------------------


def test_create_user_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(args=["create-user", "First.Admin@Clinic.test", "--role", "admin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    with app.app_context():
        user = db.session.scalars(select(User)).one()
        assert (user.email, user.role) == ("first.admin@clinic.test", Role.ADMIN)
        assert user.password_hash.startswith("$argon2id$")
        assert verify_password(user.password_hash, PASSWORD)
        [event] = events("user_created")
        assert (event.actor_kind, event.object_id) == ("system", user.id)


def test_create_user_prompts_twice_on_a_terminal(app, runner, monkeypatch):
    monkeypatch.setattr(users_cli, "_stdin_is_tty", lambda: True)
    result = runner.invoke(args=["create-user", "coord@clinic.test", "--role", "coordinator"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output and PASSWORD not in result.output
    with app.app_context():
        assert verify_password(db.session.scalars(select(User.password_hash)).one(), PASSWORD)


def test_create_user_refuses_a_duplicate_in_any_case(app, runner):
    assert runner.invoke(args=["create-user", "pat@clinic.test", "--role", "admin"], input=PASSWORD).exit_code == 0
    result = runner.invoke(args=["create-user", "PAT@clinic.test", "--role", "coordinator"], input=PASSWORD)
    assert result.exit_code == 1
    assert "already exists" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
        assert len(events("user_created")) == 1


@pytest.mark.parametrize("weak", ["", "short", "ketamineclinic2025", "password123456789"])
def test_create_user_refuses_a_weak_password(app, runner, weak):
    result = runner.invoke(args=["create-user", "pat@clinic.test", "--role", "admin"], input=weak + "\n")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        assert events("user_created") == []


def test_create_user_rejects_an_unknown_role(runner):
    result = runner.invoke(args=["create-user", "pat@clinic.test", "--role", "owner"], input=PASSWORD)
    assert result.exit_code == 2


# --- keys and rotation -----------------------------------------------------------------


def _lead_with_children(**attrs) -> str:
    lead = Lead(**attrs)
    db.session.add_all([
        lead,
        Enquiry(lead=lead, consent_version="2026-01", answers={"message": sentinels.MESSAGE}),
        Insurance(lead=lead, carrier="Aetna", member_id=sentinels.MEMBER_ID),
        ContactAttempt(lead=lead, channel="call", outcome="reached", note=sentinels.NOTE),
    ])
    return lead.id


@pytest.fixture
def populated(keyring_file, app, keyring) -> dict:
    """Five leads with children and one admin with a sealed TOTP seed, all under key 1."""
    with app.app_context():
        ids = [_lead_with_children(first_name=f"{sentinels.FIRST_NAME}{n}", phone=sentinels.PHONE,
                                   email=sentinels.EMAIL, dob=dt.date(1980, 1, n + 1)) for n in range(5)]
        admin = User(email="admin@clinic.test", role=Role.ADMIN)
        admin.totp_secret_sealed = crypto.seal(keyring, "totp", admin.id, b"JBSWY3DPEHPK3PXP")
        db.session.add(admin)
        db.session.commit()
        return {"leads": sorted(ids), "admin": admin.id}


def kids() -> dict[int, int]:
    return dict(db.session.execute(select(LeadKey.kid, func.count()).group_by(LeadKey.kid)).all())


def test_keys_status_counts_usage_and_prints_no_key_bytes(populated, runner, keyring):
    result = runner.invoke(args=["keys", "status"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.split()[0] == "1")
    assert line.split() == ["1", "primary", "5", "1"]
    for secret in (keyring.primary.key, keyring.index_key, keyring.audit_key):
        assert base64.b64encode(secret).decode() not in result.output and secret.hex() not in result.output


def test_add_and_promote_write_the_keyring_file_0600_and_audit(populated, runner, keyring_file, app):
    assert runner.invoke(args=["keys", "add"]).exit_code == 0
    result = runner.invoke(args=["keys", "promote", "2"])
    assert result.exit_code == 0, result.output
    ring = crypto.read_keyring_file(keyring_file)
    assert {k: v.status for k, v in ring.master_keys.items()} == {1: "active", 2: "primary"}
    assert stat.S_IMODE(keyring_file.stat().st_mode) == 0o600
    with app.app_context():
        assert [e.object_id for e in events("key_added")] == ["2"]
        [promoted] = events("key_promoted")
        assert json.loads(promoted.details) == {"previous_primary": 1, "status": "primary"}
        lead = Lead(first_name="New")
        assert lead.key.kid == 2


def test_promote_or_retire_an_unknown_key_fails(populated, runner):
    for args in (["keys", "promote", "7"], ["keys", "retire", "7"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1 and "key id 7" in result.output


def test_rotation_rewraps_everything_then_the_old_key_retires(populated, runner, app, keyring_file):
    runner.invoke(args=["keys", "add"])
    runner.invoke(args=["keys", "promote", "2"])
    refused = runner.invoke(args=["keys", "retire", "1"])
    assert refused.exit_code == 1 and "still wraps 5 lead keys and 1 sealed secrets" in refused.output
    result = runner.invoke(args=["rotate-keys", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "batch 3: 5/5 re-wrapped" in result.output
    with app.app_context():
        assert kids() == {2: 5}
        for lead_id in populated["leads"]:
            lead = db.session.get(Lead, lead_id)
            assert (lead.phone, lead.email) == (sentinels.PHONE, sentinels.EMAIL)
            assert lead.enquiries[0].answers == {"message": sentinels.MESSAGE}
            assert lead.insurances[0].member_id == sentinels.MEMBER_ID
        admin = db.session.get(User, populated["admin"])
        assert crypto.sealed_kid(admin.totp_secret_sealed) == 2
        ring = app.extensions["crm_keyring"]
        assert crypto.unseal(ring, "totp", admin.id, admin.totp_secret_sealed) == b"JBSWY3DPEHPK3PXP"
        batches = [json.loads(e.details) for e in events("keys_rotated")]
        assert batches == [
            {"batch": 1, "failed": 0, "from_kids": [1], "rewrapped": 2},
            {"batch": 2, "failed": 0, "from_kids": [1], "rewrapped": 2},
            {"batch": 3, "failed": 0, "from_kids": [1], "rewrapped": 1},
            {"resealed": 1},
        ]
        assert all(s not in e.details for e in events("keys_rotated") for s in sentinels.ALL)
    refused_primary = runner.invoke(args=["keys", "retire", "2"])
    assert refused_primary.exit_code == 1 and "is the primary" in refused_primary.output
    retired = runner.invoke(args=["keys", "retire", "1"])
    assert retired.exit_code == 0, retired.output
    assert crypto.read_keyring_file(keyring_file).master_keys[1].status == "retired"
    with app.app_context():
        assert [json.loads(e.details).get("reason") for e in events("key_retired")] == ["in_use", "primary", None]
        assert [e.outcome for e in events("key_retired")] == ["refused", "refused", "success"]
        names = sorted(db.session.get(Lead, lead_id).first_name for lead_id in populated["leads"])
        assert names == [f"{sentinels.FIRST_NAME}{n}" for n in range(5)]


def test_interrupted_rotation_resumes_where_it_stopped(populated, runner, app, monkeypatch):
    runner.invoke(args=["keys", "add"])
    runner.invoke(args=["keys", "promote", "2"])
    real_rewrap, calls = keys_cli._rewrap, []

    def crash_on_second_batch(ring, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_rewrap(ring, rows)

    monkeypatch.setattr(keys_cli, "_rewrap", crash_on_second_batch)
    assert runner.invoke(args=["rotate-keys", "--batch-size", "2"]).exit_code != 0
    with app.app_context():
        first_two = populated["leads"][:2]
        rotated = dict(db.session.execute(select(LeadKey.lead_id, LeadKey.nonce).where(LeadKey.kid == 2)).all())
        assert sorted(rotated) == first_two
    monkeypatch.setattr(keys_cli, "_rewrap", real_rewrap)
    result = runner.invoke(args=["rotate-keys", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("3 lead keys to re-wrap under key 2.")
    with app.app_context():
        assert kids() == {2: 5}
        for lead_id, nonce in rotated.items():
            assert db.session.get(LeadKey, lead_id).nonce == nonce
            assert db.session.get(Lead, lead_id).phone == sentinels.PHONE


def test_rotation_skips_and_audits_a_tampered_data_key(populated, runner, app):
    runner.invoke(args=["keys", "add"])
    runner.invoke(args=["keys", "promote", "2"])
    victim = populated["leads"][1]
    with app.app_context():
        wrapped = bytearray(db.session.get(LeadKey, victim).wrapped)
        wrapped[0] ^= 1
        db.session.execute(text("UPDATE lead_keys SET wrapped = :w WHERE lead_id = :id"),
                           {"w": bytes(wrapped), "id": victim})
        db.session.commit()
    result = runner.invoke(args=["rotate-keys"])
    assert result.exit_code == 1
    assert "1 lead keys failed authentication" in result.output
    with app.app_context():
        assert kids() == {1: 1, 2: 4}
        [failure] = events("decrypt_failed")
        assert (failure.object_type, failure.object_id, failure.outcome) == ("lead", victim, "failure")


def test_rotation_with_nothing_to_do_reports_zero(populated, runner):
    result = runner.invoke(args=["rotate-keys"])
    assert result.exit_code == 0
    assert "0 lead keys to re-wrap under key 1." in result.output


def test_key_changes_are_refused_when_the_keyring_comes_from_the_environment(app, runner, keyring):
    result = runner.invoke(args=["keys", "add"])
    assert result.exit_code == 1 and "CRM_KEYRING" in result.output
    assert list(app.extensions["crm_keyring"].master_keys) == [1]
    with app.app_context():
        assert events("key_added") == []


# --- seed-demo -------------------------------------------------------------------------


def seeded_people() -> list[tuple]:
    leads = db.session.scalars(select(Lead).order_by(Lead.reference))
    return sorted((lead.first_name, lead.last_name, lead.dob, lead.phone, lead.email, lead.stage) for lead in leads)


def test_seed_demo_writes_realistic_encrypted_leads(app, runner, make_user):
    coordinator = make_user(role=Role.COORDINATOR)
    make_user(role=Role.ADMIN)
    result = runner.invoke(args=["seed-demo", "--leads", "60", "--seed", "7", "--batch-size", "25"])
    assert result.exit_code == 0, result.output
    assert "60/60 leads" in result.output
    with app.app_context():
        counts = {m.__tablename__: db.session.scalar(select(func.count()).select_from(m))
                  for m in (Lead, LeadKey, Enquiry, Insurance, ContactAttempt, LeadEvent)}
        assert counts["leads"] == counts["lead_keys"] == counts["enquiries"] == 60
        assert 30 < counts["insurances"] <= 60 and counts["contact_attempts"] > 60 and counts["lead_events"] > 120
        leads = list(db.session.scalars(select(Lead)))
        assert len({lead.stage for lead in leads}) >= 7
        assert {lead.assignee_id for lead in leads if lead.stage != Stage.NEW} == {coordinator.id}
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for lead in leads:
            assert_realistic(lead, now)
        raw = b"".join(bytes(v) for (v,) in db.session.execute(text("SELECT first_name_enc FROM leads")))
        assert not [name for name in FIRST_NAMES if name.encode() in raw]


def assert_realistic(lead: Lead, now: dt.datetime) -> None:
    assert lead.first_name in FIRST_NAMES
    assert dt.date(1950, 1, 1) <= lead.dob <= dt.date(2005, 12, 31)
    assert lead.phone[1:4] in AREA_CODES
    assert lead.email.endswith((".com", ".org", ".net")) and "@example." in lead.email
    assert lead.phone_bidx == phone_index(lead.phone) and lead.email_bidx == email_index(lead.email)
    assert lead.name_dob_bidx == name_dob_index(lead.last_name, lead.dob)
    assert now - dt.timedelta(days=91) < lead.created_at <= now
    enquiry = lead.enquiries[0]
    assert enquiry.answers["submitted"]["phone"] == lead.phone and enquiry.consent_ip.startswith("203.0.113.")
    for insurance in lead.insurances:
        assert insurance.carrier in {c[0] for c in CARRIERS} and insurance.member_id
    timeline = list(db.session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead.id,
                                                               LeadEvent.kind == "stage_changed")))
    for event in timeline:
        assert Stage(event.to_stage) in allowed_moves(Stage(event.from_stage))
    assert (timeline[-1].to_stage if timeline else Stage.NEW) == lead.stage


def test_seed_demo_books_appointments_and_texts_only_patients_who_agreed(app, runner, make_user):
    make_user(role=Role.COORDINATOR)
    clinician = make_user(role=Role.CLINICIAN)
    result = runner.invoke(args=["seed-demo", "--leads", "300", "--seed", "5", "--batch-size", "120"])
    assert result.exit_code == 0, result.output
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with app.app_context():
        leads = list(db.session.scalars(select(Lead)))
        by_lead: dict[str, list[Appointment]] = {}
        for appointment in db.session.scalars(select(Appointment)):
            by_lead.setdefault(appointment.lead_id, []).append(appointment)
            assert appointment.clinician_id == clinician.id
        for lead in leads:
            visits = by_lead.get(lead.id, [])
            if lead.stage == Stage.SCHEDULED:
                [visit] = visits
                assert visit.status == AppointmentStatus.BOOKED and now < visit.starts_at < now + dt.timedelta(days=15)
            elif lead.stage == Stage.CONVERTED:
                attended = sorted(v.kind for v in visits if v.status == AppointmentStatus.ATTENDED)
                assert attended == ["consultation", "rems_first_treatment"]
                assert all(v.starts_at <= now for v in visits if v.status == AppointmentStatus.ATTENDED)
                assert lead.first_treatment_on is not None
            else:
                assert not visits and lead.first_treatment_on is None
        assert any(lead.stage == Stage.SCHEDULED for lead in leads)
        agreed = dict(db.session.execute(select(Enquiry.lead_id, Enquiry.contact_consent)).all())
        assert 0 < sum(not v for v in agreed.values()) < len(agreed) / 2
        texted = set(db.session.scalars(select(ContactAttempt.lead_id).where(ContactAttempt.channel == "text")))
        assert texted and all(agreed[lead_id] for lead_id in texted)


def test_seed_demo_is_repeatable_with_a_seed(app, runner):
    assert runner.invoke(args=["seed-demo", "--leads", "15", "--seed", "11"]).exit_code == 0
    with app.app_context():
        first = seeded_people()
        for table in reversed(db.metadata.sorted_tables):
            if table.name not in ("audit_events", "users"):
                db.session.execute(table.delete())
        db.session.commit()
    assert runner.invoke(args=["seed-demo", "--leads", "15", "--seed", "11"]).exit_code == 0
    with app.app_context():
        assert seeded_people() == first


def test_seed_demo_refuses_production_unless_forced(config, app, runner):
    app.config["MODE"] = "production"
    result = runner.invoke(args=["seed-demo", "--leads", "3"])
    assert result.exit_code == 1 and "production" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 0
    assert runner.invoke(args=["seed-demo", "--leads", "3", "--force"]).exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 3
