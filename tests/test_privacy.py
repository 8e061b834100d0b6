"""Privacy lifecycle: a patient's copy, erasure by crypto-shredding, do-not-contact and legal hold."""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from crm import crypto
from crm.leads.queries import stage_counts
from crm.models import (
    AuditEvent,
    Callback,
    ContactAttempt,
    DoNotContact,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    LeadKey,
    Role,
    Screening,
    Stage,
    UserSession,
    db,
    encrypted_names,
)
from crm.operations import privacy
from tests import sentinels
from tests.auth_helpers import audit_events
from tests.privacy_helpers import PNG_CARD, all_stored_values, sqlite_files, store_full_lead, stored_ciphertexts


@pytest.fixture
def admin(make_user):
    return make_user(role=Role.ADMIN)


@pytest.fixture
def admin_client(app, admin, login_as):
    client = app.test_client()
    login_as(client, admin)
    return client


@pytest.fixture
def coordinator_client(app, make_user, login_as):
    client = app.test_client()
    login_as(client, make_user(role=Role.COORDINATOR))
    return client


def audit_text(app) -> str:
    """Every text column of every audit row, joined."""
    with app.app_context():
        rows = db.session.execute(select(AuditEvent.details, AuditEvent.object_id, AuditEvent.actor_id,
                                         AuditEvent.action)).all()
        return "\n".join(str(v) for row in rows for v in row)


def logged_text(caplog) -> str:
    formatter = logging.Formatter()
    return "\n".join(formatter.format(r) for when in ("setup", "call") for r in caplog.get_records(when))


# --- the patient's copy ------------------------------------------------------------


def test_cli_export_holds_every_child_kind_and_every_sentinel_only_there(app, runner, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    lead = store_full_lead(app)
    out = tmp_path / "copy.html"
    result = runner.invoke(args=["privacy", "export", lead.reference.lower(), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for heading in ("Your details", "Your enquiries and consents", "Insurance and benefits checks",
                    "Calls, texts and e-mails to you", "Scheduled callbacks", "Eligibility screenings",
                    "Notes and history", "Who looked at or changed your record"):
        assert f">{heading}</h2>" in page
    missing = [name for name, value in lead.sentinels.items() if value not in page]
    assert missing == [], f"not in the export: {missing}"
    assert "1961-07-23" in page and "consent wording version" in page and "2026-01" in page
    import base64
    assert base64.b64encode(PNG_CARD + b"A").decode() in page  # the card image itself, embedded
    assert 'src="data:image/png;base64,' in page and "http" not in page.split("<body>")[1].split("988")[0]
    assert out.stat().st_mode & 0o077 == 0
    elsewhere = audit_text(app) + logged_text(caplog) + result.output
    assert [v for v in lead.sentinels.values() if v in elsewhere] == []
    [event] = audit_events(app, "lead_exported", object_id=lead.id)
    assert event.actor_kind == "system" and '"cards":1' in event.details and '"via":"cli"' in event.details


def test_export_lists_who_viewed_the_record(app, admin_client, admin, runner, tmp_path):
    lead = store_full_lead(app)
    assert admin_client.get(f"/leads/{lead.id}").status_code == 200
    out = tmp_path / "copy.html"
    assert runner.invoke(args=["privacy", "export", lead.reference, "--out", str(out)]).exit_code == 0
    page = out.read_text()
    access = page.split("Who looked at or changed your record")[1]
    assert "lead viewed" in access and admin.email in access


def test_admin_downloads_the_copy_after_a_fresh_sign_in(app, admin_client, admin):
    lead = store_full_lead(app)
    with app.app_context():
        db.session.execute(update(UserSession).values(reauth_at=dt.datetime(2000, 1, 1)))
        db.session.commit()
    stale = admin_client.get(f"/leads/{lead.id}/export")
    assert stale.status_code == 302 and "/auth/reauth" in stale.headers["Location"]
    assert audit_events(app, "lead_exported") == []
    with app.app_context():
        db.session.execute(update(UserSession).values(reauth_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
        db.session.commit()
    response = admin_client.get(f"/leads/{lead.id}/export")
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("no-store")
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="patient-copy-{lead.reference}-{dt.date.today():%Y%m%d}.html"')
    assert lead.sentinels["member_id"] in response.get_data(as_text=True)
    [event] = audit_events(app, "lead_exported", object_id=lead.id)
    assert event.actor_id == admin.id and '"via":"web"' in event.details


def test_coordinator_cannot_export(app, coordinator_client):
    lead = store_full_lead(app)
    response = coordinator_client.get(f"/leads/{lead.id}/export")
    assert response.status_code == 403
    assert lead.sentinels["first_name"] not in response.get_data(as_text=True)
    assert audit_events(app, "lead_exported") == []
    [denied] = audit_events(app, "access_denied")
    assert denied.object_id == "leads.export_copy"


def test_access_request_is_tracked_with_its_due_date_and_closed_by_the_export(app, coordinator_client, runner,
                                                                             tmp_path):
    lead = store_full_lead(app)
    response = coordinator_client.post(f"/leads/{lead.id}/access-request", follow_redirects=True)
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=15)).date()
    assert f"The copy is due by {due:%Y-%m-%d}." in response.get_data(as_text=True)
    with app.app_context():
        assert [row[0] for row in privacy.access_requests_due(dt.datetime(2100, 1, 1))] == [lead.id]
        assert privacy.access_requests_due(dt.datetime(2000, 1, 1)) == []
    assert runner.invoke(args=["privacy", "export", lead.reference, "--out", str(tmp_path / "c.html")]).exit_code == 0
    with app.app_context():
        row = db.session.get(Lead, lead.id)
        assert row.access_fulfilled_at is not None and row.access_due_at.date() == due
        assert privacy.access_requests_due(dt.datetime(2100, 1, 1)) == []


# --- erasure -----------------------------------------------------------------------


def test_every_lead_owned_encrypted_model_is_shredded():
    owned = set(privacy._owned_models()) | {Lead, InsuranceCard}
    phi = {m.class_ for m in db.Model.registry.mappers if encrypted_names(m.class_)}
    assert owned == phi


def erase(runner, reference: str):
    return runner.invoke(args=["privacy", "erase", reference, "--yes"])


def test_erasure_leaves_no_ciphertext_key_or_sentinel_in_the_stored_bytes(app, runner):
    lead = store_full_lead(app, "A")
    other = store_full_lead(app, "B", phone="(714) 555-0199", email="other.person@example.net")
    before = stored_ciphertexts(app, lead.id)
    assert len(before) >= 15
    result = erase(runner, lead.reference)
    assert result.exit_code == 0, result.output
    values = all_stored_values(app)
    needles = [*before, *(v.encode() for v in lead.sentinels.values()), PNG_CARD + b"A"]
    assert [n for n in needles if n in values] == []
    if db_is_sqlite(app):
        files = sqlite_files(app)
        assert [n for n in needles if n in files] == []
    with app.app_context():
        row = db.session.get(Lead, other.id)
        assert row.first_name == other.sentinels["first_name"]
        assert row.insurances[0].cards[0].content == PNG_CARD + b"B"
        assert db.session.get(LeadKey, lead.id) is None
    verify = runner.invoke(args=["audit", "verify"])
    assert verify.exit_code == 0, verify.output


def db_is_sqlite(app) -> bool:
    with app.app_context():
        return db.engine.dialect.name == "sqlite"


def test_tombstone_keeps_the_non_phi_facts_reports_need(app, runner):
    lead = store_full_lead(app)
    assert erase(runner, lead.reference).exit_code == 0
    with app.app_context():
        row = db.session.get(Lead, lead.id)
        assert row.is_erased and row.erasure_reason == "patient_request" and row.erased_by is None
        assert (row.reference, row.source, row.stage) == (lead.reference, "web_form", "new")
        assert row.created_at and row.stage_changed_at
        assert [c for c in Lead.__table__.c if c.name.endswith("_enc") and getattr(row, c.name) is not None] == []
        assert (row.phone_bidx, row.email_bidx, row.name_dob_bidx) == (None, None, None)
        insurance = db.session.scalars(select(Insurance).where(Insurance.lead_id == lead.id)).one()
        assert (insurance.coverage_type, insurance.vob_status, insurance.vob_outcome) == (
            "ppo", "verified", "in_network_no_pa")
        assert insurance.carrier_enc is None and db.session.scalar(select(InsuranceCard.id)) is None
        attempt = db.session.scalars(select(ContactAttempt)).one()
        assert (attempt.channel, attempt.outcome, attempt.note_enc) == ("call", "no_answer", None)
        assert db.session.scalars(select(Screening.outcome)).one() == "eligible"
        stages = db.session.execute(select(LeadEvent.from_stage, LeadEvent.to_stage)
                                    .where(LeadEvent.to_stage.is_not(None))).all()
        assert stages == [("new", "contacting")]
        assert db.session.scalars(select(Enquiry.answers_enc)).one() is None
        assert db.session.scalars(select(Callback.done_at)).one() is not None
        with pytest.raises(crypto.DecryptionError):
            row.field_cipher()
        assert stage_counts()["new"] == 1  # the workspace's counts (and reports) still include it


def test_second_erase_is_a_clear_no_op(app, runner):
    lead = store_full_lead(app)
    assert erase(runner, lead.reference).exit_code == 0
    events = len(audit_events(app))
    again = erase(runner, lead.reference)
    assert again.exit_code == 0
    assert "was already erased on" in again.output and "nothing to do" in again.output
    assert len(audit_events(app)) == events


def test_erased_lead_cannot_be_exported_edited_or_contacted(app, runner, admin_client, tmp_path):
    lead = store_full_lead(app)
    assert erase(runner, lead.reference).exit_code == 0
    refused = runner.invoke(args=["privacy", "export", lead.reference, "--out", str(tmp_path / "x.html")])
    assert refused.exit_code == 1 and "was erased on" in refused.output
    assert not (tmp_path / "x.html").exists()
    web = admin_client.get(f"/leads/{lead.id}/export", follow_redirects=True)
    assert "nothing left to export" in web.get_data(as_text=True)
    changes = (("notes", {"body": "hello"}), ("attempts", {"channel": "call", "outcome": "reached"}),
               ("stage", {"target": "contacted", "expected": "new"}), ("do-not-contact", {"how_asked": "phone"}))
    for path, data in changes:
        assert admin_client.post(f"/leads/{lead.id}/{path}", data=data).status_code == 404
    with app.app_context():
        row = db.session.get(Lead, lead.id)
        with pytest.raises(privacy.PrivacyRefusal, match="was erased on"):
            privacy.refuse_if_erased(row)
        assert privacy.may_alert(row) is False
    assert audit_events(app, "note_added", "attempt_logged", "lead_exported") == []


def test_lead_page_of_an_erased_lead_says_when_and_by_whom(app, admin_client, admin):
    lead = store_full_lead(app)
    page = admin_client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert 'id="privacy"' in page
    with app.app_context():
        privacy.erase_lead(db.session.get(Lead, lead.id), db.session.get(type(admin), admin.id))
        db.session.commit()
    response = admin_client.get(f"/leads/{lead.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Erased on " in page and f"by {admin.email}" in page and "The patient asked for their information" in page
    assert lead.sentinels["first_name"] not in page
    assert audit_events(app, "decrypt_failed") == []
    listing = admin_client.get("/leads/").get_data(as_text=True)
    assert lead.reference not in listing


def test_web_erase_needs_a_fresh_sign_in_and_the_typed_reference(app, admin_client):
    lead = store_full_lead(app)
    wrong = admin_client.post(f"/leads/{lead.id}/erase", data={"confirm_reference": "ABCD-EFGH"})
    assert wrong.status_code == 200
    assert "not this lead&#39;s reference code; nothing was erased" in wrong.get_data(as_text=True)
    assert 'value="ABCD-EFGH"' in wrong.get_data(as_text=True)
    with app.app_context():
        assert not db.session.get(Lead, lead.id).is_erased
        db.session.execute(update(UserSession).values(reauth_at=dt.datetime(2000, 1, 1)))
        db.session.commit()
    stale = admin_client.post(f"/leads/{lead.id}/erase", data={"confirm_reference": lead.reference,
                                                               "next": f"/leads/{lead.id}"})
    assert stale.status_code == 302 and "/auth/reauth" in stale.headers["Location"]
    with app.app_context():
        assert not db.session.get(Lead, lead.id).is_erased
        db.session.execute(update(UserSession).values(reauth_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
        db.session.commit()
    done = admin_client.post(f"/leads/{lead.id}/erase", data={"confirm_reference": lead.reference.lower()},
                             follow_redirects=True)
    assert "Lead erased" in done.get_data(as_text=True)
    [event] = audit_events(app, "lead_erased")
    assert event.outcome == "success" and '"reason":"patient_request"' in event.details
    again = admin_client.post(f"/leads/{lead.id}/erase", data={"confirm_reference": lead.reference},
                              follow_redirects=True)
    assert "already erased on" in again.get_data(as_text=True)


def test_coordinator_cannot_erase(app, coordinator_client):
    lead = store_full_lead(app)
    response = coordinator_client.post(f"/leads/{lead.id}/erase", data={"confirm_reference": lead.reference})
    assert response.status_code == 403
    with app.app_context():
        assert not db.session.get(Lead, lead.id).is_erased


@pytest.mark.parametrize("kept", ["converted", "legal_hold"])
def test_erasure_is_refused_for_a_patient_or_a_legal_hold_with_the_reason(app, runner, kept, admin_client):
    lead = store_full_lead(app)
    with app.app_context():
        values = {"stage": Stage.CONVERTED} if kept == "converted" else {"legal_hold_at": dt.datetime(2026, 1, 1)}
        db.session.execute(update(Lead).where(Lead.id == lead.id).values(**values))
        db.session.commit()
    result = erase(runner, lead.reference)
    assert result.exit_code == 1 and privacy.REFUSALS[kept].split(":")[0] in result.output
    page = admin_client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert privacy.REFUSALS[kept].split(":")[0] in page.replace("&#39;", "'")
    with app.app_context():
        assert db.session.get(Lead, lead.id).first_name == lead.sentinels["first_name"]
    [event] = audit_events(app, "lead_erased")
    assert event.outcome == "refused" and f'"refused":"{kept}"' in event.details


def test_admin_places_and_releases_a_legal_hold(app, admin_client, coordinator_client):
    lead = store_full_lead(app)
    assert coordinator_client.post(f"/leads/{lead.id}/legal-hold").status_code == 403
    placed = admin_client.post(f"/leads/{lead.id}/legal-hold", follow_redirects=True)
    assert "Legal hold placed." in placed.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Lead, lead.id).legal_hold_at is not None
    admin_client.post(f"/leads/{lead.id}/legal-hold/release")
    with app.app_context():
        assert db.session.get(Lead, lead.id).legal_hold_at is None
    assert [e.action for e in audit_events(app, "legal_hold_set", "legal_hold_released")] == [
        "legal_hold_set", "legal_hold_released"]


def test_postgresql_columns_hold_nothing_of_the_erased_lead(app, runner):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL columns")
    lead = store_full_lead(app)
    before = stored_ciphertexts(app, lead.id)
    assert erase(runner, lead.reference).exit_code == 0
    with app.app_context():
        dump = db.session.execute(text("SELECT string_agg(encode(convert_to(t::text, 'UTF8'), 'hex'), '') "
                                       "FROM leads t")).scalar_one()
    values = all_stored_values(app)
    assert [b for b in before if b in values or b.hex() in dump] == []


# --- do not contact ----------------------------------------------------------------


def test_do_not_contact_blocks_attempts_and_callbacks_with_a_clear_message(app, coordinator_client):
    lead = store_full_lead(app)
    marked = coordinator_client.post(f"/leads/{lead.id}/do-not-contact", data={"how_asked": "stop_reply"},
                                     follow_redirects=True)
    assert "Marked do not contact" in marked.get_data(as_text=True)
    attempt = coordinator_client.post(f"/leads/{lead.id}/attempts", data={"channel": "call", "outcome": "reached"},
                                      follow_redirects=True)
    assert "This patient asked not to be contacted on" in attempt.get_data(as_text=True)
    callback = coordinator_client.post(f"/leads/{lead.id}/callbacks", data={"due_at": "2099-01-01T10:00"},
                                       follow_redirects=True)
    assert "This patient asked not to be contacted on" in callback.get_data(as_text=True)
    with app.app_context():
        row = db.session.get(Lead, lead.id)
        assert row.attempt_count == 0 and row.next_callback_at is None
        assert db.session.scalar(select(Callback.id).where(Callback.done_at.is_(None))) is None
        assert privacy.may_alert(row) is False
    assert audit_events(app, "attempt_logged", "callback_scheduled") == []
    [event] = audit_events(app, "do_not_contact_set")
    assert '"channel":"stop_reply"' in event.details


def test_do_not_contact_missing_channel_is_a_field_error(app, coordinator_client):
    lead = store_full_lead(app)
    response = coordinator_client.post(f"/leads/{lead.id}/do-not-contact", data={"how_asked": ""})
    assert response.status_code == 200 and "Choose how the patient asked." in response.get_data(as_text=True)
    with app.app_context():
        assert not db.session.get(Lead, lead.id).is_do_not_contact


def test_do_not_contact_list_survives_erasure_and_matches_any_format(app, admin, runner):
    lead = store_full_lead(app)
    with app.app_context():
        actor = db.session.get(type(admin), admin.id)
        privacy.set_do_not_contact(db.session.get(Lead, lead.id), actor, "phone")
        db.session.commit()
    assert erase(runner, lead.reference).exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(DoNotContact.lead_id)) == lead.id
        by_phone = privacy.do_not_contact_match(phone=sentinels.PHONE_DIGITS)
        by_email = privacy.do_not_contact_match(email=sentinels.EMAIL.upper())
        assert by_phone and by_email and by_phone.channel == "phone"
        assert privacy.do_not_contact_match(phone="+1 714 555 0123") is None
        assert privacy.do_not_contact_match() is None


def test_new_lead_with_a_listed_phone_warns_but_the_patients_web_enquiry_is_accepted(app, admin, coordinator_client):
    old = store_full_lead(app, "A")
    with app.app_context():
        privacy.set_do_not_contact(db.session.get(Lead, old.id), db.session.get(type(admin), admin.id), "phone")
        db.session.commit()
        privacy.erase_lead(db.session.get(Lead, old.id), None)
        db.session.commit()
    again = store_full_lead(app, "C")  # same phone and e-mail, a new web-form lead
    page = coordinator_client.get(f"/leads/{again.id}").get_data(as_text=True)
    assert "This phone or e-mail is on the do-not-contact list" in page
    assert "they are asking again" in page
    with app.app_context():
        db.session.execute(update(Lead).where(Lead.id == again.id).values(source="phone"))
        db.session.commit()
    page = coordinator_client.get(f"/leads/{again.id}").get_data(as_text=True)
    assert "Check with the patient before any call" in page
    logged = coordinator_client.post(f"/leads/{again.id}/attempts", data={  # its stored attempt is seconds old
        "channel": "call", "outcome": "reached", "confirm_repeat": "y"}, follow_redirects=True)
    assert "Attempt logged." in logged.get_data(as_text=True)  # a warning, not a block: they asked again


def test_lifting_do_not_contact_removes_the_list_entry(app, coordinator_client):
    lead = store_full_lead(app)
    coordinator_client.post(f"/leads/{lead.id}/do-not-contact", data={"how_asked": "phone"})
    lifted = coordinator_client.post(f"/leads/{lead.id}/do-not-contact/lift", follow_redirects=True)
    assert "Do not contact lifted." in lifted.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(DoNotContact.id)) is None
        assert privacy.may_alert(db.session.get(Lead, lead.id))


def test_shred_ledger_names_erased_leads_without_phi(app, runner):
    lead = store_full_lead(app)
    assert erase(runner, lead.reference).exit_code == 0
    path = Path(app.instance_path) / "shred-ledger.jsonl"
    content = path.read_text()
    assert lead.id in content and path.stat().st_mode & 0o077 == 0
    assert [v for v in lead.sentinels.values() if v in content] == [] and lead.reference not in content


def test_privacy_notice_says_what_the_clinic_now_does(client, app):
    page = client.get("/privacy").get_data(as_text=True).replace("&#39;", "'")
    assert "reply STOP to a text".lower() in page.lower()
    assert "within 15 days, everything we hold about you" in page
    assert "we delete it automatically 24 months after the last time we were in touch" in page
    assert "We then destroy the key that unlocks your information" in page
    assert app.config["CLINIC_PHONE"] in page


def test_lead_page_with_the_privacy_block_has_unique_ids(app, admin_client):
    lead = store_full_lead(app)
    page = admin_client.get(f"/leads/{lead.id}").get_data(as_text=True)
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert "privacy" in ids and "how_asked" in ids and "confirm_reference" in ids
    assert sorted({i for i in ids if ids.count(i) > 1}) == []
