"""Coordinator workspace over HTTP: queues, list, search, detail, actions, audit and masking."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest
import time_machine
from sqlalchemy import event, func, select, update

from crm.models import (
    AuditEvent,
    Callback,
    ContactAttempt,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    Role,
    Screening,
    db,
)
from tests import sentinels
from tests.auth_helpers import audit_events
from tests.screening import PASSING

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

SCREEN_ELIGIBLE = {  # the screening form's fields, as a browser posts them
    **{name: str(answer) for name, answer in PASSING.items()},
    **{f"phq9_{i}": "2" for i in range(8)}, "phq9_8": "0",  # 16: moderately severe
    "cssrs_q1": "no", "cssrs_q2": "no", "cssrs_q6": "no",
}


def load(app, lead_id: str) -> dict:
    """Plain facts about a stored lead."""
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        return {c: getattr(lead, c) for c in ("stage", "stage_reason", "urgent", "acknowledged_by", "assignee_id",
                                               "attempt_count", "first_attempt_at", "first_contact_at",
                                               "next_callback_at")}


@pytest.fixture
def coordinator(make_user):
    return make_user(display_name="Casey Coordinator")


@pytest.fixture
def staff(client, coordinator, login_as):
    """A client signed in as a coordinator."""
    login_as(client, coordinator)
    return client


@pytest.fixture
def sentinel_lead(app, make_lead):
    """A lead carrying the PHI sentinels, with insurance and a card image."""
    lead_id = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, phone=sentinels.PHONE,
                        email=sentinels.EMAIL, dob=dt.date(1980, 5, 4), zip_code=sentinels.ZIP_CODE)
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        with db.session.no_autoflush:
            insurance = Insurance(lead=lead, coverage_type="ppo", carrier="Aetna", member_id=sentinels.MEMBER_ID,
                                  group_number=sentinels.GROUP_NUMBER)
            db.session.add(insurance)
            db.session.add(InsuranceCard(insurance=insurance, side="front", media_type="image/png", size=len(PNG),
                                         content=PNG))
        db.session.commit()
    return lead_id


# --- access -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/leads/{id}", "/leads/{id}/cards/{other}"])
def test_random_lead_id_is_404(staff, path):
    response = staff.get(path.format(id=uuid.uuid4(), other=uuid.uuid4()))
    assert response.status_code == 404


@pytest.mark.parametrize("action", ["claim", "attempts", "notes", "stage", "reveal", "acknowledge", "insurance",
                                    "screenings", "callbacks", "assign"])
def test_actions_on_random_lead_are_404(staff, action):
    assert staff.post(f"/leads/{uuid.uuid4()}/{action}", data={}).status_code == 404


def test_foreign_ids_are_404(app, staff, coordinator, sentinel_lead, make_lead):
    other = make_lead()
    with app.app_context():
        card_id = db.session.scalar(select(InsuranceCard.id))
    assert staff.get(f"/leads/{coordinator.id}").status_code == 404  # a user's id is not a lead's
    staff.post(f"/leads/{sentinel_lead}/reveal")
    assert staff.get(f"/leads/{other}/cards/{card_id}").status_code == 404  # card of another lead
    assert staff.post(f"/leads/{other}/screenings/{uuid.uuid4()}/sign-off").status_code == 404
    assert staff.get("/leads/not-a-uuid").status_code == 404


def test_pages_need_sign_in(client, make_lead):
    lead_id = make_lead()
    for path in ("/leads/home", "/leads/", f"/leads/{lead_id}"):
        assert client.get(path).status_code == 302


# --- home, list and search -------------------------------------------------------------


def test_home_orders_urgent_first_and_shows_queues(app, staff, coordinator, make_lead):
    urgent = make_lead(first_name="Urgent", last_name="Person", urgent=True)
    make_lead(first_name="Calm", last_name="Person")
    later = make_lead(first_name="Later", last_name="Caller", assignee_id=coordinator.id, stage="contacting")
    overdue = make_lead(first_name="Over", last_name="Due", stage="contacting")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with app.app_context():
        db.session.add(Callback(lead_id=later, assignee_id=coordinator.id, due_at=now + dt.timedelta(minutes=5)))
        db.session.add(Callback(lead_id=overdue, assignee_id=coordinator.id, due_at=now - dt.timedelta(hours=2)))
        db.session.commit()
    html = staff.get("/leads/home").get_data(as_text=True)
    assert html.index("Urgent P.") < html.index("My callbacks due today") < html.index("Later C.")
    assert html.index("Overdue callbacks") < html.index("Over D.") < html.index("New, unassigned")
    assert html.index("New, unassigned") < html.index("Calm P.")
    assert 'class="count">1</span> Contacting' not in html and 'class="count">2</span> Contacting' in html
    assert urgent in html


def test_home_shows_speed_to_lead(app, staff, make_lead):
    created = dt.datetime(2026, 3, 2, 17, 0)
    make_lead(first_name="Fast", last_name="One", created_at=created, urgent=True,
              first_attempt_at=created + dt.timedelta(minutes=4))
    html = staff.get("/leads/home").get_data(as_text=True)
    assert ">4m<" in html


def test_lists_never_show_full_phone_or_member_id(staff, sentinel_lead):
    pages = [staff.get("/leads/home"), staff.get("/leads/"), staff.get("/leads/?stage=new")]
    staff.post("/leads/search", data={"query": sentinels.EMAIL.upper()})
    for html in [p.get_data(as_text=True) for p in pages]:
        assert f"{sentinels.FIRST_NAME} Q." in html
        for value in (sentinels.PHONE, sentinels.PHONE_DIGITS, "555-0142", sentinels.MEMBER_ID, sentinels.LAST_NAME,
                      sentinels.EMAIL, sentinels.GROUP_NUMBER):
            assert value not in html
        assert "•••-•••-0142" in html


def test_list_filters_sort_and_pages(app, staff, coordinator, make_lead, config):
    app.config["LEADS_PAGE_SIZE"] = 2
    base = dt.datetime(2026, 1, 10, 20, 0)
    for day, (stage, source) in enumerate([("new", "web_form"), ("contacting", "phone"), ("new", "referral")]):
        make_lead(first_name=f"L{day}", last_name="X", stage=stage, source=source,
                  created_at=base + dt.timedelta(days=day), assignee_id=coordinator.id if day == 1 else None)
    assert _names(staff.get("/leads/")) == ["L2 X.", "L1 X."]
    assert "Next" in staff.get("/leads/").get_data(as_text=True)
    assert _names(staff.get("/leads/?page=2")) == ["L0 X."]
    assert _names(staff.get("/leads/?sort=oldest")) == ["L0 X.", "L1 X."]
    assert _names(staff.get("/leads/?stage=new")) == ["L2 X.", "L0 X."]
    assert _names(staff.get("/leads/?assignee=me")) == ["L1 X."]
    assert _names(staff.get("/leads/?assignee=none&source=referral")) == ["L2 X."]
    # 2026-01-11 20:00 UTC is noon on Jan 11 in Los Angeles; the 12th's lead is 12:00 Jan 12 local.
    assert _names(staff.get("/leads/?created_from=2026-01-11&created_to=2026-01-11")) == ["L1 X."]
    assert _names(staff.get("/leads/?urgency=urgent")) == []


def _names(response) -> list[str]:
    html = response.get_data(as_text=True)
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [cell.split(">", 1)[1].split("<")[0] for cell in body.split('<td><a href="/leads/')[1:]]


@pytest.mark.parametrize("query,dob", [
    ("(949) 555-0142", ""), ("949.555.0142", ""), ("+1 949 555 0142", ""), ("9495550142", ""),
    ("  ZEBULONIA.Quillfeather@Example.ORG ", ""),
    ("quillfeather", "05/04/1980"), ("QUILLFEATHER", "1980-05-04"), ("Quillfeather", "5/4/80"),
    ("Quillfeather", "May 4, 1980"),
])
def test_search_finds_lead_in_any_common_format(staff, sentinel_lead, make_lead, query, dob):
    make_lead(phone="(949) 555-0199", email="other@example.org", last_name="Quillfeather", dob=dt.date(1981, 5, 4))
    response = staff.post("/leads/search", data={"query": query, "dob": dob})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/leads/{sentinel_lead}"
    assert sentinels.PHONE_DIGITS not in response.headers["Location"]


def test_search_with_several_hits_shows_results_by_get(staff, make_lead):
    first = make_lead(phone="949-555-0111", first_name="Ann")
    second = make_lead(phone="(949) 555 0111", first_name="Bea")
    response = staff.post("/leads/search", data={"query": "9495550111"})
    assert response.headers["Location"] == "/leads/search"
    html = staff.get("/leads/search").get_data(as_text=True)
    assert first in html and second in html and "555-0111" not in html


def test_search_results_show_once_and_a_later_visit_lists_and_audits_nothing(app, staff, make_lead):
    first = make_lead(phone="949-555-0112")
    second = make_lead(phone="(949) 555 0112")
    staff.post("/leads/search", data={"query": "9495550112"})
    assert first in staff.get("/leads/search").get_data(as_text=True)
    listed = len(audit_events(app, "leads_listed"))
    later = staff.get("/leads/search").get_data(as_text=True)
    assert first not in later and second not in later
    assert len(audit_events(app, "leads_listed")) == listed


def test_search_without_match_or_kind(staff, make_lead):
    make_lead(phone="949-555-0111")
    response = staff.post("/leads/search", data={"query": "949-555-0999"}, follow_redirects=True)
    assert "No lead matches that search." in response.get_data(as_text=True)
    response = staff.post("/leads/search", data={"query": "Smith"})
    assert response.status_code == 200
    assert "last name with a date of birth" in response.get_data(as_text=True)


def test_search_is_post_only_for_identifiers(app, staff, sentinel_lead, caplog):
    staff.post("/leads/search", data={"query": sentinels.PHONE})
    assert sentinels.PHONE_DIGITS not in caplog.text and sentinels.PHONE not in caplog.text


# --- detail and reveal -----------------------------------------------------------------


def test_detail_is_audited_and_masks_member_id(app, staff, sentinel_lead):
    response = staff.get(f"/leads/{sentinel_lead}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'href="tel:+19495550142"' in html
    assert sentinels.MEMBER_ID not in html and sentinels.GROUP_NUMBER not in html
    assert "••••••••4321" in html
    assert "/cards/" not in html
    assert len(audit_events(app, "lead_viewed", object_id=sentinel_lead)) == 1


def test_reveal_is_a_post_that_is_audited_then_shows_member_id_and_card(app, staff, sentinel_lead):
    assert staff.get(f"/leads/{sentinel_lead}/reveal").status_code == 405
    with app.app_context():
        card_id = db.session.scalar(select(InsuranceCard.id))
    assert staff.get(f"/leads/{sentinel_lead}/cards/{card_id}").status_code == 403
    response = staff.post(f"/leads/{sentinel_lead}/reveal")
    assert response.status_code == 302
    [event] = audit_events(app, "field_revealed", object_id=sentinel_lead)
    assert json.loads(event.details) == {"fields": ["member_id", "group_number", "cards"]}
    html = staff.get(f"/leads/{sentinel_lead}").get_data(as_text=True)
    assert sentinels.MEMBER_ID in html and f"/cards/{card_id}" in html
    image = staff.get(f"/leads/{sentinel_lead}/cards/{card_id}")
    assert image.data == PNG and image.mimetype == "image/png"
    assert "no-store" in image.headers["Cache-Control"]
    assert len(audit_events(app, "card_viewed", object_id=sentinel_lead)) == 1


def test_reveal_expires(app, staff, sentinel_lead):
    staff.post(f"/leads/{sentinel_lead}/reveal")
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)):
        html = staff.get(f"/leads/{sentinel_lead}").get_data(as_text=True)
    assert sentinels.MEMBER_ID not in html


def test_tampered_field_shows_unreadable_and_is_audited(app, staff, sentinel_lead, make_lead):
    other = make_lead(phone="(949) 555-0100")
    with app.app_context():
        stolen = db.session.scalar(select(Lead.phone_enc).where(Lead.id == other))
        db.session.execute(update(Lead).where(Lead.id == sentinel_lead).values(phone_enc=stolen))
        db.session.commit()
    response = staff.get(f"/leads/{sentinel_lead}")
    assert response.status_code == 200
    assert "unreadable" in response.get_data(as_text=True)
    [event] = audit_events(app, "decrypt_failed", object_id=sentinel_lead)
    assert json.loads(event.details) == {"fields": ["leads.phone"]}
    assert "unreadable" in staff.get("/leads/").get_data(as_text=True)
    assert len(audit_events(app, "decrypt_failed", object_id=sentinel_lead)) == 2


# --- actions ---------------------------------------------------------------------------


def test_claim_and_assign_are_audited(app, staff, coordinator, make_user, make_lead):
    lead_id = make_lead()
    other = make_user(display_name="Other Coordinator")
    assert staff.post(f"/leads/{lead_id}/claim").status_code == 302
    assert load(app, lead_id)["assignee_id"] == coordinator.id
    response = staff.post(f"/leads/{lead_id}/assign", data={"assignee": other.id})
    assert response.status_code == 302
    assert load(app, lead_id)["assignee_id"] == other.id
    events = audit_events(app, "lead_assigned", object_id=lead_id)
    assert [json.loads(e.details)["assignee"] for e in events] == [coordinator.id, other.id]
    refused = staff.post(f"/leads/{lead_id}/claim", follow_redirects=True)
    assert "Another coordinator has this lead" in refused.get_data(as_text=True)
    assert load(app, lead_id)["assignee_id"] == other.id


def test_log_attempts_moves_stage_and_is_audited(app, staff, make_lead):
    lead_id = make_lead()
    staff.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "no_answer", "note": sentinels.NOTE})
    facts = load(app, lead_id)
    assert facts["stage"] == "contacting" and facts["attempt_count"] == 1 and facts["first_attempt_at"]
    staff.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "reached", "confirm_repeat": "y"})
    facts = load(app, lead_id)
    assert facts["stage"] == "contacted" and facts["first_contact_at"] and facts["attempt_count"] == 2
    assert [json.loads(e.details)["outcome"] for e in audit_events(app, "attempt_logged", object_id=lead_id)] == [
        "no_answer", "reached"]
    assert len(audit_events(app, "stage_changed", object_id=lead_id)) == 2
    with app.app_context():
        raw = db.session.scalar(select(ContactAttempt.note_enc).where(ContactAttempt.note_enc.is_not(None)))
        assert sentinels.NOTE.encode() not in bytes(raw)
    assert sentinels.NOTE in staff.get(f"/leads/{lead_id}").get_data(as_text=True)


def test_invalid_attempt_rerenders_with_error(staff, make_lead):
    lead_id = make_lead()
    response = staff.post(f"/leads/{lead_id}/attempts", data={"channel": "carrier_pigeon", "outcome": "reached"})
    assert response.status_code == 200
    assert "Not a valid choice" in response.get_data(as_text=True)


def test_cadence_exhausted_prompts(app, staff, make_lead):
    lead_id = make_lead()
    for _ in range(6):
        response = staff.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "voicemail_left",
                                                                   "confirm_repeat": "y"}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "Contact cadence exhausted" in html and "Move to unreachable" in html
    assert load(app, lead_id)["stage"] == "contacting"
    staff.post(f"/leads/{lead_id}/stage", data={"target": "unreachable", "reason": "cadence_exhausted",
                                                "expected": "contacting"})
    assert load(app, lead_id)["stage"] == "unreachable"


def test_cadence_exhausted_can_move_automatically(app, staff, make_lead, monkeypatch):
    from crm import cadence

    monkeypatch.setitem(cadence.RULES, "on_exhausted", "unreachable")
    lead_id = make_lead()
    for _ in range(6):
        staff.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "no_answer",
                                                       "confirm_repeat": "y"})
    assert load(app, lead_id)["stage"] == "unreachable"
    assert load(app, lead_id)["stage_reason"] == "cadence_exhausted"


@time_machine.travel(dt.datetime(2026, 3, 2, 17, 0, tzinfo=dt.UTC), tick=False)
def test_schedule_callback_in_clinic_time_and_suggests_cadence(app, client, coordinator, login_as, make_lead):
    staff = client
    login_as(staff, coordinator)
    lead_id = make_lead(created_at=dt.datetime(2026, 3, 2, 16, 58))
    html = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert 'value="2026-03-02T09:03"' in html  # 16:58 UTC + 5 min = 09:03 in Los Angeles
    response = staff.post(f"/leads/{lead_id}/callbacks", data={"due_at": "2026-03-03T10:30"})
    assert response.status_code == 302
    assert load(app, lead_id)["next_callback_at"] == dt.datetime(2026, 3, 3, 18, 30)
    assert len(audit_events(app, "callback_scheduled", object_id=lead_id)) == 1
    refused = staff.post(f"/leads/{lead_id}/callbacks", data={"due_at": "2026-03-01T10:30"}, follow_redirects=True)
    assert "in the future" in refused.get_data(as_text=True)


def test_acknowledge_urgent_records_who_and_when(app, staff, coordinator, make_lead):
    lead_id = make_lead(urgent=True)
    staff.post(f"/leads/{lead_id}/acknowledge")
    facts = load(app, lead_id)
    assert facts["acknowledged_by"] == coordinator.id
    assert len(audit_events(app, "urgent_acknowledged", object_id=lead_id)) == 1
    assert "Acknowledged by <strong>Casey Coordinator</strong>" in staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "already acknowledged" in staff.post(f"/leads/{lead_id}/acknowledge", follow_redirects=True).get_data(
        as_text=True)


def test_note_is_encrypted_and_audited_without_text(app, staff, make_lead):
    lead_id = make_lead()
    staff.post(f"/leads/{lead_id}/notes", data={"body": sentinels.NOTE})
    [event] = audit_events(app, "note_added", object_id=lead_id)
    assert sentinels.NOTE not in event.details
    with app.app_context():
        raw = db.session.scalar(select(LeadEvent.body_enc).where(LeadEvent.kind == "note"))
        assert sentinels.NOTE.encode() not in bytes(raw)


@pytest.mark.parametrize("stage,data,allowed", [
    ("new", {"target": "contacted"}, True),
    ("new", {"target": "eligible"}, False),
    ("new", {"target": "closed"}, False),
    ("new", {"target": "closed", "reason": "cost"}, True),
    ("new", {"target": "closed", "reason": "under_18"}, False),
    ("closed", {"target": "contacting"}, False),
    ("closed", {"target": "contacting", "reason": "patient_returned"}, True),
    ("converted", {"target": "closed", "reason": "cost"}, False),
])
def test_stage_moves_are_enforced_on_the_server(app, staff, make_lead, stage, data, allowed):
    lead_id = make_lead(stage=stage)
    staff.post(f"/leads/{lead_id}/stage", data={**data, "expected": stage})
    assert load(app, lead_id)["stage"] == (data["target"] if allowed else stage)
    assert len(audit_events(app, "stage_changed", object_id=lead_id)) == (1 if allowed else 0)


def test_stale_stage_form_is_refused(app, staff, make_lead):
    lead_id = make_lead(stage="contacting")
    response = staff.post(f"/leads/{lead_id}/stage", data={"target": "contacted", "expected": "new"},
                          follow_redirects=True)
    assert "changed stage meanwhile" in response.get_data(as_text=True)


@time_machine.travel(dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC), tick=False)  # still May 31 in the clinic
def test_age_counts_birthdays_on_the_clinics_date_not_the_servers(client, coordinator, login_as, make_lead):
    staff = client
    login_as(staff, coordinator)
    lead_id = make_lead(dob=dt.date(2008, 6, 1))
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "06/01/2008 (age 17)" in page


def test_lead_page_reads_the_staff_list_and_the_callbacks_once(app, staff, sentinel_lead):
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda _conn, _cursor, statement, *_args: statements.append(" ".join(statement.split()))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert staff.get(f"/leads/{sentinel_lead}").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    staff_lists = [s for s in statements if re.search(r"FROM users$", s)]
    callback_reads = [s for s in statements if "FROM callbacks" in s]
    assert (len(staff_lists), len(callback_reads)) == (1, 1)


def test_a_page_decrypts_each_field_once_and_records_a_failure_once(app, make_lead, monkeypatch):
    from crm import crypto
    from crm.leads.present import UNREADABLE, Reader

    lead_id = make_lead(first_name="Once")
    calls = []
    real_decrypt = crypto.FieldCipher.decrypt

    def counted(cipher, *args):
        calls.append(args)
        return real_decrypt(cipher, *args)

    monkeypatch.setattr(crypto.FieldCipher, "decrypt", counted)
    with app.app_context():
        lead, reader = db.session.get(Lead, lead_id), Reader()
        assert [reader.get(lead, "first_name", lead_id) for _ in range(3)] == ["Once"] * 3
        assert len(calls) == 1
        lead.__dict__["last_name_enc"] = b"\x01" + bytes(40)  # as if the stored bytes were damaged
        assert [reader.get(lead, "last_name", lead_id) for _ in range(2)] == [UNREADABLE] * 2
        assert reader.failed == {lead_id: ["leads.last_name"]}


# --- verification of benefits ----------------------------------------------------------


def test_vob_records_fields_and_pa(app, staff, sentinel_lead):
    data = {"carrier": "Aetna", "coverage_type": "ppo", "vob_status": "verified",
            "vob_outcome": "in_network_pa_required",
            "network_clinic": "in", "inn_deductible": "1500", "inn_deductible_met": "200", "inn_coinsurance": "20",
            "spravato_benefit": "medical", "codes_verified": ["J0013", "G2083"], "method": "phone",
            "reference_number": "REF-123", "rep_name": "Pat", "subscriber_relationship": "self",
            "pa_status": "submitted"}
    response = staff.post(f"/leads/{sentinel_lead}/insurance", data=data)
    assert response.status_code == 302
    with app.app_context():
        insurance = db.session.scalar(select(Insurance))
        assert insurance.vob_status == "verified" and insurance.verified_at and insurance.pa_status == "submitted"
        assert insurance.member_id == sentinels.MEMBER_ID  # blank keeps the stored one
        assert insurance.benefits["codes_verified"] == ["J0013", "G2083"]
        assert insurance.benefits["inn_deductible"] == "1500.00" and insurance.benefits["reference_number"] == "REF-123"
        assert insurance.patient_is_policyholder is True
    [event] = audit_events(app, "vob_recorded", object_id=sentinel_lead)
    assert json.loads(event.details)["vob_status"] == "verified"
    approved = {**data, "pa_status": "approved", "pa_auth_number": "AUTH-9", "pa_units": "8",
                "pa_start": "2026-03-01", "pa_end": "2026-08-31"}
    staff.post(f"/leads/{sentinel_lead}/insurance", data=approved)
    with app.app_context():
        insurance = db.session.scalar(select(Insurance))
        assert (insurance.pa_status, insurance.pa_units, insurance.pa_auth_number) == ("approved", 8, "AUTH-9")
        assert insurance.pa_end == dt.date(2026, 8, 31)


@pytest.mark.parametrize("change,message", [
    ({"vob_outcome": ""}, "Choose an outcome"),
    ({"pa_status": "approved"}, "cannot move to that status"),
])
def test_vob_rules_are_refused(app, staff, sentinel_lead, change, message):
    data = {"coverage_type": "ppo", "vob_status": "verified", "vob_outcome": "in_network_no_pa", **change}
    response = staff.post(f"/leads/{sentinel_lead}/insurance", data=data, follow_redirects=True)
    assert message in response.get_data(as_text=True)
    assert audit_events(app, "vob_recorded") == []


def test_vob_field_errors_show_on_the_open_form_and_store_nothing(app, staff, sentinel_lead):
    data = {"coverage_type": "ppo", "vob_status": "verified", "vob_outcome": "in_network_no_pa",
            "inn_coinsurance": "150", "reference_number": "REF-777"}
    response = staff.post(f"/leads/{sentinel_lead}/insurance", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r'<details id="vob"\s+open', page) and "Number must be between 0 and 100" in page
    assert 'value="REF-777"' in page
    assert audit_events(app, "vob_recorded") == []
    with app.app_context():
        assert db.session.scalar(select(Insurance)).vob_status != "verified"


def test_approved_pa_needs_number_units_and_dates(staff, sentinel_lead):
    base = {"coverage_type": "ppo", "vob_status": "in_progress"}
    staff.post(f"/leads/{sentinel_lead}/insurance", data={**base, "pa_status": "submitted"})
    response = staff.post(f"/leads/{sentinel_lead}/insurance", data={**base, "pa_status": "approved"},
                          follow_redirects=True)
    assert "needs its number, units" in response.get_data(as_text=True)


# --- screening -------------------------------------------------------------------------


def test_screening_eligible_is_recorded_and_audited(app, staff, make_lead):
    lead_id = make_lead()
    response = staff.post(f"/leads/{lead_id}/screenings", data=SCREEN_ELIGIBLE, follow_redirects=True)
    assert "Screening recorded: eligible." in response.get_data(as_text=True)
    with app.app_context():
        screening = db.session.scalar(select(Screening))
        assert screening.outcome == "eligible" and screening.result["phq9_band"] == "moderately_severe"
    assert len(audit_events(app, "screening_recorded", object_id=lead_id)) == 1
    assert audit_events(app, "crisis_escalated") == []


def selected(html: str, name: str) -> str | None:
    """The selected option's value of the select named ``name``."""
    select_html = re.search(rf'<select[^>]*name="{name}".*?</select>', html, re.S).group(0)
    chosen = re.search(r'<option selected value="([^"]*)"|<option value="([^"]*)" selected', select_html)
    return next(value for value in chosen.groups() if value is not None) if chosen else None


def test_ineligible_screen_prefills_the_move_to_ineligible_with_its_reason(app, staff, make_lead):
    lead_id = make_lead(stage="screening")
    before = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert selected(before, "target") in (None, "")
    html = staff.post(f"/leads/{lead_id}/screenings", data={**SCREEN_ELIGIBLE, "transport": "no"},
                      follow_redirects=True).get_data(as_text=True)
    assert selected(html, "target") == "ineligible" and selected(html, "reason") == "no_transport"
    assert load(app, lead_id)["stage"] == "screening"  # a suggestion only: the coordinator still moves it


def test_high_risk_marks_urgent_escalates_and_shows_steps(app, staff, make_lead):
    lead_id = make_lead(urgent=True, acknowledged_at=dt.datetime(2026, 1, 1))
    data = {**SCREEN_ELIGIBLE, "phq9_8": "2", "cssrs_q2": "yes", "cssrs_q3": "yes", "cssrs_q4": "yes",
            "cssrs_q5": "no"}
    html = staff.post(f"/leads/{lead_id}/screenings", data=data, follow_redirects=True).get_data(as_text=True)
    assert "Warm-transfer to the on-call clinician now." in html
    facts = load(app, lead_id)
    assert facts["urgent"] is True and facts["acknowledged_by"] is None
    assert len(audit_events(app, "crisis_escalated", object_id=lead_id)) == 1
    with app.app_context():
        assert db.session.scalar(select(Screening.outcome)) == "needs_review"


def test_cssrs_skip_logic_and_recency_are_required(staff, make_lead):
    lead_id = make_lead()
    html = staff.post(f"/leads/{lead_id}/screenings", data={**SCREEN_ELIGIBLE, "cssrs_q2": "yes", "cssrs_q6": "yes"}
                      ).get_data(as_text=True)
    assert "Question 2 was yes" in html and "within the past 3 months" in html


def test_clinician_sign_off_records_who_and_when(app, client, staff, coordinator, make_user, login_as, make_lead):
    lead_id = make_lead()
    staff.post(f"/leads/{lead_id}/screenings", data={**SCREEN_ELIGIBLE, "caution_bp": "yes"})
    with app.app_context():
        screening_id = db.session.scalar(select(Screening.id))
    assert staff.post(f"/leads/{lead_id}/screenings/{screening_id}/sign-off").status_code == 403
    clinician = make_user(role=Role.CLINICIAN, display_name="Dr Rivera")
    doctor = app.test_client()
    login_as(doctor, clinician)
    assert doctor.post(f"/leads/{lead_id}/screenings/{screening_id}/sign-off",
                       data={"decision": "eligible", "note": "Blood pressure fine"}).status_code == 302
    with app.app_context():
        screening = db.session.get(Screening, screening_id)
        assert screening.signed_off_by == clinician.id and screening.signed_off_at is not None
    assert len(audit_events(app, "screening_signed_off", object_id=lead_id)) == 1
    assert "Signed off by <strong>Dr Rivera</strong>" in staff.get(f"/leads/{lead_id}").get_data(as_text=True)


def test_every_action_writes_its_audit_row(app, staff, coordinator, make_lead):
    lead_id = make_lead(urgent=True)
    posts = [
        ("claim", {}, "lead_assigned"),
        ("attempts", {"channel": "call", "outcome": "reached"}, "attempt_logged"),
        ("callbacks", {"due_at": "2099-01-01T10:00"}, "callback_scheduled"),
        ("acknowledge", {}, "urgent_acknowledged"),
        ("notes", {"body": "Called back"}, "note_added"),
        ("stage", {"target": "screening", "expected": "contacted"}, "stage_changed"),
        ("insurance", {"coverage_type": "self_pay", "vob_status": "in_progress"}, "vob_recorded"),
        ("screenings", SCREEN_ELIGIBLE, "screening_recorded"),
    ]
    for action, data, audited in posts:
        with app.app_context():
            before = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                       .where(AuditEvent.action == audited, AuditEvent.object_id == lead_id))
        assert staff.post(f"/leads/{lead_id}/{action}", data=data).status_code == 302, action
        assert len(audit_events(app, audited, lead_id)) == before + 1, action
    staff.post(f"/leads/{lead_id}/stage", data={"target": "eligible", "expected": "screening"})
    assert load(app, lead_id)["stage"] == "eligible"


def test_no_phi_in_audit_details_or_flashes(app, staff, sentinel_lead):
    staff.post(f"/leads/{sentinel_lead}/notes", data={"body": sentinels.NOTE})
    staff.post(f"/leads/{sentinel_lead}/attempts", data={"channel": "call", "outcome": "no_answer",
                                                         "note": sentinels.NOTE})
    staff.post(f"/leads/{sentinel_lead}/reveal")
    staff.post("/leads/search", data={"query": sentinels.PHONE})
    with app.app_context():
        details = " ".join(e.details for e in db.session.scalars(select(AuditEvent)))
    for value in sentinels.ALL:
        assert value not in details


def test_list_and_home_pages_audit_which_leads_they_showed(app, client, make_user, login_as, make_lead):
    user = make_user()
    login_as(client, user)
    lead_id = make_lead(phone=sentinels.PHONE, first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME)
    assert client.get("/leads/").status_code == 200
    assert client.get("/leads/home").status_code == 200
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "leads_listed")
                                    .order_by(AuditEvent.seq)).all()
        assert [(e.actor_id, json.loads(e.details)["view"]) for e in events] == [(user.id, "list"), (user.id, "home")]
        assert all(json.loads(e.details)["leads"] == [lead_id] for e in events)


def test_a_second_attempt_within_two_minutes_asks_for_confirmation(app, staff, coordinator, login_as, make_lead,
                                                                   time_machine):
    time_machine.move_to(dt.datetime(2026, 6, 1, 18, 0, tzinfo=dt.UTC), tick=False)  # 11 am in the clinic
    login_as(staff, coordinator)
    lead_id = make_lead()
    staff.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "no_answer"})
    time_machine.shift(dt.timedelta(seconds=90))
    asked = staff.post(f"/leads/{lead_id}/attempts", data={"channel": "email", "outcome": "no_answer",
                                                           "note": "second try"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "less than two minutes ago" in page and 'id="confirm_repeat"' in page
    assert "\nsecond try</textarea>" in page and load(app, lead_id)["attempt_count"] == 1
    staff.post(f"/leads/{lead_id}/attempts", data={"channel": "email", "outcome": "no_answer", "confirm_repeat": "y"})
    assert load(app, lead_id)["attempt_count"] == 2
    time_machine.shift(dt.timedelta(minutes=3))
    assert staff.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "no_answer"}).status_code == 302
    assert load(app, lead_id)["attempt_count"] == 3


@pytest.mark.parametrize("utc_hour,warned", [(14, True), (15, False), (3, False), (4, True), (12, True)])
def test_attempts_outside_calling_hours_warn(app, staff, coordinator, login_as, make_lead, time_machine, utc_hour,
                                             warned):
    # June, Los Angeles is UTC-7: 14 → 7 am, 15 → 8 am, 3 → 8 pm, 4 → 9 pm, 12 → 5 am
    time_machine.move_to(dt.datetime(2026, 6, 2, utc_hour, 0, tzinfo=dt.UTC), tick=False)
    login_as(staff, coordinator)
    lead_id = make_lead()
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    logged = staff.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "no_answer"},
                        follow_redirects=True).get_data(as_text=True)
    assert ("outside TCPA calling hours" in page) is warned
    assert ("outside TCPA calling hours" in logged) is warned
    assert load(app, lead_id)["attempt_count"] == 1
