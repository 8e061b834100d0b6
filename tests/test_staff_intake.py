"""Leads from calls, referrals and VA Community Care: source details, verbal consent, the match screen."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import select

from crm.forms.intake import npi_is_valid
from crm.models import ConsentRecord, ContactAttempt, Enquiry, Lead, LeadEvent, Stage, db
from tests import sentinels as s
from tests.auth_helpers import audit_events

VALID_NPI = "1245319599"  # CMS's published example; check digit 9


@pytest.fixture
def coordinator(make_user):
    return make_user(display_name="Casey Coordinator")


@pytest.fixture
def staff(client, coordinator, login_as):
    login_as(client, coordinator)
    return client


def call_form(**overrides) -> dict:
    """A phone lead as a coordinator types it; ``None`` removes a field."""
    data = {
        "source": "phone", "first_name": s.FIRST_NAME, "last_name": s.LAST_NAME, "dob": "05/04/1980",
        "phone": s.PHONE, "email": s.EMAIL, "zip_code": s.ZIP_CODE, "preferred_contact": "call",
        "coverage_type": "ppo", "carrier": "Aetna", "member_id": s.MEMBER_ID, "is_policyholder": "yes",
        "verbal_consent": "y", "note": s.NOTE,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def errors_in(response) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="([^"]+)-error">([^<]+)</p>', response.get_data(as_text=True)))


def test_every_staff_page_offers_new_lead(staff):
    for path in ("/leads/home", "/leads/", "/leads/search"):
        assert 'href="/leads/new"' in staff.get(path).get_data(as_text=True)


def test_phone_lead_is_created_by_the_coordinator_with_verbal_consent(app, staff, coordinator):
    response = staff.post("/leads/new", data=call_form())
    assert response.status_code == 302
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        assert (lead.source, lead.created_by, lead.phone, lead.dob) == ("phone", coordinator.id, s.PHONE,
                                                                         dt.date(1980, 5, 4))
        assert lead.stage == Stage.CONTACTED and lead.first_contact_at is not None  # the call itself
        consent = db.session.scalars(select(ConsentRecord)).one()
        assert (consent.method, consent.wording_version, consent.taken_by) == ("verbal", "2026-12b", coordinator.id)
        assert db.session.scalar(select(db.func.count(Enquiry.id))) == 0  # never a web consent
        attempt = db.session.scalars(select(ContactAttempt)).one()
        assert (attempt.user_id, attempt.outcome, attempt.note) == (coordinator.id, "reached", s.NOTE)
        assert lead.current_insurance.member_id == s.MEMBER_ID
        lead_id = lead.id
    [created] = audit_events(app, "lead_created")
    assert (created.actor_kind, created.actor_id, created.object_id) == ("user", coordinator.id, lead_id)
    assert json.loads(created.details) == {"source": "phone", "verbal_consent": True, "possible_matches": []}


def test_lead_without_verbal_consent_records_none(app, staff):
    assert staff.post("/leads/new", data=call_form(verbal_consent=None)).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(db.func.count(ConsentRecord.id))) == 0


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"source": "referral"}, "referrer_name", "Enter the referring provider's name."),
    ({"source": "referral", "referrer_name": "Dr Ames"}, "referrer_npi", "Enter the referring provider's NPI."),
    ({"source": "referral", "referrer_name": "Dr Ames", "referrer_npi": "1245319598"}, "referrer_npi",
     "That NPI's check digit is wrong; check the number with the referrer."),
    ({"source": "referral", "referrer_name": "Dr Ames", "referrer_npi": "12453"}, "referrer_npi",
     "An NPI is 10 digits."),
    ({"source": "va_community_care"}, "va_referral_number", "Enter the VA referral or authorization number."),
    ({"source": "va_community_care", "va_referral_number": "VA0001234", "va_start": "2026-12-01"}, "va_end",
     "Enter the authorization's start and end dates."),
    ({"source": "va_community_care", "va_referral_number": "VA0001234", "va_start": "2026-12-01",
      "va_end": "2026-11-01"}, "va_end", "The authorization ends before it starts."),
    ({"phone": "555", "email": ""}, "phone", "Enter a phone number we can call, like (949) 555-0100."),
    ({"source": ""}, "source", "Choose where this lead came from."),
])
def test_each_source_requires_its_details(app, staff, overrides, field, message):
    response = staff.post("/leads/new", data=call_form(**overrides))
    assert response.status_code == 200
    assert errors_in(response).get(field) == message.replace("'", "&#39;")
    assert s.FIRST_NAME in response.get_data(as_text=True)  # what was typed is kept
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Lead.id))) == 0


def test_npi_check_digit():
    assert npi_is_valid(VALID_NPI) and npi_is_valid("1234567893")
    assert not npi_is_valid("1234567890") and not npi_is_valid("123456789") and not npi_is_valid("12345678a3")


def test_referral_and_va_details_are_stored_encrypted(app, staff):
    referral = call_form(source="referral", referrer_name="Dr Ames", referrer_practice="Ames Psychiatry",
                         referrer_phone="714-555-0100", referrer_npi=VALID_NPI, records_received="y")
    assert staff.post("/leads/new", data=referral).status_code == 302
    va = call_form(source="va_community_care", phone="(714) 555-0123", email="vet@example.org", last_name="Other",
                   va_referral_number="VA0009876543", va_authorized_services="Spravato induction",
                   va_start="12/01/2026", va_end="03/01/2027")
    assert staff.post("/leads/new", data=va).status_code == 302
    with app.app_context():
        leads = {lead.source: lead for lead in db.session.scalars(select(Lead))}
        assert leads["referral"].source_details == {
            "referrer_name": "Dr Ames", "referrer_practice": "Ames Psychiatry", "referrer_phone": "(714) 555-0100",
            "referrer_npi": VALID_NPI, "records_received": True}
        assert leads["va_community_care"].source_details["va_start"] == "2026-12-01"
        assert leads["va_community_care"].source_details["va_end"] == "2027-03-01"
        raw = db.session.execute(select(Lead.__table__.c.source_details_enc)).scalars().all()
        assert all(b"VA0009876543" not in blob and VALID_NPI.encode() not in blob for blob in raw)
        assert leads["referral"].stage == Stage.NEW  # nobody has spoken to a referred patient yet
        lead_id = leads["referral"].id
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Referrer&#39;s NPI" in page and VALID_NPI in page


@pytest.mark.parametrize("overrides", [
    {"phone": "+1 949.555.0142", "email": ""},
    {"phone": "", "email": s.EMAIL.upper(), "preferred_contact": "email"},
    {"phone": "(714) 555-0000", "email": "", "last_name": s.LAST_NAME.upper()},
], ids=["phone-in-another-format", "email-in-another-case", "name-and-dob"])
def test_possible_matches_are_shown_masked_before_creating(app, staff, make_lead, overrides):
    existing = make_lead(first_name=s.FIRST_NAME, last_name=s.LAST_NAME, phone=s.PHONE, email=s.EMAIL,
                         dob=dt.date(1980, 5, 4))
    response = staff.post("/leads/new", data=call_form(**overrides))
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "This person may already have a lead" in page
    matches = page[page.index('id="matches"'):page.index("</section>", page.index('id="matches"'))]
    assert f"{s.FIRST_NAME} Q." in matches and "•••-•••-0142" in matches and "New" in matches
    assert s.LAST_NAME not in matches and s.PHONE not in matches and s.EMAIL not in matches
    assert f"/leads/{existing}/calls" in matches
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Lead.id))) == 1
    [listed] = audit_events(app, "leads_listed")
    assert json.loads(listed.details) == {"view": "possible_matches", "leads": [existing]}


def test_creating_anyway_needs_a_reason(app, staff, make_lead):
    existing = make_lead(last_name=s.LAST_NAME, phone=s.PHONE, dob=dt.date(1980, 5, 4))
    again = staff.post("/leads/new", data=call_form(checked="1"))
    assert errors_in(again)["duplicate_reason"].startswith("Give a reason")
    response = staff.post("/leads/new", data=call_form(checked="1", duplicate_reason="Twin sister, same phone"))
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Lead.id))) == 2
        event = db.session.scalars(select(LeadEvent).where(LeadEvent.kind == "created_despite_match")).one()
        assert event.body == "Twin sister, same phone"
    [created] = audit_events(app, "lead_created")
    assert json.loads(created.details)["possible_matches"] == [existing]


def test_adding_the_call_to_the_existing_lead(app, staff, make_lead, coordinator):
    existing = make_lead(last_name=s.LAST_NAME, phone=s.PHONE, dob=dt.date(1980, 5, 4))
    response = staff.post(f"/leads/{existing}/calls", data={"note": s.NOTE, "verbal_consent": "y"})
    assert response.status_code == 302 and response.headers["Location"].startswith(f"/leads/{existing}")
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Lead.id))) == 1
        attempt = db.session.scalars(select(ContactAttempt)).one()
        assert (attempt.lead_id, attempt.outcome, attempt.note) == (existing, "reached", s.NOTE)
        assert db.session.scalars(select(ConsentRecord)).one().taken_by == coordinator.id
    [added] = audit_events(app, "call_added")
    assert (added.actor_id, json.loads(added.details)) == (coordinator.id, {"verbal_consent": True})


def test_new_lead_page_needs_sign_in(client):
    assert client.get("/leads/new").status_code == 302
    assert client.post("/leads/new", data=call_form()).status_code in (302, 400)
