"""Appointments over HTTP: booking moves to scheduled, reschedule, cancel, attended, no-show, converted, .ics."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from sqlalchemy import select

from crm.models import Appointment, Lead, Role, db
from tests import sentinels
from tests.auth_helpers import audit_events

NOW = dt.datetime(2026, 6, 1, 17, 0, tzinfo=dt.UTC)  # 10:00 in the clinic (America/Los_Angeles, PDT)
pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def clinician(make_user):
    return make_user(display_name="Dr Clara Clinician", role=Role.CLINICIAN)


@pytest.fixture
def staff(client, make_user, login_as):
    login_as(client, make_user(display_name="Casey Coordinator"))
    return client


@pytest.fixture
def eligible_lead(make_lead):
    return make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, phone=sentinels.PHONE,
                     email=sentinels.EMAIL, zip_code=sentinels.ZIP_CODE, stage="eligible")


def book(staff, lead_id, person, when="2026-06-03T14:30", **extra):
    data = {"kind": "consultation", "starts_at": when, "place": "clinic", "clinician": person.id,
            "notes": sentinels.NOTE, **extra}
    return staff.post(f"/leads/{lead_id}/appointments", data=data, follow_redirects=True)


def stored(app, lead_id):
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        rows = list(db.session.scalars(select(Appointment).where(Appointment.lead_id == lead_id)))
        return lead.stage, lead.stage_reason, [(a.id, a.status, a.starts_at, a.kind, a.clinician_id) for a in rows]


def test_booking_records_the_appointment_and_moves_to_scheduled(app, staff, eligible_lead, clinician):
    page = book(staff, eligible_lead, clinician).get_data(as_text=True)
    assert "Appointment booked" in page and "Dr Clara Clinician" in page and sentinels.NOTE in page
    stage, _, rows = stored(app, eligible_lead)
    assert stage == "scheduled"
    [(appointment_id, status, starts_at, kind, clinician_id)] = rows
    # 14:30 in Los Angeles on June 3 (PDT) is 21:30 UTC
    assert (status, starts_at, kind, clinician_id) == ("booked", dt.datetime(2026, 6, 3, 21, 30), "consultation",
                                                        clinician.id)
    [booked] = audit_events(app, "appointment_booked", object_id=eligible_lead)
    assert booked.details and sentinels.NOTE not in booked.details
    assert len(audit_events(app, "stage_changed", object_id=eligible_lead)) == 1
    with app.app_context():
        raw = db.session.scalar(select(Appointment.notes_enc).where(Appointment.id == appointment_id))
        assert raw and sentinels.NOTE.encode() not in bytes(raw)


@pytest.mark.parametrize("change,message", [
    ({"clinician": ""}, "Choose the clinician."),
    ({"starts_at": ""}, "Choose the appointment's date and time."),
    ({"starts_at": "2026-05-01T10:00"}, "Pick an appointment time in the future."),
])
def test_a_bad_booking_changes_nothing(app, staff, eligible_lead, clinician, change, message):
    page = book(staff, eligible_lead, clinician, **change).get_data(as_text=True)
    assert message in page
    assert stored(app, eligible_lead) == ("eligible", None, [])
    assert audit_events(app, "appointment_booked", object_id=eligible_lead) == []


def test_booking_with_a_coordinator_as_clinician_is_refused(app, staff, eligible_lead, make_user):
    coordinator = make_user(display_name="Not A Clinician")
    page = staff.post(f"/leads/{eligible_lead}/appointments", data={
        "kind": "consultation", "starts_at": "2026-06-03T14:30", "place": "clinic", "clinician": coordinator.id},
        follow_redirects=True).get_data(as_text=True)
    assert "Not a valid choice" in page or "active clinician" in page
    assert stored(app, eligible_lead)[2] == []


def test_the_stage_form_cannot_reach_scheduled_or_converted_without_the_facts(app, staff, make_lead):
    eligible = make_lead(stage="eligible")
    page = staff.post(f"/leads/{eligible}/stage", data={"target": "scheduled", "expected": "eligible"},
                      follow_redirects=True).get_data(as_text=True)
    assert "Book the appointment" in page and stored(app, eligible)[0] == "eligible"
    scheduled = make_lead(stage="scheduled")
    page = staff.post(f"/leads/{scheduled}/stage", data={"target": "converted", "expected": "scheduled"},
                      follow_redirects=True).get_data(as_text=True)
    assert "first treatment" in page and stored(app, scheduled)[0] == "scheduled"


def _booked(app, staff, lead_id, clinician):
    book(staff, lead_id, clinician)
    return stored(app, lead_id)[2][0][0]


def test_reschedule_moves_the_time_and_is_audited(app, staff, eligible_lead, clinician):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    page = staff.post(f"/leads/{eligible_lead}/appointments/{appointment_id}/reschedule",
                      data={"starts_at": "2026-06-04T09:15", "clinician": clinician.id},
                      follow_redirects=True).get_data(as_text=True)
    assert "Appointment rescheduled" in page
    assert stored(app, eligible_lead)[2][0][2] == dt.datetime(2026, 6, 4, 16, 15)
    assert len(audit_events(app, "appointment_rescheduled", object_id=eligible_lead)) == 1


def test_no_show_returns_the_lead_to_contacting_and_suggests_a_callback(app, staff, eligible_lead, clinician):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    page = staff.post(f"/leads/{eligible_lead}/appointments/{appointment_id}/outcome", data={"outcome": "no_show"},
                      follow_redirects=True).get_data(as_text=True)
    assert "back in contacting" in page and "Suggested callback: Jun 2, 10:00 AM" in page
    stage, reason, rows = stored(app, eligible_lead)
    assert (stage, reason, rows[0][1]) == ("contacting", "no_show", "no_show")
    assert len(audit_events(app, "appointment_no_show", object_id=eligible_lead)) == 1
    [_, back] = audit_events(app, "stage_changed", object_id=eligible_lead)
    assert back.details == '{"from":"scheduled","reason":"no_show","to":"contacting"}'


def test_no_callback_is_suggested_under_do_not_contact(app, staff, eligible_lead, clinician):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    with app.app_context():
        db.session.get(Lead, eligible_lead).do_not_contact_at = dt.datetime(2026, 5, 1)
        db.session.commit()
    page = staff.post(f"/leads/{eligible_lead}/appointments/{appointment_id}/outcome", data={"outcome": "no_show"},
                      follow_redirects=True).get_data(as_text=True)
    assert "back in contacting" in page and "Suggested callback" not in page


def test_cancel_returns_the_lead_to_eligible(app, staff, eligible_lead, clinician):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    staff.post(f"/leads/{eligible_lead}/appointments/{appointment_id}/outcome", data={"outcome": "cancelled"})
    stage, reason, rows = stored(app, eligible_lead)
    assert (stage, reason, rows[0][1]) == ("eligible", "appointment_cancelled", "cancelled")
    assert len(audit_events(app, "appointment_cancelled", object_id=eligible_lead)) == 1


def test_a_settled_appointment_cannot_be_settled_again(app, staff, eligible_lead, clinician):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    url = f"/leads/{eligible_lead}/appointments/{appointment_id}/outcome"
    staff.post(url, data={"outcome": "attended"})
    page = staff.post(url, data={"outcome": "no_show"}, follow_redirects=True).get_data(as_text=True)
    assert "no longer booked" in page
    assert stored(app, eligible_lead)[:2] == ("scheduled", None)
    assert audit_events(app, "appointment_no_show", object_id=eligible_lead) == []


def test_converted_needs_the_first_treatment_date(app, staff, eligible_lead, clinician):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    staff.post(f"/leads/{eligible_lead}/appointments/{appointment_id}/outcome", data={"outcome": "attended"})
    page = staff.post(f"/leads/{eligible_lead}/convert", data={"first_treatment_on": ""},
                      follow_redirects=True).get_data(as_text=True)
    assert "Enter the first treatment's date." in page and stored(app, eligible_lead)[0] == "scheduled"
    page = staff.post(f"/leads/{eligible_lead}/convert", data={"first_treatment_on": "2026-06-01"},
                      follow_redirects=True).get_data(as_text=True)
    assert "Converted" in page
    with app.app_context():
        lead = db.session.get(Lead, eligible_lead)
        assert (lead.stage, lead.first_treatment_on) == ("converted", dt.date(2026, 6, 1))
        assert b"2026-06-01" not in bytes(lead.first_treatment_on_enc)
    assert len(audit_events(app, "lead_converted", object_id=eligible_lead)) == 1


def test_home_lists_todays_and_the_next_days_appointments(app, staff, eligible_lead, clinician, make_lead):
    book(staff, eligible_lead, clinician, when="2026-06-01T15:00")
    later = make_lead(stage="eligible")
    book(staff, later, clinician, when="2026-06-20T15:00")  # beyond the next seven days
    page = staff.get("/leads/home").get_data(as_text=True)
    with app.app_context():
        soon, far = (db.session.get(Lead, i).reference for i in (eligible_lead, later))
    assert soon in page and "Mon Jun 1, 3:00 PM" in page and far not in page
    assert sentinels.FIRST_NAME not in page and sentinels.NOTE not in page
    listed = audit_events(app, "leads_listed")[-1]
    assert eligible_lead in listed.details


def test_the_calendar_file_names_only_the_reference_and_kind(app, staff, eligible_lead, clinician):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    response = staff.get(f"/leads/{eligible_lead}/appointments/{appointment_id}.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    body = response.get_data(as_text=True)
    with app.app_context():
        reference = db.session.get(Lead, eligible_lead).reference
    assert f"SUMMARY:{reference} – Consultation\r\n" in body
    assert "DTSTART:20260603T213000Z\r\n" in body and "LOCATION:At the clinic\r\n" in body
    for sentinel in (*sentinels.GUARDED, "Clara", "Clinician"):
        assert sentinel not in body
    assert reference in response.headers["Content-Disposition"]
    assert len(audit_events(app, "appointment_exported", object_id=eligible_lead)) == 1


def test_another_leads_appointment_is_not_found(app, staff, eligible_lead, clinician, make_lead):
    appointment_id = _booked(app, staff, eligible_lead, clinician)
    other = make_lead(stage="scheduled")
    assert staff.get(f"/leads/{other}/appointments/{appointment_id}.ics").status_code == 404
    assert staff.post(f"/leads/{other}/appointments/{appointment_id}/outcome",
                      data={"outcome": "no_show"}).status_code == 404


def test_appointments_need_a_signed_in_user(client, eligible_lead):
    assert client.post(f"/leads/{eligible_lead}/appointments", data={}).status_code in (302, 401, 403)


def test_erasure_shreds_the_appointment_notes(app, staff, eligible_lead, clinician):
    from crm.operations import privacy

    appointment_id = _booked(app, staff, eligible_lead, clinician)
    with app.app_context():
        privacy.shred([eligible_lead], "patient_request", None, dt.datetime(2026, 6, 1, 18, 0))
        db.session.commit()
        row = db.session.get(Appointment, appointment_id)
        assert row.notes_enc is None and row.status == "booked"
    assert staff.get(f"/leads/{eligible_lead}/appointments/{appointment_id}.ics").status_code == 404
