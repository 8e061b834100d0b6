"""Staff forms keep what was typed: every kind of error re-renders the form with every value, a message at the
wrong field tied to it, an error summary naming each problem once, and nothing changed in the database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from sqlalchemy import func, select, text

from crm import crypto, eligibility
from crm.leads.queries import screenings_awaiting_sign_off
from crm.models import Insurance, Lead, Role, Screening, ScreeningDraft, User, db, utcnow
from crm.operations import merge, privacy
from crm.operations.leads import readiness_problem
from tests import sentinels
from tests.auth_helpers import audit_events
from tests.form_pages import read, snapshot
from tests.screening import PASSING

#: A benefits check as typed during a payer call: every field of the form has a value.
VOB_TYPED = {
    "carrier": "Aetna Choice", "plan_name": "Open Access Plus", "coverage_type": "ppo", "funding": "self_funded",
    "member_id": "W55501234", "group_number": "GRP-8812", "effective_date": "2026-01-01", "term_date": "2026-12-31",
    "provider_phone": "800-555-0199", "bh_carveout": "Evernorth BH", "pbm": "Accredo", "secondary": "no",
    "subscriber_relationship": "spouse", "subscriber_name": "Jordan Subscriber", "subscriber_dob": "1979-03-14",
    "subscriber_employer": "Harbor Freight", "network_clinic": "in", "network_provider": "out",
    "oon_benefits": "yes", "inn_deductible": "1500.00", "inn_deductible_met": "250.00", "inn_oop_max": "6000.00",
    "inn_oop_met": "400.00", "inn_coinsurance": "20", "oon_deductible": "3000.00", "oon_deductible_met": "10.00",
    "oon_oop_max": "12000.00", "oon_oop_met": "20.00", "oon_coinsurance": "40", "copay_office": "25.00",
    "copay_specialist": "50.00", "copay_behavioral": "35.00", "deductible_applies": "yes",
    "spravato_benefit": "medical", "pa_drug": "yes", "pa_admin": "unknown", "pa_reviewer": "eviCore",
    "codes_verified": ["J0013", "G2083"], "visit_limits": "52 per year", "method": "phone", "rep_name": "Morgan Rep",
    "reference_number": "REF-20260601-77", "notes": "Rep confirmed medical benefit; fax PA to eviCore.",
    "vob_status": "verified", "vob_outcome": "in_network_pa_required", "pa_status": "submitted",
    "pa_auth_number": "", "pa_units": "", "pa_start": "", "pa_end": "",
}

SCREEN_COMPLETE = {
    **{name: str(answer) for name, answer in PASSING.items()},
    **{f"phq9_{i}": "2" for i in range(8)}, "phq9_8": "0",
    "cssrs_q1": "no", "cssrs_q2": "no", "cssrs_q6": "no",
}


@pytest.fixture
def staff(client, make_user, login_as):
    """A client signed in as a coordinator."""
    login_as(client, make_user(display_name="Casey Coordinator"))
    return client


@pytest.fixture
def lead_with_insurance(app, make_lead):
    """An open lead whose insurance (member ID on file) has never been verified."""
    lead_id = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, phone=sentinels.PHONE,
                        stage="insurance_review")
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        with db.session.no_autoflush:
            db.session.add(Insurance(lead=lead, coverage_type="ppo", carrier="Aetna", member_id=sentinels.MEMBER_ID))
        db.session.commit()
    return lead_id


def insurance_state(app) -> tuple:
    """What a failed benefits check must leave as it was."""
    with app.app_context():
        ins = db.session.scalar(select(Insurance))
        return (ins.vob_status, ins.vob_outcome, ins.pa_status, ins.pa_units, ins.carrier, ins.benefits,
                ins.policyholder, ins.pa_auth_number, ins.member_id)


def assert_kept(page, typed: dict, action: str, skip: tuple = ()) -> None:
    """Every typed value but those in ``skip`` is what the re-rendered form shows."""
    for name, value in typed.items():
        if name in skip:
            continue
        shown = page.value(name, action)
        expected = value if isinstance(value, list) else str(value)
        assert shown == expected, f"{name}: typed {value!r}, page shows {shown!r}"


def assert_summary_once(page, action: str) -> list[str]:
    """The form's error summary exists and names no problem twice; returns its items."""
    items = page.summaries.get(action)
    assert items, f"no error summary on the form posting to {action}"
    assert len(items) == len(set(items)), f"a problem is listed more than once: {items}"
    assert all(target in page.ids for target in page.summary_links), "a summary link leads nowhere"
    return items


# --- benefits check ---------------------------------------------------------------------

VOB_ERRORS = [  # (what is wrong, the field it is wrong at, a piece of the field's message)
    ({"inn_coinsurance": "150"}, "inn_coinsurance", "between 0 and 100"),
    ({"pa_start": "2026-02-31"}, "pa_start", "Not a valid date"),
    ({"inn_deductible": "lots"}, "inn_deductible", "Not a valid decimal"),
    ({"vob_outcome": ""}, "vob_outcome", "Choose an outcome"),
    ({"pa_status": "approved"}, "pa_status", "cannot move"),
    ({"pa_status": "denied_final"}, "pa_status", "cannot move"),
    ({"codes_verified": ["J0013", "S0013"]}, "codes_verified", "not a valid choice"),
]


@pytest.mark.parametrize("wrong,field,message", VOB_ERRORS, ids=[e[1] + ":" + e[2] for e in VOB_ERRORS])
def test_a_wrong_benefits_answer_keeps_every_other_answer_and_changes_nothing(
        app, staff, lead_with_insurance, wrong, field, message):
    action = f"/leads/{lead_with_insurance}/insurance"
    before, stored = snapshot(app), insurance_state(app)
    response = staff.post(action, data={**VOB_TYPED, **wrong})
    assert response.status_code == 200
    page = read(response.get_data(as_text=True))
    assert_kept(page, {**VOB_TYPED, **wrong}, action, skip=(field,) if field in ("pa_status", "codes_verified") else ())
    assert message in (page.field_error(field, action) or "")
    items = assert_summary_once(page, action)
    assert any(message in item for item in items)
    assert snapshot(app) == before and insurance_state(app) == stored


def test_an_approved_authorisation_without_its_details_marks_each_missing_one(app, staff, lead_with_insurance):
    action = f"/leads/{lead_with_insurance}/insurance"
    assert staff.post(action, data=VOB_TYPED).status_code == 302  # now submitted
    before, stored = snapshot(app), insurance_state(app)
    typed = {**VOB_TYPED, "pa_status": "approved", "pa_units": "8"}
    page = read(staff.post(action, data=typed).get_data(as_text=True))
    assert_kept(page, typed, action)
    for name in ("pa_auth_number", "pa_start", "pa_end"):
        assert page.field_error(name, action), name
    assert page.field_error("pa_units", action) is None
    assert len(assert_summary_once(page, action)) == 1  # one problem, shown at each of its three fields
    assert snapshot(app) == before and insurance_state(app) == stored


def test_an_authorisation_ending_before_it_starts_is_marked_at_the_end_date(app, staff, lead_with_insurance):
    action = f"/leads/{lead_with_insurance}/insurance"
    staff.post(action, data=VOB_TYPED)
    before = snapshot(app)
    typed = {**VOB_TYPED, "pa_status": "approved", "pa_auth_number": "AUTH-1", "pa_units": "8",
             "pa_start": "2026-06-01", "pa_end": "2026-05-01"}
    page = read(staff.post(action, data=typed).get_data(as_text=True))
    assert_kept(page, typed, action)
    assert "ends before it starts" in page.field_error("pa_end", action)
    assert snapshot(app) == before


# --- prior-authorisation choices ----------------------------------------------------------

def set_pa(app, lead_id: str, status: str | None) -> None:
    with app.app_context():
        db.session.scalar(select(Insurance).where(Insurance.lead_id == lead_id)).pa_status = status
        db.session.commit()


@pytest.mark.parametrize("current", [None, "submitted", "denied", "approved", "denied_final"])
def test_the_form_offers_only_the_authorisation_moves_valid_from_the_current_state(
        app, staff, lead_with_insurance, current):
    from crm import vob
    set_pa(app, lead_with_insurance, current)
    page = read(staff.get(f"/leads/{lead_with_insurance}").get_data(as_text=True))
    offered = page.offered("pa_status", f"/leads/{lead_with_insurance}/insurance")
    valid = [code for code in vob.codes("pa_statuses") if vob.pa_move_allowed(current, code)]
    assert offered == ([""] if current is None else []) + valid
    assert page.value("pa_status", f"/leads/{lead_with_insurance}/insurance") == (current or "")


@pytest.mark.parametrize("current,forged", [(None, "approved"), ("submitted", "not_required"),
                                            ("approved", "denied"), ("denied_final", "approved"),
                                            ("submitted", "made_up_status"), ("submitted", "")])
def test_a_forged_authorisation_move_is_refused_at_the_field_and_changes_nothing(
        app, staff, lead_with_insurance, current, forged):
    set_pa(app, lead_with_insurance, current)
    action = f"/leads/{lead_with_insurance}/insurance"
    before, stored = snapshot(app), insurance_state(app)
    typed = {**VOB_TYPED, "pa_status": forged, "pa_auth_number": "AUTH-9", "pa_units": "8",
             "pa_start": "2026-06-01", "pa_end": "2026-12-01"}
    response = staff.post(action, data=typed)
    assert response.status_code == 200
    page = read(response.get_data(as_text=True))
    assert "cannot move" in page.field_error("pa_status", action)
    assert_kept(page, typed, action, skip=("pa_status",))
    assert snapshot(app) == before and insurance_state(app) == stored


# --- screening ----------------------------------------------------------------------------

def partly(count: int) -> dict[str, str]:
    """The first ``count`` answers of a complete screening."""
    return dict(list(SCREEN_COMPLETE.items())[:count])


def test_a_partly_answered_screening_keeps_its_answers_and_lists_each_problem_once(app, staff, make_lead):
    lead_id = make_lead(stage="screening")
    action = f"/leads/{lead_id}/screenings"
    typed = partly(6)
    before = snapshot(app)
    response = staff.post(action, data=typed)
    assert response.status_code == 200
    page = read(response.get_data(as_text=True))
    assert_kept(page, typed, action)
    items = assert_summary_once(page, action)
    assert sum("Answer every checklist item" in item for item in items) == 1
    assert sum("Score every PHQ-9 item" in item for item in items) == 1
    assert len(items) == 3  # checklist, PHQ-9, C-SSRS
    missing = [c["name"] for c in eligibility.RULES["criteria"] if c["name"] not in typed]
    for name in missing + [f"phq9_{i}" for i in range(9)] + ["cssrs_q1"]:
        assert page.field_error(name, action), name
    for name in typed:
        assert page.field_error(name, action) is None, name
    assert snapshot(app) == before


@pytest.mark.parametrize("wrong,field,message", [
    ({"cssrs_q2": "yes"}, "cssrs_q3", "Question 2 was yes"),
    ({"cssrs_q6": "yes"}, "q6_recent", "past 3 months"),
    ({"adequate_trials": "31"}, "adequate_trials", "between 0 and 30"),
    ({"adequate_trials": "two"}, "adequate_trials", "Not a valid integer"),
    ({"transport": "maybe"}, "transport", "Not a valid choice"),
])
def test_a_wrong_screening_answer_keeps_every_other_answer(app, staff, make_lead, wrong, field, message):
    lead_id = make_lead(stage="screening")
    action = f"/leads/{lead_id}/screenings"
    before = snapshot(app)
    typed = {**SCREEN_COMPLETE, **wrong}
    page = read(staff.post(action, data=typed).get_data(as_text=True))
    assert_kept(page, typed, action, skip=(field,) if field == "transport" else ())
    assert message in (page.field_error(field, action) or "")
    assert any(message in item for item in assert_summary_once(page, action))
    assert snapshot(app) == before


# --- the other staff forms of the lead page ------------------------------------------------

ATTEMPT_TYPED = {"channel": "email", "outcome": "reached", "note": "Said she will call back after work"}


@pytest.mark.parametrize("posted,form,typed", [
    ("insurance", "insurance", VOB_TYPED), ("screenings", "screenings", SCREEN_COMPLETE),
    ("screenings/draft", "screenings", dict(list(SCREEN_COMPLETE.items())[:4])),
    ("attempts", "attempts", ATTEMPT_TYPED),
], ids=["benefits", "screening", "draft", "attempt"])
def test_a_closed_lead_refuses_on_the_form_itself_keeping_what_was_typed(app, staff, make_lead, posted, form, typed):
    lead_id = make_lead(stage="closed", stage_reason="cost")
    action = f"/leads/{lead_id}/{form}"
    before = snapshot(app)
    response = staff.post(f"/leads/{lead_id}/{posted}", data=typed)
    assert response.status_code == 200
    page = read(response.get_data(as_text=True))
    assert_kept(page, typed, action)
    assert any("Reopen the lead" in item for item in assert_summary_once(page, action))
    assert snapshot(app) == before


def test_a_callback_in_the_past_is_marked_at_its_time_and_keeps_the_caller(app, staff, make_user, make_lead):
    caller = make_user(display_name="Riley Caller")
    lead_id = make_lead(stage="contacting")
    action = f"/leads/{lead_id}/callbacks"
    typed = {"due_at": "2020-01-02T09:30", "caller": caller.id}
    before = snapshot(app)
    page = read(staff.post(action, data=typed).get_data(as_text=True))
    assert_kept(page, typed, action)
    assert "in the future" in page.field_error("due_at", action)
    assert_summary_once(page, action)
    assert snapshot(app) == before


def test_a_booking_in_the_past_is_marked_at_its_time_and_keeps_the_rest(app, staff, make_user, make_lead):
    clinician = make_user(display_name="Dr Clara Clinician", role=Role.CLINICIAN)
    lead_id = make_lead(stage="eligible")
    action = f"/leads/{lead_id}/appointments"
    typed = {"kind": "rems_first_treatment", "starts_at": "2020-01-02T09:30", "place": "telehealth",
             "clinician": clinician.id, "notes": "Bring the REMS enrolment form"}
    before = snapshot(app)
    page = read(staff.post(action, data=typed).get_data(as_text=True))
    assert_kept(page, typed, action)
    assert "in the future" in page.field_error("starts_at", action)
    assert_summary_once(page, action)
    assert snapshot(app) == before


def test_a_refused_stage_move_is_marked_at_the_reason(app, staff, make_lead):
    lead_id = make_lead(stage="contacting")
    action = f"/leads/{lead_id}/stage"
    typed = {"target": "closed", "reason": "under_18", "expected": "contacting"}
    before = snapshot(app)
    page = read(staff.post(action, data=typed).get_data(as_text=True))
    assert_kept(page, typed, action)
    assert "reason" in page.field_error("reason", action)
    assert snapshot(app) == before


def test_the_correction_form_keeps_every_value_after_a_wrong_one(app, staff, make_lead):
    lead_id = make_lead(first_name="Ana", last_name="Lopez", phone="(714) 555-0142", stage="contacted",
                        dob=dt.date(1980, 5, 4))
    action = ""
    page = read(staff.get(f"/leads/{lead_id}/edit").get_data(as_text=True))
    typed = {"first_name": "Anabel", "last_name": "Lopez-Reyes", "dob": "05/04/1980", "phone": "not a phone",
             "email": "ana@example.test", "zip_code": "92801"}
    form = {c.attrs["name"]: page.value(c.attrs["name"]) for c in page.controls
            if c.attrs.get("name") and c.attrs.get("type") not in ("checkbox", "radio", "submit")}
    before = snapshot(app)
    response = staff.post(f"/leads/{lead_id}/edit", data={**form, **typed})
    assert response.status_code == 200
    page = read(response.get_data(as_text=True))
    assert_kept(page, typed, action)
    assert page.field_error("phone", action)
    assert_summary_once(page, action)
    assert snapshot(app) == before


# --- screening drafts ---------------------------------------------------------------------

def draft_rows(app) -> list[ScreeningDraft]:
    with app.app_context():
        rows = list(db.session.scalars(select(ScreeningDraft)))
        db.session.expunge_all()
        return rows


def test_a_partly_filled_screening_saved_as_a_draft_is_stored_encrypted_and_audited(app, staff, make_lead):
    lead_id = make_lead(stage="screening")
    typed = {**partly(6), "phq9_0": "3", "cssrs_q1": "yes"}
    response = staff.post(f"/leads/{lead_id}/screenings/draft", data=typed)
    assert response.status_code == 302
    [draft] = draft_rows(app)
    assert draft.lead_id == lead_id
    with app.app_context():
        stored = db.session.get(ScreeningDraft, draft.id)
        assert stored.answers == {**{k: v for k, v in typed.items() if k != "adequate_trials"},
                                  "adequate_trials": int(typed["adequate_trials"])}
        raw = db.session.execute(text("SELECT answers_enc FROM screening_drafts")).scalar_one()
        raw = bytes(raw)
        assert raw[0] == crypto.FIELD_FORMAT and b"mdd" not in raw and b"yes" not in raw
        assert db.session.scalar(select(func.count()).select_from(Screening)) == 0
    [event] = audit_events(app, "screening_draft_saved", object_id=lead_id)
    assert json.loads(event.details) == {"draft_id": draft.id, "answered": len(typed)}


def test_reopening_the_form_shows_the_drafts_answers(app, staff, make_lead):
    lead_id = make_lead(stage="screening")
    typed = {**partly(5), "phq9_3": "1", "cssrs_q2": "no"}
    staff.post(f"/leads/{lead_id}/screenings/draft", data=typed)
    html = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    page = read(html)
    assert_kept(page, typed, f"/leads/{lead_id}/screenings")
    assert page.value("phq9_4", f"/leads/{lead_id}/screenings") == ""  # unanswered stays unanswered
    assert 'id="screening-draft"' in html and "Not screened yet." in html
    assert page.summaries.get(f"/leads/{lead_id}/screenings") is None  # a draft is not an error


def test_saving_the_draft_again_replaces_it(app, staff, make_lead):
    lead_id = make_lead(stage="screening")
    staff.post(f"/leads/{lead_id}/screenings/draft", data=partly(3))
    staff.post(f"/leads/{lead_id}/screenings/draft", data=partly(8))
    [draft] = draft_rows(app)
    with app.app_context():
        assert len(db.session.get(ScreeningDraft, draft.id).answers) == 8
    assert len(audit_events(app, "screening_draft_saved", object_id=lead_id)) == 2


def test_a_draft_never_counts_as_a_completed_screening(app, client, staff, make_user, login_as, make_lead):
    lead_id = make_lead(stage="screening")
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        with db.session.no_autoflush:
            db.session.add(Insurance(lead=lead, coverage_type="self_pay"))
        db.session.commit()
    review = {k: v for k, v in SCREEN_COMPLETE.items() if not k.startswith("phq9_")}
    review["caution_bp"] = "yes"  # would need a clinician's review if it were recorded
    assert staff.post(f"/leads/{lead_id}/screenings/draft", data=review).status_code == 302
    refused = staff.post(f"/leads/{lead_id}/stage", data={"target": "eligible", "expected": "screening"})
    assert "passing pre-screen" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Lead, lead_id).stage == "screening"
        assert readiness_problem(db.session.get(Lead, lead_id))
    doctor = app.test_client()
    login_as(doctor, make_user(role=Role.CLINICIAN, display_name="Dr Rivera"))
    home = doctor.get("/leads/home").get_data(as_text=True)
    with app.app_context():
        reference = db.session.get(Lead, lead_id).reference
        assert screenings_awaiting_sign_off() == []
    assert reference not in home
    assert audit_events(app, "screening_recorded") == []


def test_reports_ignore_a_draft(app, client, make_user, login_as, staff, make_lead):
    lead_id = make_lead(stage="screening")
    manager = app.test_client()
    login_as(manager, make_user(role=Role.MANAGER))
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False):  # the same figures, to the second
        first = manager.get("/reports/")
        assert first.status_code == 200 and "<table" in first.get_data(as_text=True)
        before = first.get_data(as_text=True)
        staff.post(f"/leads/{lead_id}/screenings/draft", data=partly(10))
        after = manager.get("/reports/").get_data(as_text=True)
    assert len(draft_rows(app)) == 1
    assert after == before


def test_recording_the_screening_replaces_the_draft(app, staff, make_lead):
    lead_id = make_lead(stage="screening")
    staff.post(f"/leads/{lead_id}/screenings/draft", data=partly(6))
    assert staff.post(f"/leads/{lead_id}/screenings", data=SCREEN_COMPLETE).status_code == 302
    assert draft_rows(app) == []
    [event] = audit_events(app, "screening_recorded", object_id=lead_id)
    assert json.loads(event.details)["draft_replaced"] is True
    html = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert 'id="screening-draft"' not in html


def test_a_failed_recording_keeps_the_draft(app, staff, make_lead):
    lead_id = make_lead(stage="screening")
    staff.post(f"/leads/{lead_id}/screenings/draft", data=partly(6))
    before = snapshot(app)
    assert staff.post(f"/leads/{lead_id}/screenings", data=partly(9)).status_code == 200
    assert len(draft_rows(app)) == 1 and snapshot(app) == before


@pytest.mark.parametrize("typed,message", [
    ({}, "at least one question"),
    ({"cssrs_q2": "yes", "cssrs_q4": "yes"}, "high risk"),
    ({"cssrs_q6": "yes", "q6_recent": "yes"}, "high risk"),
    ({"adequate_trials": "99", "adult": "yes"}, "between 0 and 30"),
    ({"transport": "maybe"}, "Not a valid choice"),
])
def test_a_draft_that_cannot_wait_or_holds_a_wrong_answer_is_refused(app, staff, make_lead, typed, message):
    lead_id = make_lead(stage="screening")
    before = snapshot(app)
    response = staff.post(f"/leads/{lead_id}/screenings/draft", data=typed)
    assert response.status_code == 200
    page = read(response.get_data(as_text=True))
    action = f"/leads/{lead_id}/screenings"
    assert any(message in item for item in assert_summary_once(page, action))
    assert_kept(page, typed, action, skip=("transport",))
    assert snapshot(app) == before and draft_rows(app) == []


def test_a_merge_moves_the_draft_and_erasure_shreds_it(app, staff, make_lead):
    survivor, absorbed = make_lead(stage="screening"), make_lead(stage="screening")
    staff.post(f"/leads/{absorbed}/screenings/draft", data=partly(4))
    with app.app_context():
        actor = db.session.scalar(select(User))
        merge.merge_leads(survivor, absorbed, actor)
        db.session.commit()
        draft = db.session.scalar(select(ScreeningDraft))
        assert draft.lead_id == survivor and len(draft.answers) == 4
        privacy.shred([survivor], "erasure_request", actor, utcnow())
        db.session.commit()
        assert db.session.execute(text("SELECT answers_enc FROM screening_drafts")).scalar_one() is None


def test_the_new_lead_form_keeps_every_value_after_a_wrong_one(app, staff):
    typed = {"source": "referral", "referrer_name": "Dr Ana Reyes", "referrer_practice": "Harbor Psychiatry",
             "referrer_phone": "(714) 555-0100", "referrer_npi": "1234567890", "first_name": "Jamie",
             "last_name": "Nguyen", "dob": "07/23/1961", "phone": "(714) 555-0177", "email": "jamie.nguyen@gmail.com",
             "zip_code": "92801", "coverage_type": "ppo", "carrier": "Aetna", "member_id": "W12345",
             "group_number": "G-77", "is_policyholder": "yes", "note": "Referred for TRD; two failed SSRIs"}
    before = snapshot(app)
    response = staff.post("/leads/new", data=typed)
    assert response.status_code == 200
    page = read(response.get_data(as_text=True))
    radios = ("source", "coverage_type", "is_policyholder")
    assert_kept(page, {k: v for k, v in typed.items() if k not in radios}, "")
    for name in radios:
        assert page.value(name, "") == [typed[name]], name
    assert "check digit" in page.field_error("referrer_npi", "")
    assert len(assert_summary_once(page, "")) == 1
    assert snapshot(app) == before
