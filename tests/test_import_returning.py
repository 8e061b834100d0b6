"""An imported row for someone who already has a lead behaves as a returning enquiry: the lead keeps its
details, and whatever differs becomes a proposal a coordinator accepts or dismisses."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text

from crm.models import ImportedRow, Insurance, Lead, LeadChange, LeadProposal, db
from tests import sentinels as s
from tests.auth_helpers import audit_events
from tests.test_import import HEADER, csv_text, run_cli
from tests.test_public_form import submit

FULL_PREFERENCES = {"contact_method": "call", "best_time": "morning", "voicemail_ok": True, "text_ok": True}
OTHER_EMAIL = "new.address@example.net"
OTHER_MEMBER = "NEWMEMBER4242"


@pytest.fixture
def staff(app, make_user, login_as):
    client = app.test_client()
    login_as(client, make_user(display_name="Casey Coordinator"))
    return client


@pytest.fixture
def lead_id(app, client) -> str:
    """The patient's own web enquiry: PPO, member ID, every contact preference."""
    assert submit(client, app).status_code == 303
    with app.app_context():
        return db.session.scalars(select(Lead.id)).one()


def row(first: str = s.FIRST_NAME, phone: str = "949.555.0142", email: str = OTHER_EMAIL, zip_code: str = "92618",
        coverage: tuple[str, str, str] = ("Medicare", "", "")) -> list[str]:
    """The patient as a referral partner's file has them (the same phone in another format, US date)."""
    return [first, s.LAST_NAME, s.DOB_US, phone, email, zip_code, *coverage, "Dr Ames", "1245319599"]


def test_an_attached_row_changes_nothing_on_the_lead_and_proposes_what_differs(app, runner, tmp_path, lead_id,
                                                                               staff):
    result = run_cli(runner, tmp_path, csv_text([row(first="Zeb", coverage=("PPO", "Cigna", OTHER_MEMBER))]))
    assert "1 rows: 0 created, 1 attached" in result.output, result.output
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert (lead.first_name, lead.email, lead.zip_code) == (s.FIRST_NAME, s.EMAIL, s.ZIP_CODE)
        assert lead.preferences == FULL_PREFERENCES
        assert lead.current_insurance.member_id == s.MEMBER_ID
        assert db.session.scalar(select(func.count(LeadChange.id))) == 0
        proposal = db.session.scalars(select(LeadProposal)).one()
        assert (proposal.status, proposal.origin, proposal.enquiry_id) == ("pending", "import", None)
        values = proposal.values
        assert {k: values[k] for k in ("first_name", "email", "zip_code")} == {
            "first_name": "Zeb", "email": OTHER_EMAIL, "zip_code": "92618"}
        assert "phone" not in values and "last_name" not in values  # the same, however written
        imported = db.session.get(Insurance, values["insurance_id"])
        assert imported.lead_id == lead_id and imported.member_id == OTHER_MEMBER
        assert lead.current_insurance_id != imported.id
        raw = db.session.execute(text("SELECT values_enc FROM lead_proposals")).scalar_one()
        assert OTHER_EMAIL.encode() not in raw and OTHER_MEMBER.encode() not in raw
    [event] = audit_events(app, "leads_imported")
    assert json.loads(event.details)["proposals"] == 1 and OTHER_EMAIL not in event.details
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "New details from an import" in page and OTHER_EMAIL in page
    assert "New details from an unverified enquiry" not in page


def test_accepting_an_imported_proposal_makes_the_details_the_leads(app, runner, tmp_path, lead_id, staff):
    run_cli(runner, tmp_path, csv_text([row()]))
    with app.app_context():
        proposal = db.session.scalars(select(LeadProposal)).one()
        proposal_id, insurance_id = proposal.id, proposal.values["insurance_id"]
    assert staff.post(f"/leads/{lead_id}/proposals/{proposal_id}/accept").status_code == 302
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert (lead.email, lead.zip_code, lead.current_insurance_id) == (OTHER_EMAIL, "92618", insurance_id)
        assert db.session.get(LeadProposal, proposal_id).status == "accepted"
    assert staff.post("/leads/search", data={"query": OTHER_EMAIL}).headers["Location"] == f"/leads/{lead_id}"


def test_dismissing_an_imported_proposal_leaves_the_lead_as_it_was(app, runner, tmp_path, lead_id, staff):
    run_cli(runner, tmp_path, csv_text([row()]))
    with app.app_context():
        proposal_id = db.session.scalars(select(LeadProposal.id)).one()
    assert staff.post(f"/leads/{lead_id}/proposals/{proposal_id}/dismiss").status_code == 302
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert (lead.email, lead.zip_code, lead.current_insurance.member_id) == (s.EMAIL, s.ZIP_CODE, s.MEMBER_ID)
        assert db.session.get(LeadProposal, proposal_id).status == "dismissed"


def test_a_row_with_nothing_new_proposes_nothing_and_a_reimport_adds_nothing(app, runner, tmp_path, lead_id):
    same = [s.FIRST_NAME, s.LAST_NAME, s.DOB, s.PHONE, s.EMAIL.upper(), s.ZIP_CODE, "", "", "", "", ""]
    content = csv_text([same, row()])
    assert "2 rows: 0 created, 2 attached" in run_cli(runner, tmp_path, content).output
    again = run_cli(runner, tmp_path, content)
    assert "2 rows: 0 created, 0 attached to existing leads, 2 already imported" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count(LeadProposal.id))) == 1  # only the row with new details
        assert db.session.scalar(select(func.count(Insurance.id))) == 2  # the enquiry's and the second row's


def test_a_repeat_within_the_file_is_proposed_to_the_lead_the_file_created(app, runner, tmp_path):
    first = ["Ann", "Bee", "1980-01-01", "(949) 555-7101", "", "92618", "self pay", "", "", "", ""]
    repeat = ["Ann", "Bee", "01/01/1980", "949-555-7101", "ann.bee@example.net", "92620", "self pay", "", "", "", ""]
    later = [[f"Other{n}", "Person", "1970-02-02", f"(714) 555-{7200 + n}", "", "", "", "", "", "", ""]
             for n in range(5)]
    result = run_cli(runner, tmp_path, csv_text([first, *later, repeat]), "--batch-size", "3")
    assert "7 rows: 6 created, 1 attached" in result.output, result.output
    with app.app_context():
        lead = db.session.scalars(select(Lead).where(Lead.first_name_enc.is_not(None))).all()
        ann = next(one for one in lead if one.first_name == "Ann")
        assert (ann.zip_code, ann.email) == ("92618", None)
        proposal = db.session.scalars(select(LeadProposal)).one()
        assert proposal.lead_id == ann.id
        assert {k: proposal.values[k] for k in ("email", "zip_code")} == {"email": "ann.bee@example.net",
                                                                         "zip_code": "92620"}
        assert set(db.session.scalars(select(ImportedRow.lead_id))) >= {ann.id}


def test_a_dry_run_counts_attachments_and_writes_nothing(app, runner, tmp_path, lead_id):
    result = run_cli(runner, tmp_path, csv_text([row(), row(email="third@example.net")], HEADER), "--dry-run")
    assert "2 rows: 0 would be created, 2 would be attached" in result.output, result.output
    with app.app_context():
        assert db.session.scalar(select(func.count(LeadProposal.id))) == 0
        assert db.session.scalar(select(func.count(ImportedRow.digest))) == 0
