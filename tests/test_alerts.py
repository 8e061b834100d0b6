"""Alerts through the outbox, delivered to a real SMTP server and a real HTTP webhook receiver.

Every message either receiver gets is searched for the PHI sentinels the enquiries carry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time

import pytest
import time_machine
from flask import url_for
from sqlalchemy import func, select

from crm import create_app
from crm.jobs import outbox, periodic
from crm.jobs.worker import Worker
from crm.models import Alert, AuditEvent, Callback, Lead, OnCallMember, OutboxMessage, Role, User, db, utcnow
from crm.operations import alerts
from crm.operations import enquiries as intake
from crm.operations import screening as screening_ops
from tests import sentinels
from tests.auth_helpers import PASSWORD_HASH
from tests.screening import NO_RISK, PASSING, PHQ_MODERATE
from tests.test_public_form import submit

BASE_URL = "https://crm.clinic.example"
WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"  # noqa: S105 - a test value


@pytest.fixture
def config(config, sink, receiver):
    """Mail and webhook switched on, fast retries."""
    config.update(SMTP_URL=sink.url, MAIL_FROM="alerts@clinic.test", ALERT_WEBHOOK_URL=receiver.url,
                  ALERT_WEBHOOK_SECRET=WEBHOOK_SECRET, BASE_URL=BASE_URL, OUTBOX_BACKOFF_SECONDS=0.05,
                  TRUSTED_HOSTS=["localhost", "crm.clinic.example"],  # the test client calls itself localhost
                  OUTBOX_LEASE_SECONDS=1, OUTBOX_MAX_ATTEMPTS=3)
    return config


def work(app) -> None:
    """Run the worker once, as cron would."""
    with app.app_context():
        Worker(app).run(once=True)


def rows(app, model, *where):
    with app.app_context():
        return list(db.session.scalars(select(model).where(*where)))


def urgent_enquiry(client, app) -> Lead:
    response = submit(client, app, need_help_now="yes")
    assert response.status_code == 303
    with app.app_context():
        return db.session.scalars(select(Lead)).one()


def test_urgent_enquiry_reaches_the_on_call_list_once_by_email_and_webhook(app, client, make_user, sink,
                                                                           receiver):
    on_call = make_user(role=Role.COORDINATOR)
    make_user(role=Role.ADMIN)  # not alerted: the on-call list is not empty
    with app.app_context():
        db.session.add(OnCallMember(user_id=on_call.id))
        db.session.commit()
    lead = urgent_enquiry(client, app)
    assert len(sink.raw) == 0  # nothing is sent from the request
    work(app)
    work(app)  # a second run sends nothing more
    assert [m["To"] for m in sink.messages] == [on_call.email]
    message = sink.messages[0]
    assert message["Subject"] == f"Urgent enquiry {lead.reference}"
    assert f"{BASE_URL}/leads/{lead.id}" in message.get_content()
    assert lead.reference in message.get_content()
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    expected = hmac.new(WEBHOOK_SECRET.encode(), headers["x-crm-timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["x-crm-signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["kind"] == "urgent_enquiry" and payload["reference"] == lead.reference
    assert payload["link"] == f"{BASE_URL}/leads/{lead.id}"
    sent = rows(app, OutboxMessage)
    assert {m.status for m in sent} == {"sent"} and len(sent) == 2
    assert [a.user_id for a in rows(app, Alert)] == [on_call.id]


def test_urgent_enquiry_falls_back_to_every_admin(app, client, make_user, sink):
    admins = {make_user(role=Role.ADMIN).email, make_user(role=Role.ADMIN).email}
    make_user(role=Role.COORDINATOR)
    make_user(role=Role.ADMIN, is_active_flag=False)
    urgent_enquiry(client, app)
    work(app)
    assert {m["To"] for m in sink.messages} == admins and len(sink.messages) == 2


def test_an_ordinary_enquiry_alerts_nobody_at_once(app, client, make_user, sink):
    make_user(role=Role.ADMIN)
    assert submit(client, app).status_code == 303
    work(app)
    assert sink.raw == [] and rows(app, OutboxMessage) == []


def test_a_rolled_back_enquiry_leaves_no_alert(app, make_user):
    make_user(role=Role.ADMIN)
    with app.test_request_context():
        submission = _crisis_submission()
        receipt = intake.receive_enquiry(intake.prepare_enquiry(submission))
        assert receipt.urgent
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 2  # e-mail + webhook
        db.session.rollback()
    assert rows(app, OutboxMessage) == [] and rows(app, Alert) == [] and rows(app, Lead) == []


def _crisis_submission() -> intake.Submission:
    return intake.Submission(
        contact=intake.Contact(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME,
                               dob=dt.date(1984, 3, 9), phone=sentinels.PHONE, email=sentinels.EMAIL),
        coverage=intake.Coverage(coverage_type="ppo", member_id=sentinels.MEMBER_ID),
        consent=intake.Consent(version="2026-01", ip="127.0.0.1", privacy_ack=True, marketing=False),
        idempotency_digest="d" * 64, crisis=True, answers={"message": sentinels.MESSAGE})


def test_smtp_down_for_the_first_tries_is_delivered_later_once(app, client, make_user, sink):
    admin = make_user(role=Role.ADMIN)
    sink.stop()
    urgent_enquiry(client, app)
    with app.app_context():
        worker = Worker(app)
        for expected_attempts in (1, 2):
            outbox.deliver(worker.senders)  # one claim: a single try however busy the machine
            message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "email")).one()
            assert (message.status, message.attempts) == ("pending", expected_attempts)
            assert message.last_error.startswith("smtp_")
            db.session.rollback()
            time.sleep(0.25)  # past the back-off (0.05 s, then 0.1 s)
        sink.start()
        worker.run(once=True)
        worker.run(once=True)
    assert [m["To"] for m in sink.messages] == [admin.email]
    message = rows(app, OutboxMessage, OutboxMessage.channel == "email")[0]
    assert (message.status, message.attempts, message.last_error) == ("sent", 3, None)


def test_after_the_last_retry_admins_see_it_failed_and_can_resend(app, client, make_user, login_as, sink):
    admin = make_user(role=Role.ADMIN)
    sink.stop()
    lead = urgent_enquiry(client, app)
    for _ in range(3):
        work(app)
        time.sleep(0.25)
    failed = rows(app, OutboxMessage, OutboxMessage.channel == "email")[0]
    assert (failed.status, failed.attempts) == ("failed", 3)
    login_as(client, admin)
    page = client.get("/alerts/failed").get_data(as_text=True)
    assert f"Urgent enquiry {lead.reference}" in page and admin.email in page and "smtp_" in page
    assert client.post(f"/alerts/failed/{failed.id}/resend").status_code == 302
    again = rows(app, OutboxMessage, OutboxMessage.id == failed.id)[0]
    assert (again.status, again.attempts) == ("pending", 0)
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "alert_resent")).one()
        assert (event.actor_id, event.object_id) == (admin.id, failed.id)
    sink.start()
    work(app)
    assert [m["To"] for m in sink.messages] == [admin.email]
    assert "Every message was delivered" in client.get("/alerts/failed").get_data(as_text=True)


def test_failed_list_and_on_call_are_for_admins_only(client, make_user, login_as):
    login_as(client, make_user(role=Role.COORDINATOR))
    assert client.get("/alerts/failed").status_code == 403
    assert client.get("/alerts/on-call").status_code == 403
    assert client.post("/alerts/on-call", data={"members": []}).status_code == 403


def test_webhook_refusing_is_retried_with_the_same_idempotency_key(app, client, make_user, receiver, sink):
    make_user(role=Role.ADMIN)
    receiver.status = 503
    urgent_enquiry(client, app)
    with app.app_context():
        senders = Worker(app).senders
        outbox.deliver(senders)  # one claim: a single try however busy the machine
        time.sleep(0.1)
        receiver.status = 200
        outbox.deliver(senders)
    keys = [headers["idempotency-key"] for headers, _body in receiver.requests]
    assert len(keys) == 2 and len(set(keys)) == 1
    assert rows(app, OutboxMessage, OutboxMessage.channel == "webhook")[0].status == "sent"


def test_on_call_list_is_chosen_by_an_admin_and_audited(app, client, make_user, login_as):
    admin, coordinator = make_user(role=Role.ADMIN), make_user(role=Role.COORDINATOR)
    login_as(client, admin)
    page = client.get("/alerts/on-call").get_data(as_text=True)
    assert coordinator.email in page and "every admin is alerted" in page
    assert client.post("/alerts/on-call", data={"members": [coordinator.id]}).status_code == 302
    assert [m.user_id for m in rows(app, OnCallMember)] == [coordinator.id]
    assert client.post("/alerts/on-call", data={"members": ["not-a-user"]}).status_code == 400
    assert [m.user_id for m in rows(app, OnCallMember)] == [coordinator.id]
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "settings_changed")).one()
        assert json.loads(event.details) == {"members": [coordinator.id]}


def test_unread_count_in_header_list_and_mark_read(app, client, make_user, login_as):
    admin = make_user(role=Role.ADMIN)
    urgent_enquiry(client, app)
    urgent_enquiry_again = submit(client, app, need_help_now="yes", phone="(949) 555-0199",
                                  email="other.person@example.org", dob="1990-01-02")
    assert urgent_enquiry_again.status_code == 303
    login_as(client, admin)
    home = client.get("/leads/home").get_data(as_text=True)
    assert re.search(r'Alerts <span class="badge badge-unread" aria-label="2 unread">2</span>', home)
    listing = client.get("/alerts/").get_data(as_text=True)
    assert listing.count('class="unread"') == 2
    first = rows(app, Alert)[0]
    assert client.post(f"/alerts/{first.id}/read").status_code == 302
    assert 'aria-label="1 unread"' in client.get("/leads/home").get_data(as_text=True)
    assert client.post("/alerts/read-all", follow_redirects=True).status_code == 200
    assert "badge-unread" not in client.get("/leads/home").get_data(as_text=True)
    assert all(a.read_at for a in rows(app, Alert))


def test_someone_elses_alert_cannot_be_marked_read(app, client, make_user, login_as):
    owner, other = make_user(role=Role.ADMIN), make_user(role=Role.ADMIN)
    urgent_enquiry(client, app)
    theirs = rows(app, Alert, Alert.user_id == owner.id)[0]
    login_as(client, other)
    assert client.post(f"/alerts/{theirs.id}/read").status_code == 404
    assert rows(app, Alert, Alert.id == theirs.id)[0].read_at is None


def test_alert_choices_on_the_account_page(app, client, make_user, login_as):
    user = make_user(role=Role.COORDINATOR, password_hash=PASSWORD_HASH)
    login_as(client, user)
    page = client.get("/auth/account").get_data(as_text=True)
    assert "Save alert choices" in page and page.count('name="kinds"') == len(alerts.CHOOSABLE)
    assert client.post("/alerts/preferences", data={"kinds": ["callback_overdue"]}).status_code == 302
    with app.app_context():
        off = {kind for _uid, kind in alerts.disabled_kinds([user.id])}
    assert off == set(alerts.CHOOSABLE) - {"callback_overdue"}
    page = client.get("/auth/account").get_data(as_text=True)
    assert re.search(r'value="callback_overdue"[^>]*checked|checked[^>]*value="callback_overdue"', page)
    assert not re.search(r'value="first_response"[^>]*checked', page)


def test_invitation_is_emailed_with_a_working_link_that_is_not_stored_in_clear(app, client, make_user,
                                                                                login_as, sink):
    admin = make_user(role=Role.ADMIN)
    login_as(client, admin)
    page = client.post("/admin/users/new", data={"email": "new.person@clinic.test", "role": "coordinator",
                                                 "display_name": "New Person"}).get_data(as_text=True)
    assert "E-mailed" in page
    shown = re.search(r'value="(https?://[^"]+/auth/invitation/[^"]+)"', page).group(1)
    token = shown.rsplit("/", 1)[1]
    queued = rows(app, OutboxMessage)
    assert len(queued) == 1 and token not in queued[0].body and queued[0].secret_sealed
    assert token.encode() not in bytes(queued[0].secret_sealed)
    work(app)
    message = sink.messages[0]
    assert message["To"] == "new.person@clinic.test" and message["Subject"] == "Your sign-in link"
    assert f"{BASE_URL}/auth/invitation/{token}" in message.get_content()
    assert rows(app, OutboxMessage)[0].secret_sealed is None  # the link is gone once sent
    client.post("/auth/logout")
    assert client.get(f"/auth/invitation/{token}").status_code == 200


def test_second_factor_reset_is_emailed(app, client, make_user, login_as, sink):
    admin, user = make_user(role=Role.ADMIN), make_user(role=Role.COORDINATOR)
    login_as(client, admin)
    assert client.post(f"/admin/users/{user.id}/second-factor/reset").status_code == 302
    work(app)
    assert [(m["To"], m["Subject"]) for m in sink.messages] == [(user.email, "Two-step sign-in was reset")]
    assert f"{BASE_URL}/auth/login" in sink.messages[0].get_content()


def test_links_come_from_base_url_never_the_request_host(app, make_user, sink):
    invited = make_user(role=Role.COORDINATOR)
    app.config["TRUSTED_HOSTS"] = None  # even if a request with another Host got through, links keep BASE_URL
    with app.test_request_context("/admin/users/new", base_url="http://evil.example"):
        alerts.invitation_email(db.session.get(User, invited.id), url_for("auth.accept_invitation", token="t0k"), 72)
        db.session.commit()
    work(app)
    body = sink.messages[0].get_content()
    assert "evil.example" not in body and f"{BASE_URL}/auth/invitation/t0k" in body


def test_screening_needing_review_alerts_clinicians(app, make_user, make_lead, sink):
    clinician, coordinator = make_user(role=Role.CLINICIAN), make_user(role=Role.COORDINATOR)
    lead_id = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME)
    with app.test_request_context():
        lead = db.session.get(Lead, lead_id)
        answers = {**PASSING, "caution_bp": "yes"}  # a caution item: a clinician must review
        screening = screening_ops.record_screening(lead, db.session.get(User, coordinator.id), answers,
                                                   PHQ_MODERATE, NO_RISK)
        assert screening.outcome == "needs_review"
        db.session.commit()
        reference = lead.reference
    work(app)
    assert [(m["To"], m["Subject"]) for m in sink.messages] == [(clinician.email, f"Sign-off waiting {reference}")]


def test_no_email_rows_when_smtp_is_off_and_the_worker_says_so_once(config, tmp_path, make_user, caplog):
    config.update(SMTP_URL=None, ALERT_WEBHOOK_URL=None)
    app = create_app(config, instance_path=str(tmp_path / "instance-off"))
    with app.app_context():
        db.create_all()
    with app.app_context():
        db.session.add(User(email="admin@clinic.test", role=Role.ADMIN))
        db.session.commit()
    with app.test_request_context():
        intake.receive_enquiry(intake.prepare_enquiry(_crisis_submission()))
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert db.session.scalar(select(func.count()).select_from(Alert)) == 1
    with app.app_context():
        caplog.clear()
        Worker(app).run(once=True)
        db.session.remove()
        db.engine.dispose()
    assert [r.getMessage() for r in caplog.records].count(
        "e-mail is off (CRM_SMTP_URL is not set): alerts appear in the app only") == 1


def test_claims_do_not_overlap_and_marking_twice_changes_nothing(app, make_user):
    user = make_user(role=Role.ADMIN)
    with app.app_context():
        account = db.session.get(User, user.id)
        now = dt.datetime(2026, 1, 5, 12, 0)
        for n in range(5):
            alerts.queue(f"k{n}", "email", "test", account, "Subject", "Body", now)
        db.session.commit()
        first = outbox.claim(3, now)
        second = outbox.claim(10, now)
        assert len(first) == 3 and len(second) == 2
        assert not {c.id for c in first} & {c.id for c in second}
        assert outbox.claim(10, now) == []  # all leased
        assert outbox.mark_sent([first[0].id]) == 1 and outbox.mark_sent([first[0].id]) == 0
        later = now + dt.timedelta(seconds=5)  # past the 1 s lease: unsent rows are due again
        assert {c.id for c in outbox.claim(10, later)} == {c.id for c in first[1:] + second}


def test_every_periodic_alert_arrives_once_by_email_and_webhook_with_subject_and_link(app, make_user, make_lead,
                                                                                      sink, receiver):
    coordinator = make_user(role=Role.COORDINATOR)
    phi = {"first_name": sentinels.FIRST_NAME, "last_name": sentinels.LAST_NAME, "phone": sentinels.PHONE,
           "email": sentinels.EMAIL}
    uncalled = make_lead(created_at=dt.datetime(2026, 3, 4, 18, 0), assignee_id=coordinator.id, **phi)
    waiting = make_lead(created_at=dt.datetime(2026, 3, 2, 18, 0), stage="contacting", assignee_id=coordinator.id,
                        first_attempt_at=dt.datetime(2026, 3, 2, 18, 1), **phi)
    with app.app_context():
        db.session.add(Callback(lead_id=waiting, assignee_id=coordinator.id, due_at=dt.datetime(2026, 3, 4, 16, 0)))
        db.session.commit()
        references = dict(db.session.execute(select(Lead.id, Lead.reference)).all())
    for _ in range(2):
        app.config["DIGEST_TIME"] = "07:30"
        with time_machine.travel(dt.datetime(2026, 3, 4, 18, 10, tzinfo=dt.UTC), tick=False), app.app_context():
            periodic.run_all(utcnow())  # Wednesday 10:10 in the clinic
        app.config["DIGEST_TIME"] = None  # the worker's own round runs at today's real time
        work(app)
    by_subject = {m["Subject"]: m for m in sink.messages}
    assert sorted(by_subject) == sorted([f"First call late {references[uncalled]}",
                                         f"Callback overdue {references[waiting]}",
                                         "Morning summary: 0 due today, 1 overdue"])
    assert {m["To"] for m in sink.messages} == {coordinator.email}
    assert f"{BASE_URL}/leads/{uncalled}" in by_subject[f"First call late {references[uncalled]}"].get_content()
    assert f"{BASE_URL}/leads/{waiting}" in by_subject[f"Callback overdue {references[waiting]}"].get_content()
    assert sorted(p["kind"] for p in receiver.payloads()) == ["callback_overdue", "first_response"]
