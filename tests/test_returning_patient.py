"""A returning patient keeps what they told us, and an anonymous enquiry can change nothing on their lead."""

from __future__ import annotations

import io
import json
import re

import pytest
from sqlalchemy import select

from crm.models import Enquiry, Insurance, InsuranceCard, Lead, LeadChange, LeadProposal, db
from tests import sentinels as s
from tests.auth_helpers import audit_events
from tests.test_public_form import PDF, PNG, submit

FULL_PREFERENCES = {"contact_method": "call", "best_time": "morning", "voicemail_ok": True, "text_ok": True}
SHORT = {"coverage_type": "not_sure", "carrier": "", "member_id": "", "group_number": "", "is_policyholder": None,
         "preferred_contact": None, "best_time": None, "voicemail_ok": None, "text_ok": None, "interest": "not_sure",
         "message": ""}
ATTACKER_EMAIL = "someone.else@example.net"


@pytest.fixture
def coordinator(make_user):
    return make_user(display_name="Casey Coordinator")


@pytest.fixture
def staff(app, coordinator, login_as):
    """A second client, signed in as a coordinator (the patient's client stays anonymous)."""
    client = app.test_client()
    login_as(client, coordinator)
    return client


def full_enquiry(client, app):
    """The first enquiry: PPO carrier, member ID, both card photos, every preference."""
    files = {"card_front": (io.BytesIO(PNG), "front.png", "image/png"),
             "card_back": (io.BytesIO(PDF), "back.pdf", "application/pdf")}
    assert submit(client, app, **files).status_code == 303
    return thanks_reference(client)


def thanks_reference(client) -> str:
    """The reference code the thank-you page shows."""
    page = client.get("/thanks").get_data(as_text=True)
    return re.search(r'<span class="reference">([A-Z0-9-]+)</span>', page).group(1)


def the_lead() -> Lead:
    return db.session.scalars(select(Lead)).one()


def test_short_second_enquiry_keeps_insurance_cards_and_preferences(client, app, staff):
    first = full_enquiry(client, app)
    assert submit(client, app, **SHORT).status_code == 303
    second = thanks_reference(client)
    with app.app_context():
        lead = the_lead()
        assert lead.preferences == FULL_PREFERENCES
        current = lead.current_insurance
        assert (current.coverage_type, current.carrier, current.member_id) == ("ppo", "Quillcarrier Mutual",
                                                                              s.MEMBER_ID)
        assert sorted(card.side for card in current.cards) == ["back", "front"]
        enquiries = db.session.scalars(select(Enquiry).order_by(Enquiry.received_at)).all()
        assert [e.reference for e in enquiries] == [first, second] and first == lead.reference
        assert enquiries[0].answers["coverage_type"] == "ppo" and enquiries[1].answers["coverage_type"] == "not_sure"
        insurances = {i.enquiry_id: i for i in db.session.scalars(select(Insurance))}
        assert insurances[enquiries[1].id].coverage_type == "not_sure" and not insurances[enquiries[1].id].cards
        lead_id = lead.id
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    contact = page[page.index('id="contact"'):page.index('id="attempt"')]
    assert "Contact by: Call" in contact and "Best time: Morning" in contact
    current_block = page[page.index('id="insurance-h"'):page.index('id="other-insurance"')]
    assert "Quillcarrier Mutual · PPO" in current_block and s.MEMBER_ID[-4:] in current_block
    assert "Not sure" in page[page.index('id="other-insurance"'):]
    assert "2 card image(s)" in page
    assert staff.post(f"/leads/{lead_id}/reveal").status_code == 302
    revealed = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    with app.app_context():
        for card_id in db.session.scalars(select(InsuranceCard.id)):
            assert f"/cards/{card_id}" in revealed
            assert staff.get(f"/leads/{lead_id}/cards/{card_id}").status_code == 200


def test_anonymous_enquiry_with_the_victims_phone_and_dob_changes_nothing(client, app, staff):
    first = full_enquiry(client, app)
    intruder = app.test_client()
    response = submit(intruder, app, phone="+1 949.555.0142", email=ATTACKER_EMAIL, preferred_contact="text",
                      best_time="evening", voicemail_ok=None, coverage_type="medicare", carrier="", member_id="",
                      group_number="", is_policyholder=None, marketing_consent="y", first_name="Mallory")
    assert response.status_code == 303
    intruder_code = thanks_reference(intruder)
    assert intruder_code != first
    with app.app_context():
        lead = the_lead()
        assert lead.reference == first and lead.email == s.EMAIL and lead.first_name == s.FIRST_NAME
        assert lead.preferences == FULL_PREFERENCES and not lead.marketing_consent
        assert lead.current_insurance.member_id == s.MEMBER_ID and lead.current_insurance.coverage_type == "ppo"
        proposal = db.session.scalars(select(LeadProposal)).one()
        assert proposal.status == "pending"
        assert proposal.values["email"] == ATTACKER_EMAIL and proposal.values["first_name"] == "Mallory"
        assert proposal.values["preferences"]["contact_method"] == "text"
        assert proposal.values["marketing_consent"] is True and "insurance_id" in proposal.values
        assert "phone" not in proposal.values  # the same number in another format is no new detail
        assert db.session.scalar(select(db.func.count(LeadChange.id))) == 0
        lead_id = lead.id
    received = audit_events(app, "enquiry_received")
    assert [json.loads(e.details)["returning"] for e in received] == [False, True]
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "New details from an unverified enquiry" in page and ATTACKER_EMAIL in page
    assert page.index("New details from an unverified enquiry") < page.index('id="contact"')


@pytest.mark.parametrize("typed", ["lower", "nodash"])
def test_search_finds_the_lead_by_any_of_its_codes(client, app, staff, typed):
    first = full_enquiry(client, app)
    assert submit(client, app, **SHORT).status_code == 303
    second = thanks_reference(client)
    with app.app_context():
        lead_id = the_lead().id
    for code in (first, second):
        query = code.lower() if typed == "lower" else code.replace("-", "")
        response = staff.post("/leads/search", data={"query": query})
        assert response.status_code == 302 and response.headers["Location"] == f"/leads/{lead_id}"


def test_accepting_a_proposal_makes_it_the_leads_and_indexes_follow(client, app, staff):
    full_enquiry(client, app)
    assert submit(app.test_client(), app, phone="(714) 555-0199", **SHORT).status_code == 303
    with app.app_context():
        lead, proposal = the_lead(), db.session.scalars(select(LeadProposal)).one()
        lead_id, proposal_id = lead.id, proposal.id
    # found by the e-mail it shares, never by the proposed phone until accepted
    assert staff.post("/leads/search", data={"query": "(714) 555-0199"}).headers["Location"] == "/leads/search"
    response = staff.post(f"/leads/{lead_id}/proposals/{proposal_id}/accept")
    assert response.status_code == 302
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert lead.phone == "(714) 555-0199" and lead.email == s.EMAIL
        assert db.session.get(LeadProposal, proposal_id).status == "accepted"
        changes = {c.field: c.old_value["value"] for c in db.session.scalars(select(LeadChange))}
        assert changes["phone"] == s.PHONE
    assert staff.post("/leads/search", data={"query": "714.555.0199"}).headers["Location"] == f"/leads/{lead_id}"
    [event] = audit_events(app, "proposal_accepted")
    assert json.loads(event.details)["fields"] == ["phone", "preferences"]
    assert staff.post(f"/leads/{lead_id}/proposals/{proposal_id}/dismiss").status_code == 302  # already settled
    with app.app_context():
        assert db.session.get(LeadProposal, proposal_id).status == "accepted"


def test_dismissing_a_proposal_leaves_the_lead_as_it_was(client, app, staff):
    full_enquiry(client, app)
    assert submit(app.test_client(), app, email=ATTACKER_EMAIL).status_code == 303
    with app.app_context():
        lead_id, proposal_id = the_lead().id, db.session.scalars(select(LeadProposal.id)).one()
    assert staff.post(f"/leads/{lead_id}/proposals/{proposal_id}/dismiss").status_code == 302
    with app.app_context():
        assert db.session.get(Lead, lead_id).email == s.EMAIL
        assert db.session.get(LeadProposal, proposal_id).status == "dismissed"
    assert len(audit_events(app, "proposal_dismissed", object_id=lead_id)) == 1
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Accept these details" not in page and "enquiry dismissed" in page


def test_a_later_insurance_becomes_current_only_when_a_coordinator_chooses_it(client, app, staff):
    full_enquiry(client, app)
    assert submit(client, app, coverage_type="medicare", carrier="", member_id="", group_number="",
                  is_policyholder=None).status_code == 303
    with app.app_context():
        lead = the_lead()
        later = next(i for i in lead.insurances if i.coverage_type == "medicare")
        lead_id, later_id = lead.id, later.id
    assert staff.post(f"/leads/{lead_id}/insurances/{later_id}/current").status_code == 302
    with app.app_context():
        assert db.session.get(Lead, lead_id).current_insurance.id == later_id
    assert [json.loads(e.details)["fields"] for e in audit_events(app, "lead_corrected")] == [["current_insurance"]]


def test_policyholder_details_are_shown_and_prefill_the_benefits_check(client, app, staff):
    assert submit(client, app, is_policyholder="no", policyholder_name="Orrin Quillfeather",
                  policyholder_dob="1951-07-30", policyholder_relationship="spouse").status_code == 303
    with app.app_context():
        lead_id = the_lead().id
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    facts = page[page.index('id="insurance-h"'):page.index('id="vob"')]
    assert "Orrin Quillfeather, born 1951-07-30 (Spouse or partner)" in facts
    vob = page[page.index('id="vob"'):]
    assert re.search(r'id="subscriber_name"[^>]*value="Orrin Quillfeather"', vob)
    assert re.search(r'id="subscriber_dob"[^>]*value="1951-07-30"', vob)
    assert re.search(r'<option selected value="spouse">|<option value="spouse" selected', vob)
