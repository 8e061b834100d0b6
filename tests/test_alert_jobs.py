"""Periodic jobs on a frozen clock: first-response deadlines across opening hours, a holiday and
daylight-saving changes; overdue callbacks; urgent repeats; morning digests; cadence exhaustion."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from crm import cadence
from crm.hours import ClinicHours, first_response_deadline
from crm.jobs import periodic
from crm.models import Alert, AuditEvent, Callback, ContactAttempt, Lead, Role, Stage, User, db, utcnow
from crm.operations import leads as ops
from tests import sentinels
from tests.test_public_form import submit

LA = ZoneInfo("America/Los_Angeles")
WEEKDAYS = {day: "08:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
FIVE, FIFTEEN = dt.timedelta(minutes=5), dt.timedelta(minutes=15)


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts)


@pytest.mark.parametrize(("created", "deadline", "why"), [
    (utc(2026, 3, 4, 18, 0), utc(2026, 3, 4, 18, 5), "Wednesday 10:00 PST, open: five minutes"),
    (utc(2026, 3, 5, 1, 58), utc(2026, 3, 5, 2, 3), "Wednesday 17:58 PST, two minutes before closing"),
    (utc(2026, 3, 4, 14, 0), utc(2026, 3, 4, 16, 15), "Wednesday 06:00 PST: opening at 08:00 plus 15"),
    (utc(2026, 3, 5, 3, 0), utc(2026, 3, 5, 16, 15), "Wednesday 19:00 PST: Thursday 08:00 PST plus 15"),
    (utc(2026, 3, 7, 3, 0), utc(2026, 3, 9, 15, 15), "Friday night PST: Monday 08:00 is PDT after the change"),
    (utc(2026, 10, 31, 2, 0), utc(2026, 11, 2, 16, 15), "Friday night PDT: Monday 08:00 is PST after fall-back"),
    (utc(2026, 12, 25, 4, 0), utc(2026, 12, 28, 16, 15), "Christmas Eve night: the holiday Friday is closed"),
    (utc(2026, 12, 25, 18, 0), utc(2026, 12, 28, 16, 15), "Christmas Day 10:00: closed all day"),
])
def test_first_response_deadline(created, deadline, why):
    hours = ClinicHours.from_config(LA, WEEKDAYS, ["2026-12-25"])
    assert first_response_deadline(created, hours, FIVE, FIFTEEN) == deadline, why


def test_opening_hours_refuse_nonsense():
    with pytest.raises(ValueError):
        ClinicHours.from_config(LA, {"mon": "18:00-08:00"}, [])
    with pytest.raises(ValueError):
        ClinicHours.from_config(LA, {"moonday": "08:00-18:00"}, [])


@pytest.fixture
def config(config):
    config.update(CLINIC_HOLIDAYS=["2026-12-25"], BASE_URL="https://crm.clinic.example", DIGEST_TIME="07:30",
                  TRUSTED_HOSTS=["localhost", "crm.clinic.example"])  # the test client calls itself localhost
    return config


@pytest.fixture
def coordinators(make_user):
    return [make_user(role=Role.COORDINATOR), make_user(role=Role.COORDINATOR)]


def run_jobs(app, at: dt.datetime) -> dict[str, int]:
    """Run every periodic job with the clock frozen at naive-UTC ``at``."""
    with time_machine.travel(at.replace(tzinfo=dt.UTC), tick=False), app.app_context():
        assert utcnow() == at
        return periodic.run_all(utcnow())


def alerts_of(app, kind: str) -> list[Alert]:
    with app.app_context():
        return list(db.session.scalars(select(Alert).where(Alert.kind == kind).order_by(Alert.created_at,
                                                                                       Alert.user_id)))


def test_new_lead_alerts_coordinators_once_after_five_minutes_in_opening_hours(app, coordinators, make_lead):
    lead_id = make_lead(created_at=utc(2026, 3, 4, 18, 0), first_name=sentinels.FIRST_NAME)
    called = make_lead(created_at=utc(2026, 3, 4, 18, 0), first_attempt_at=utc(2026, 3, 4, 18, 2))
    assert run_jobs(app, utc(2026, 3, 4, 18, 4, 59))["first_responses"] == 0
    assert run_jobs(app, utc(2026, 3, 4, 18, 5, 1))["first_responses"] == 1
    assert run_jobs(app, utc(2026, 3, 4, 18, 30))["first_responses"] == 0
    sent = alerts_of(app, "first_response")
    assert {a.user_id for a in sent} == {c.id for c in coordinators} and {a.lead_id for a in sent} == {lead_id}
    assert called not in {a.lead_id for a in sent}
    assert "10:05 AM PST" in sent[0].text


def test_assigned_lead_alerts_only_its_coordinator(app, coordinators, make_lead):
    make_lead(created_at=utc(2026, 3, 4, 18, 0), assignee_id=coordinators[1].id)
    run_jobs(app, utc(2026, 3, 4, 18, 6))
    assert [a.user_id for a in alerts_of(app, "first_response")] == [coordinators[1].id]


def test_weekend_lead_is_due_fifteen_minutes_after_monday_opening_across_the_spring_change(app, coordinators,
                                                                                           make_lead):
    make_lead(created_at=utc(2026, 3, 8, 6, 0))  # Saturday 22:00 PST
    assert run_jobs(app, utc(2026, 3, 9, 15, 14))["first_responses"] == 0  # Monday 08:14 PDT
    assert run_jobs(app, utc(2026, 3, 9, 15, 16))["first_responses"] == 1  # 08:16 PDT (16:16 UTC under PST)


def test_holiday_lead_waits_for_the_next_opening(app, coordinators, make_lead):
    make_lead(created_at=utc(2026, 12, 25, 18, 0))  # Christmas Day, 10:00 PST
    assert run_jobs(app, utc(2026, 12, 25, 18, 30))["first_responses"] == 0
    assert run_jobs(app, utc(2026, 12, 28, 16, 14))["first_responses"] == 0
    assert run_jobs(app, utc(2026, 12, 28, 16, 16))["first_responses"] == 1


def test_staff_who_switched_an_alert_off_do_not_get_it(app, coordinators, make_lead):
    from crm.operations import alerts

    with app.app_context():
        alerts.set_preferences(db.session.get(User, coordinators[0].id), ["callback_overdue"])
        db.session.commit()
    make_lead(created_at=utc(2026, 3, 4, 18, 0))
    run_jobs(app, utc(2026, 3, 4, 18, 6))
    assert [a.user_id for a in alerts_of(app, "first_response")] == [coordinators[1].id]


def add_callback(app, lead_id: str, assignee_id: str, due: dt.datetime) -> str:
    with app.app_context():
        callback = Callback(lead_id=lead_id, assignee_id=assignee_id, due_at=due)
        db.session.add(callback)
        db.session.commit()
        return callback.id


def test_overdue_callback_alerts_its_assignee_once_after_thirty_minutes(app, coordinators, make_lead):
    lead_id = make_lead(created_at=utc(2026, 3, 2, 16, 0), stage=Stage.CONTACTING,
                        first_attempt_at=utc(2026, 3, 2, 16, 3))
    add_callback(app, lead_id, coordinators[0].id, utc(2026, 3, 3, 18, 0))
    assert run_jobs(app, utc(2026, 3, 3, 18, 29))["overdue_callbacks"] == 0
    assert run_jobs(app, utc(2026, 3, 3, 18, 31))["overdue_callbacks"] == 1
    assert run_jobs(app, utc(2026, 3, 3, 19, 0))["overdue_callbacks"] == 0
    sent = alerts_of(app, "callback_overdue")
    assert [a.user_id for a in sent] == [coordinators[0].id] and "31 minutes overdue" in sent[0].text


def test_unacknowledged_urgent_alert_repeats_every_fifteen_minutes_up_to_the_limit(app, client, make_user,
                                                                                    config):
    admin = make_user(role=Role.ADMIN)
    start = utc(2026, 3, 4, 10, 0)  # 02:00 in the clinic
    with time_machine.travel(start.replace(tzinfo=dt.UTC), tick=False):
        assert submit(client, app, need_help_now="yes").status_code == 303
    minute = dt.timedelta(minutes=1)
    repeats = [run_jobs(app, start + n * minute)["urgent_repeats"] for n in (14, 16, 20, 31, 47, 63, 79, 95)]
    assert repeats == [0, 1, 0, 1, 1, 1, 0, 0]  # limit 4
    assert [a.round for a in alerts_of(app, "urgent_enquiry")] == [0, 1, 2, 3, 4]
    assert {a.user_id for a in alerts_of(app, "urgent_enquiry")} == {admin.id}


def test_acknowledging_stops_the_urgent_repeats(app, client, make_user):
    admin = make_user(role=Role.ADMIN)
    start = utc(2026, 3, 4, 10, 0)
    with time_machine.travel(start.replace(tzinfo=dt.UTC), tick=False):
        submit(client, app, need_help_now="yes")
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        ops.acknowledge_urgent(lead, db.session.get(User, admin.id), now=start + dt.timedelta(minutes=3))
        db.session.commit()
    assert run_jobs(app, start + dt.timedelta(minutes=20))["urgent_repeats"] == 0


def test_morning_digest_once_per_coordinator_on_opening_days(app, coordinators, make_lead, make_user):
    make_user(role=Role.CLINICIAN)
    mine = make_lead(created_at=utc(2026, 3, 2, 16, 0), stage=Stage.CONTACTING, assignee_id=coordinators[0].id)
    make_lead(created_at=utc(2026, 3, 3, 16, 0))  # new, unassigned
    add_callback(app, mine, coordinators[0].id, utc(2026, 3, 4, 19, 0))  # Wednesday 11:00 PST: today
    add_callback(app, mine, coordinators[0].id, utc(2026, 3, 3, 19, 0))  # yesterday: overdue
    assert run_jobs(app, utc(2026, 3, 4, 15, 29))["morning_digests"] == 0  # 07:29 PST
    assert run_jobs(app, utc(2026, 3, 4, 15, 31))["morning_digests"] == 2
    assert run_jobs(app, utc(2026, 3, 4, 17, 0))["morning_digests"] == 0
    texts = {a.user_id: a.text for a in alerts_of(app, "morning_digest")}
    assert "1 due today, 1 overdue" in texts[coordinators[0].id]
    assert "0 due today, 0 overdue" in texts[coordinators[1].id]
    assert "New leads nobody has claimed: 1." in texts[coordinators[0].id]
    assert run_jobs(app, utc(2026, 3, 7, 16, 0))["morning_digests"] == 0  # Saturday


def test_no_morning_digest_when_the_clinic_switches_it_off(app, coordinators):
    app.config["DIGEST_TIME"] = None
    assert run_jobs(app, utc(2026, 3, 4, 16, 0))["morning_digests"] == 0
    assert alerts_of(app, "morning_digest") == []


def attempts(app, lead_id: str, count: int, outcome: str = "no_answer") -> None:
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        for n in range(count):
            db.session.add(ContactAttempt(lead=lead, channel="call", outcome=outcome,
                                          at=utc(2026, 3, 2, 17, 0) + dt.timedelta(days=n)))
        lead.attempt_count = count
        db.session.commit()


def test_cadence_job_moves_exactly_the_exhausted_leads_and_audits_each_as_the_system(app, coordinators,
                                                                                       make_lead):
    steps = len(cadence.RULES["steps"])
    exhausted = make_lead(stage=Stage.CONTACTING, created_at=utc(2026, 3, 2, 16, 0))
    attempts(app, exhausted, steps)
    kept_trying = make_lead(stage=Stage.CONTACTING, created_at=utc(2026, 3, 2, 16, 0))
    attempts(app, kept_trying, steps)
    add_callback(app, kept_trying, coordinators[0].id, utc(2026, 3, 20, 18, 0))
    one_short = make_lead(stage=Stage.CONTACTING, created_at=utc(2026, 3, 2, 16, 0))
    attempts(app, one_short, steps - 1)
    reached = make_lead(stage=Stage.CONTACTED, created_at=utc(2026, 3, 2, 16, 0))
    attempts(app, reached, steps)
    assert run_jobs(app, utc(2026, 3, 12, 18, 0))["exhausted_cadences"] == 1
    assert run_jobs(app, utc(2026, 3, 12, 18, 5))["exhausted_cadences"] == 0
    with app.app_context():
        stages = dict(db.session.execute(select(Lead.id, Lead.stage)).all())
        events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "stage_changed")))
    assert stages == {exhausted: "unreachable", kept_trying: "contacting", one_short: "contacting",
                      reached: "contacted"}
    assert [(e.object_id, e.actor_kind, e.actor_id) for e in events] == [(exhausted, "system", None)]
    assert json.loads(events[0].details) == {"from": "contacting", "to": "unreachable",
                                             "reason": "cadence_exhausted"}


def test_an_unanswered_attempt_books_the_next_call_from_the_cadence(app, client, coordinators, login_as,
                                                                      make_lead):
    lead_id = make_lead(created_at=utc(2026, 3, 2, 16, 58))  # Monday 08:58 PST
    with time_machine.travel(dt.datetime(2026, 3, 2, 17, 0, tzinfo=dt.UTC), tick=False):
        login_as(client, coordinators[0])
        response = client.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "no_answer"})
        assert response.status_code == 302 and "/leads/" in response.location, response.location
    with app.app_context():
        callback = db.session.scalars(select(Callback).where(Callback.done_at.is_(None))).one()
        lead = db.session.get(Lead, lead_id)
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "callback_scheduled")).one()
    assert callback.due_at == utc(2026, 3, 2, 20, 58) == lead.next_callback_at  # second call, 4 hours on
    assert callback.assignee_id == coordinators[0].id
    assert json.loads(event.details)["by"] == "cadence"
    with time_machine.travel(dt.datetime(2026, 3, 2, 17, 5, tzinfo=dt.UTC), tick=False):
        client.post(f"/leads/{lead_id}/attempts", data={"channel": "call", "outcome": "reached"})
    with app.app_context():
        assert db.session.scalars(select(Callback).where(Callback.done_at.is_(None))).all() == []
