"""The worker's privacy jobs on a frozen clock: copy-request reminders (three working days before,
overdue, each once, on several workers) and the daily retention run (its clinic time, its lease, its slices)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import time_machine
from sqlalchemy import func, select

from crm.jobs import leases, periodic
from crm.jobs import privacy as privacy_jobs
from crm.models import Alert, AuditEvent, JobRun, Lead, OutboxMessage, Role, User, db, utcnow
from crm.operations import alerts, privacy
from tests.privacy_helpers import store_full_lead
from tests.test_retention import T0, lead_at

#: Monday 2 March 2026, 10:00 PST: the copy is due 15 days later, Tuesday 17 March 11:00 PDT.
REQUESTED = dt.datetime(2026, 3, 2, 18, 0)
DUE = REQUESTED + dt.timedelta(days=15)
#: The stale leads of ``lead_at`` are due for retention 730 days after T0 (10 January 2024).
RETENTION_DAY = T0 + dt.timedelta(days=731)  # 10 January 2026, 12:00 UTC: 04:00 PST


@pytest.fixture
def config(config):
    config.update(SMTP_URL="smtp://mail.clinic.example:587", MAIL_FROM="alerts@clinic.test",
                  ALERT_WEBHOOK_URL="https://chat.clinic.example/hook", BASE_URL="https://crm.clinic.example",
                  RETENTION_PAUSE_SECONDS=0, RETENTION_TIME="02:00")
    return config


@pytest.fixture
def admins(make_user) -> list[User]:
    make_user(role=Role.COORDINATOR)  # coordinators are not told: admins produce the copy
    return [make_user(role=Role.ADMIN), make_user(role=Role.ADMIN)]


def at(when: dt.datetime):
    """Freeze the clock at naive-UTC ``when``."""
    return time_machine.travel(when.replace(tzinfo=dt.UTC), tick=False)


def run_jobs(app, when: dt.datetime) -> dict[str, int]:
    with at(when), app.app_context():
        return periodic.run_all(utcnow())


def race(app, when: dt.datetime, workers: int, job) -> list[int]:
    """Run ``job`` in ``workers`` threads (each its own app context and connection) released at once."""
    barrier, results = threading.Barrier(workers), []

    def worker():
        with app.app_context():
            barrier.wait()
            results.append(job())
            db.session.remove()

    with at(when):
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results


def requested(app, admin: User) -> str:
    """A full lead (PHI sentinels everywhere) whose patient asked for a copy at ``REQUESTED``."""
    lead = store_full_lead(app)
    with app.app_context():
        assert privacy.request_access(db.session.get(Lead, lead.id), db.session.get(User, admin.id),
                                      now=REQUESTED) == DUE
        db.session.commit()
    return lead.id


def reminders(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Alert.kind, Alert.user_id, Alert.text).where(Alert.kind.in_((alerts.ACCESS_DUE,
                                                                                alerts.ACCESS_OVERDUE)))
            .order_by(Alert.kind, Alert.user_id))]


def outbox(app) -> list[tuple[str, str | None, str]]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(OutboxMessage.channel, OutboxMessage.user_id, OutboxMessage.body)
            .where(OutboxMessage.kind.in_((alerts.ACCESS_DUE, alerts.ACCESS_OVERDUE)))
            .order_by(OutboxMessage.kind, OutboxMessage.channel, OutboxMessage.user_id))]


# --- copy-request reminders --------------------------------------------------------------


def test_admins_are_reminded_once_three_working_days_before_the_copy_is_due(app, admins):
    lead_id = requested(app, admins[0])
    with app.app_context():
        reference = db.session.get(Lead, lead_id).reference
    assert run_jobs(app, dt.datetime(2026, 3, 11, 18, 0))["access_request_reminders"] == 0  # Wed: 4 working days
    assert run_jobs(app, dt.datetime(2026, 3, 12, 8, 0))["access_request_reminders"] == 2  # Thu 01:00 PDT: Fri Mon Tue
    assert run_jobs(app, dt.datetime(2026, 3, 13, 18, 0))["access_request_reminders"] == 0
    rows = reminders(app)
    assert [(kind, user) for kind, user, _ in rows] == sorted((alerts.ACCESS_DUE, a.id) for a in admins)
    assert rows[0][2] == f"The patient's copy of lead {reference} is due by Tue Mar 17, 2026."
    sent = outbox(app)
    assert sorted((channel, user) for channel, user, _ in sent) == sorted(
        [("email", admins[0].id), ("email", admins[1].id), ("webhook", None)])
    email = next(body for channel, _, body in sent if channel == "email")
    assert f"Reference: {reference}" in email and "Sign in: https://crm.clinic.example/leads/" in email
    assert json.loads(next(body for channel, _, body in sent if channel == "webhook"))["reference"] == reference


def test_an_overdue_copy_is_reminded_once_more_and_a_produced_copy_not_at_all(app, admins):
    lead_id = requested(app, admins[0])
    assert run_jobs(app, DUE - dt.timedelta(minutes=1))["access_request_reminders"] == 2  # due soon (never sent yet)
    assert run_jobs(app, DUE)["access_request_reminders"] == 2  # overdue
    assert run_jobs(app, DUE + dt.timedelta(days=3))["access_request_reminders"] == 0
    assert sorted(kind for kind, _, _ in reminders(app)) == [alerts.ACCESS_DUE] * 2 + [alerts.ACCESS_OVERDUE] * 2
    overdue = [text for kind, _, text in reminders(app) if kind == alerts.ACCESS_OVERDUE]
    assert all("was due by Tue Mar 17, 2026 and has not been produced" in text for text in overdue)
    with app.app_context():
        privacy.record_export(db.session.get(Lead, lead_id), None, {"via": "cli"}, now=DUE + dt.timedelta(days=4))
        db.session.commit()
    assert run_jobs(app, DUE + dt.timedelta(days=5))["access_request_reminders"] == 0


def test_a_produced_or_erased_lead_is_never_reminded(app, admins):
    produced, erased = requested(app, admins[0]), requested(app, admins[0])
    with app.app_context():
        privacy.record_export(db.session.get(Lead, produced), None, {"via": "cli"}, now=REQUESTED)
        privacy.erase_lead(db.session.get(Lead, erased), None, now=REQUESTED)
        db.session.commit()
    assert run_jobs(app, DUE + dt.timedelta(days=1))["access_request_reminders"] == 0
    assert reminders(app) == [] and outbox(app) == []


def test_reminders_go_out_once_with_several_workers_and_after_a_restart(app, admins):
    requested(app, admins[0])
    when = dt.datetime(2026, 3, 12, 18, 0)
    results = race(app, when, 3, lambda: periodic.run_all(utcnow()).get("access_request_reminders", 0))
    assert sum(results) == 2
    assert run_jobs(app, when + dt.timedelta(minutes=1))["access_request_reminders"] == 0  # a restarted worker
    assert len(reminders(app)) == 2
    assert sorted(channel for channel, _, _ in outbox(app)) == ["email", "email", "webhook"]


@pytest.mark.parametrize(("today", "due", "left"), [
    (dt.date(2026, 3, 12), dt.date(2026, 3, 17), 3),  # Thursday to Tuesday: Fri, Mon, Tue
    (dt.date(2026, 3, 11), dt.date(2026, 3, 17), 4),
    (dt.date(2026, 12, 22), dt.date(2026, 12, 28), 3),  # Christmas Day closed: Wed, Thu, Mon
    (dt.date(2026, 3, 17), dt.date(2026, 3, 17), 0),
])
def test_working_days_left_skip_weekends_and_holidays(app, today, due, left):
    app.config["CLINIC_HOLIDAYS"] = ["2026-12-25"]
    with app.app_context():
        assert privacy_jobs.working_days_left(today, due, periodic.clinic_hours()) == left


# --- the daily retention run ------------------------------------------------------------


def erased(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Lead.id).where(Lead.erased_at.is_not(None))))


def retention_events(app) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "retention_applied")
                                       .order_by(AuditEvent.seq)))


def test_retention_runs_once_a_day_from_its_clinic_time_audited_as_the_system(app):
    stale, recent = lead_at(app, "S"), lead_at(app, "R", updated_at=T0 + dt.timedelta(days=400))
    before = RETENTION_DAY.replace(hour=9, minute=59)  # 01:59 PST
    assert run_jobs(app, before)["scheduled_retention"] == 0 and erased(app) == set()
    assert run_jobs(app, RETENTION_DAY.replace(hour=10, minute=0))["scheduled_retention"] == 1  # 02:00 PST
    assert erased(app) == {stale}
    events = retention_events(app)
    assert [(e.actor_kind, e.actor_id) for e in events] == [("system", None)]
    assert json.loads(events[0].details) == {"reason": "never_converted", "erased": 1, "leads": [stale]}
    later = lead_at(app, "L")
    assert run_jobs(app, RETENTION_DAY.replace(hour=23))["scheduled_retention"] == 0  # done for the day
    assert later not in erased(app)
    assert run_jobs(app, RETENTION_DAY + dt.timedelta(days=1))["scheduled_retention"] == 1
    assert erased(app) == {stale, later} and recent not in erased(app)
    with app.app_context():
        run = db.session.get(JobRun, privacy_jobs.RETENTION)
        assert (run.day, run.holder, run.finished_at) == (dt.date(2026, 1, 11), None,
                                                          RETENTION_DAY + dt.timedelta(days=1))


def test_retention_time_follows_the_clinic_zone_across_daylight_saving(app):
    stale = lead_at(app, "S", updated_at=dt.datetime(2024, 6, 1))
    summer = dt.datetime(2026, 6, 10, 8, 59)  # 01:59 PDT (09:59 UTC would be 02:59 PDT)
    assert run_jobs(app, summer)["scheduled_retention"] == 0
    assert run_jobs(app, summer + dt.timedelta(minutes=1))["scheduled_retention"] == 1
    assert erased(app) == {stale}


def test_retention_switched_off_in_the_worker_runs_only_by_command(app):
    app.config["RETENTION_TIME"] = None
    lead_at(app, "S")
    assert run_jobs(app, RETENTION_DAY)["scheduled_retention"] == 0 and erased(app) == set()


def test_each_round_shreds_one_slice_and_the_next_round_goes_on(app):
    app.config.update(RETENTION_BATCH_SIZE=1, RETENTION_SLICE_SECONDS=0)
    due = {lead_at(app, tag) for tag in ("A", "B", "C")}
    counts = [run_jobs(app, RETENTION_DAY + dt.timedelta(minutes=n))["scheduled_retention"] for n in range(5)]
    assert counts == [1, 1, 1, 0, 0]  # the fourth round finds nothing left and closes the day's run
    assert erased(app) == due
    assert [json.loads(e.details)["erased"] for e in retention_events(app)] == [1, 1, 1]


def test_a_run_held_by_another_worker_waits_for_its_lease_to_run_out(app):
    stale = lead_at(app, "S")
    with at(RETENTION_DAY), app.app_context():
        other = leases.take(privacy_jobs.RETENTION, dt.date(2026, 1, 10), utcnow(), dt.timedelta(seconds=300))
        db.session.commit()
    assert other is not None
    assert run_jobs(app, RETENTION_DAY + dt.timedelta(seconds=299))["scheduled_retention"] == 0
    assert erased(app) == set()
    assert run_jobs(app, RETENTION_DAY + dt.timedelta(seconds=300))["scheduled_retention"] == 1  # it died: go on
    assert erased(app) == {stale}
    with app.app_context():
        assert not leases.renew(privacy_jobs.RETENTION, other, utcnow())  # the dead worker's lease is gone
        db.session.rollback()


def test_a_worker_that_lost_its_lease_stops_without_committing_the_batch(app, monkeypatch):
    app.config["RETENTION_BATCH_SIZE"] = 1
    lead_at(app, "A"), lead_at(app, "B")

    def renew_lost(name, holder, until):
        return False

    monkeypatch.setattr(leases, "renew", renew_lost)
    assert run_jobs(app, RETENTION_DAY)["scheduled_retention"] == 0
    assert erased(app) == set() and retention_events(app) == []


def test_two_workers_racing_shred_each_lead_once(app):
    app.config["RETENTION_BATCH_SIZE"] = 2
    due = {lead_at(app, tag) for tag in ("A", "B", "C", "D", "E")}
    results = race(app, RETENTION_DAY, 2, lambda: privacy_jobs.scheduled_retention(utcnow()))
    assert sorted(results) == [0, 5]
    assert erased(app) == due
    assert sum(json.loads(e.details)["erased"] for e in retention_events(app)) == 5
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(JobRun)) == 1
