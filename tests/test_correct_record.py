"""Correcting a record: audited by field name only, old values encrypted behind an audited reveal, indexes follow."""

from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest
from sqlalchemy import select, text

from crm.models import Insurance, Lead, LeadChange, db
from tests import sentinels as s
from tests.auth_helpers import audit_events

NEW_VALUES = {
    "first_name": ("Zebulon", "first_name"),
    "last_name": ("Quillfether", "last_name"),
    "dob": ("1980-05-05", "dob"),
    "phone": ("(714) 555-0199", "phone"),
    "email": ("z.q@example.net", "email"),
    "zip_code": ("92620", "zip_code"),
    "best_time": ("evening", "preferences"),
    "carrier": ("Blue Shield", "insurance.carrier"),
    "member_id": ("NEWMEMBER77", "insurance.member_id"),
    "group_number": ("GRP-2", "insurance.group_number"),
    "coverage_type": ("epo", "insurance.coverage_type"),
}


@pytest.fixture
def coordinator(make_user):
    return make_user(display_name="Casey Coordinator")


@pytest.fixture
def staff(client, coordinator, login_as):
    login_as(client, coordinator)
    return client


@pytest.fixture
def lead_id(app, make_lead):
    lead_id = make_lead(first_name=s.FIRST_NAME, last_name=s.LAST_NAME, phone=s.PHONE, email=s.EMAIL,
                        dob=dt.date(1980, 5, 4), zip_code=s.ZIP_CODE,
                        preferences={"contact_method": "call", "best_time": "morning", "voicemail_ok": True,
                                     "text_ok": False})
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        with db.session.no_autoflush:
            db.session.add(Insurance(lead=lead, coverage_type="ppo", carrier="Aetna", member_id=s.MEMBER_ID,
                                     group_number=s.GROUP_NUMBER, patient_is_policyholder=True))
        db.session.commit()
    return lead_id


def form_of(staff, lead_id) -> dict:
    """The edit form as the page prefills it (checkboxes only when ticked)."""
    return _prefilled(staff.get(f"/leads/{lead_id}/edit").get_data(as_text=True))


def _prefilled(page: str) -> dict:
    data = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or name.group(1) == "csrf_token":
            continue
        value = re.search(r'value="([^"]*)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        if kind and kind.group(1) in ("radio", "checkbox"):
            if " checked" in tag:
                data[name.group(1)] = html.unescape(value.group(1)) if value else "y"
        else:
            data[name.group(1)] = html.unescape(value.group(1)) if value else ""
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option selected value="([^"]*)"|<option value="([^"]*)" selected', body)
        data[name] = next(g for g in chosen.groups() if g is not None) if chosen else ""
    return data


def test_edit_form_is_prefilled_and_opening_it_is_audited(app, staff, lead_id):
    data = form_of(staff, lead_id)
    assert data["first_name"] == s.FIRST_NAME and data["phone"] == s.PHONE and data["member_id"] == s.MEMBER_ID
    assert data["dob"] == "1980-05-04" and data["best_time"] == "morning" and data["is_policyholder"] == "yes"
    assert len(audit_events(app, "lead_edit_opened", object_id=lead_id)) == 1


@pytest.mark.parametrize("field", sorted(NEW_VALUES))
def test_each_field_change_is_audited_by_name_and_keeps_the_old_value_encrypted(app, staff, lead_id, field):
    data = form_of(staff, lead_id)
    value, stored_as = NEW_VALUES[field]
    data[field] = value
    response = staff.post(f"/leads/{lead_id}/edit", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    [event] = audit_events(app, "lead_corrected", object_id=lead_id)
    assert json.loads(event.details) == {"fields": [stored_as], "cause": "correction"}
    assert value not in event.details
    with app.app_context():
        change = db.session.scalars(select(LeadChange)).one()
        assert change.field == stored_as
        raw = db.session.execute(text("SELECT old_value_enc FROM lead_changes")).scalar_one()
        assert all(sentinel.encode() not in raw for sentinel in s.ALL)
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "changed by Casey Coordinator" in page


def test_old_value_is_shown_only_through_an_audited_reveal(app, staff, lead_id):
    data = form_of(staff, lead_id)
    data["phone"] = "(714) 555-0199"
    assert staff.post(f"/leads/{lead_id}/edit", data=data).status_code == 302
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Phone changed by Casey Coordinator" in page and s.PHONE not in page and "Show previous values" in page
    assert staff.get(f"/leads/{lead_id}/history").status_code == 405
    revealed = staff.post(f"/leads/{lead_id}/history")
    assert revealed.status_code == 200 and s.PHONE in revealed.get_data(as_text=True)
    with app.app_context():
        change_id = db.session.scalar(select(LeadChange.id))
    [event] = audit_events(app, "previous_values_revealed", object_id=lead_id)
    assert json.loads(event.details) == {"changes": [change_id]}


def test_search_finds_the_new_phone_and_not_the_old(app, staff, lead_id):
    data = form_of(staff, lead_id)
    data["phone"], data["email"] = "714.555.0199", "new.address@example.net"
    assert staff.post(f"/leads/{lead_id}/edit", data=data).status_code == 302
    assert staff.post("/leads/search", data={"query": "(714) 555-0199"}).headers["Location"] == f"/leads/{lead_id}"
    assert staff.post("/leads/search", data={"query": "NEW.ADDRESS@example.net"}).headers["Location"] == (
        f"/leads/{lead_id}")
    for old in (s.PHONE, s.EMAIL):
        assert staff.post("/leads/search", data={"query": old}).headers["Location"] == "/leads/search"


def test_invalid_correction_changes_nothing_and_keeps_what_was_typed(app, staff, lead_id):
    data = form_of(staff, lead_id)
    data.update(phone="12", first_name="Zebulon")
    response = staff.post(f"/leads/{lead_id}/edit", data=data)
    assert response.status_code == 200 and 'value="Zebulon"' in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Lead, lead_id).phone == s.PHONE
        assert db.session.scalar(select(db.func.count(LeadChange.id))) == 0


def test_saving_without_a_change_says_so(app, staff, lead_id):
    response = staff.post(f"/leads/{lead_id}/edit", data=form_of(staff, lead_id))
    assert response.status_code == 200 and "Nothing was changed." in response.get_data(as_text=True)
    assert audit_events(app, "lead_corrected") == []


def test_preferred_language_is_corrected_audited_by_name_and_the_list_filter_follows(app, staff, lead_id):
    data = form_of(staff, lead_id)
    assert data["preferred_language"] == ""  # recorded without one
    data["preferred_language"] = "es"
    assert staff.post(f"/leads/{lead_id}/edit", data=data).status_code == 302
    [event] = audit_events(app, "lead_corrected", object_id=lead_id)
    assert json.loads(event.details) == {"fields": ["preferred_language"], "cause": "correction"}
    with app.app_context():
        assert db.session.get(Lead, lead_id).preferred_language == "es"
        assert db.session.scalars(select(LeadChange.field)).all() == ["preferred_language"]
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Preferred language changed by Casey Coordinator" in page
    assert f"/leads/{lead_id}" in staff.get("/leads/?language=es").get_data(as_text=True)
    assert f"/leads/{lead_id}" not in staff.get("/leads/?language=vi").get_data(as_text=True)
    assert form_of(staff, lead_id)["preferred_language"] == "es"


@pytest.mark.parametrize("language", ["xx", ""], ids=["unknown", "blank"])
def test_a_language_outside_the_list_or_blank_changes_nothing(app, staff, lead_id, language):
    with app.app_context():
        db.session.get(Lead, lead_id).preferred_language = "vi"
        db.session.commit()
    data = {**form_of(staff, lead_id), "preferred_language": language}
    response = staff.post(f"/leads/{lead_id}/edit", data=data)
    assert response.status_code == 200
    with app.app_context():
        assert db.session.get(Lead, lead_id).preferred_language == "vi"
    assert audit_events(app, "lead_corrected") == []
