"""Clinicians: assignable in the invite and role forms; their home queues; sign-off decisions, audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.models import Lead, Role, Screening, User, db
from tests import sentinels
from tests.auth_helpers import PASSWORD_HASH, audit_events
from tests.screening import PASSING

NEEDS_REVIEW = {  # a pre-screen as the browser posts it, with a caution that needs a clinician's review
    **{name: str(answer) for name, answer in PASSING.items()},
    **{f"phq9_{i}": "2" for i in range(8)}, "phq9_8": "0",
    "cssrs_q1": "no", "cssrs_q2": "no", "cssrs_q6": "no", "caution_bp": "yes",
}
HIGH_RISK = {**NEEDS_REVIEW, "cssrs_q1": "yes", "cssrs_q2": "yes", "cssrs_q3": "yes", "cssrs_q4": "yes",
             "cssrs_q5": "yes", "cssrs_q6": "yes", "q6_recent": "yes"}


@pytest.fixture
def admin_client(app, make_user, login_as):
    make_user(role=Role.ADMIN)
    client = app.test_client()
    login_as(client, make_user(email="boss@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH))
    return client


@pytest.fixture
def staff(client, make_user, login_as):
    login_as(client, make_user(display_name="Casey Coordinator"))
    return client


@pytest.fixture
def clinician(make_user):
    return make_user(display_name="Dr Rivera", role=Role.CLINICIAN)


@pytest.fixture
def doctor(app, clinician, login_as):
    client = app.test_client()
    login_as(client, clinician)
    return client


def screened(app, staff, make_lead, answers=NEEDS_REVIEW, **lead):
    lead_id = make_lead(stage="screening", **lead)
    assert staff.post(f"/leads/{lead_id}/screenings", data=answers).status_code == 302
    with app.app_context():
        return lead_id, db.session.scalar(select(Screening.id).where(Screening.lead_id == lead_id))


def test_the_clinician_role_is_offered_and_given_by_invitation(app, admin_client):
    assert 'value="clinician"' in admin_client.get("/admin/users/new").get_data(as_text=True)
    response = admin_client.post("/admin/users/new", data={"email": "dr.new@clinic.test", "display_name": "Dr New",
                                                           "role": "clinician"})
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(User.role).where(User.email == "dr.new@clinic.test")) == Role.CLINICIAN


def test_the_role_form_makes_a_coordinator_a_clinician(app, admin_client, make_user):
    user = make_user(email="promote@clinic.test")
    admin_client.post(f"/admin/users/{user.id}/role", data={"role": "clinician"})
    with app.app_context():
        assert db.session.get(User, user.id).role == Role.CLINICIAN
    assert audit_events(app, "role_changed")[0].details == '{"from":"coordinator","to":"clinician"}'


def test_a_clinicians_home_shows_screenings_awaiting_sign_off_and_crisis_escalations(app, staff, doctor,
                                                                                     make_lead):
    waiting, _ = screened(app, staff, make_lead, first_name="Waiting")
    crisis, _ = screened(app, staff, make_lead, answers=HIGH_RISK, first_name="Crisis")
    page = doctor.get("/leads/home").get_data(as_text=True)
    with app.app_context():
        waiting_ref, crisis_ref = (db.session.get(Lead, i).reference for i in (waiting, crisis))
    awaiting = page.split('id="sign-off-h"')[1].split('id="crisis-h"')[0]
    escalations = page.split('id="crisis-h"')[1].split("</section>")[0]
    assert waiting_ref in awaiting and crisis_ref in escalations
    assert 'id="sign-off-h"' not in staff.get("/leads/home").get_data(as_text=True)  # a coordinator's home
    listed = audit_events(app, "leads_listed")
    assert any(waiting in event.details and crisis in event.details for event in listed)


@pytest.mark.parametrize("data,decision,reason", [
    ({"decision": "eligible"}, "eligible", None),
    ({"decision": "not_eligible", "reason": "contraindication"}, "not_eligible", "contraindication"),
    ({"decision": "needs_more_information"}, "needs_more_information", None),
])
def test_sign_off_records_the_decision_and_an_encrypted_note(app, staff, doctor, make_lead, data, decision, reason):
    lead_id, screening_id = screened(app, staff, make_lead)
    response = doctor.post(f"/leads/{lead_id}/screenings/{screening_id}/sign-off",
                           data={**data, "note": sentinels.NOTE})
    assert response.status_code == 302
    with app.app_context():
        row = db.session.get(Screening, screening_id)
        assert (row.sign_off_decision, row.sign_off_reason, row.sign_off_note) == (decision, reason, sentinels.NOTE)
        assert sentinels.NOTE.encode() not in bytes(row.sign_off_note_enc)
    [event] = audit_events(app, "screening_signed_off", object_id=lead_id)
    assert f'"decision":"{decision}"' in event.details and sentinels.NOTE not in event.details
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Signed off by <strong>Dr Rivera</strong>" in page and sentinels.NOTE in page
    awaiting = doctor.get("/leads/home").get_data(as_text=True).split('id="sign-off-h"')[1].split("</section>")[0]
    assert lead_id not in awaiting and "No pre-screen is waiting." in awaiting


def test_only_an_eligible_decision_lets_the_lead_become_eligible(app, staff, doctor, make_lead):
    lead_id, screening_id = screened(app, staff, make_lead)
    staff.post(f"/leads/{lead_id}/insurance", data={"coverage_type": "self_pay", "vob_status": "in_progress"})
    doctor.post(f"/leads/{lead_id}/screenings/{screening_id}/sign-off",
                data={"decision": "needs_more_information", "note": "Ask about blood pressure readings"})
    page = staff.post(f"/leads/{lead_id}/stage", data={"target": "eligible", "expected": "screening"},
                      follow_redirects=True).get_data(as_text=True)
    assert "sign-off of one needing review as eligible" in page
    with app.app_context():
        assert db.session.get(Lead, lead_id).stage == "screening"


@pytest.mark.parametrize("data,message", [
    ({"note": "fine"}, "Choose a decision."),
    ({"decision": "eligible", "note": ""}, "Write a note for the coordinator."),
    ({"decision": "not_eligible", "note": "no"}, "Choose why the patient is not eligible."),
])
def test_an_incomplete_sign_off_keeps_what_was_typed_and_changes_nothing(app, staff, doctor, make_lead, data,
                                                                         message):
    lead_id, screening_id = screened(app, staff, make_lead)
    response = doctor.post(f"/leads/{lead_id}/screenings/{screening_id}/sign-off", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and message in page.replace("&#39;", "'")
    if data.get("note"):
        assert f"\n{data['note']}</textarea>" in page
    with app.app_context():
        assert db.session.get(Screening, screening_id).signed_off_at is None
    assert audit_events(app, "screening_signed_off", object_id=lead_id) == []
