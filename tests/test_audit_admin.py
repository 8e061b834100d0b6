"""The admin audit viewer: access, filters, keyset pages, a lead's access history and CSV export."""

import csv
import datetime as dt
import io
import json
import re
import uuid

import pytest
from sqlalchemy import select, update

from crm import audit
from crm.models import AuditEvent, Lead, Role, UserSession, db, utcnow
from tests import sentinels
from tests.auth_helpers import audit_events


def seqs(response) -> list[int]:
    """The seqs of the event rows on a page, in display order."""
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', response.text)]


@pytest.fixture
def admin(client, make_user, login_as):
    user = make_user(email="admin@clinic.test", role=Role.ADMIN)
    login_as(client, user)
    return user


@pytest.fixture
def log(app, make_user, make_lead):
    """Events by two staff on two leads over three clinic days (America/Los_Angeles)."""
    ana = make_user(email="ana@clinic.test")
    ben = make_user(email="ben@clinic.test")
    lead_a = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME,
                       phone=sentinels.PHONE, email=sentinels.EMAIL)
    lead_b = make_lead()
    plan = [  # (UTC time, actor, action, lead)
        (dt.datetime(2026, 3, 2, 17, 0), ana, "lead_viewed", lead_a),  # Mar 2, 09:00 local
        (dt.datetime(2026, 3, 3, 7, 30), ana, "field_revealed", lead_a),  # Mar 2, 23:30 local
        (dt.datetime(2026, 3, 3, 8, 30), ben, "lead_viewed", lead_b),  # Mar 3, 00:30 local
        (dt.datetime(2026, 3, 3, 20, 0), ben, "stage_changed", lead_a),  # Mar 3, 12:00 local
        (dt.datetime(2026, 3, 4, 18, 0), ana, "note_added", lead_b),  # Mar 4, 10:00 local
    ]
    with app.app_context():
        for at, actor, action, lead in plan:
            audit.record(action, actor=actor, object_type="lead", object_id=lead, at=at)
        db.session.commit()
        reference = db.session.get(Lead, lead_a).reference
    return {"ana": ana, "ben": ben, "lead_a": lead_a, "lead_b": lead_b, "reference_a": reference}


# --- access ------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("get", "/admin/audit"),
    ("get", f"/admin/leads/{uuid.uuid4()}/access"),
    ("post", "/admin/audit/export"),
])
def test_coordinators_get_403_and_the_denial_is_audited(app, client, make_user, login_as, method, path):
    coordinator = make_user(role=Role.COORDINATOR)
    login_as(client, coordinator)
    response = getattr(client, method)(path)
    assert response.status_code == 403
    denied = audit_events(app, "access_denied")
    assert [(e.actor_id, e.outcome) for e in denied] == [(coordinator.id, "denied")]
    assert audit_events(app, "audit_viewed", "audit_exported") == []


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/admin/audit")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


# --- the log -----------------------------------------------------------------------------


def test_the_log_lists_newest_first_with_actor_emails_and_viewing_is_audited(app, client, admin, log):
    response = client.get("/admin/audit")
    assert response.status_code == 200
    assert seqs(response) == [5, 4, 3, 2, 1]  # its own audit_viewed event comes after the read
    assert "ana@clinic.test" in response.text and "ben@clinic.test" in response.text
    viewed = audit_events(app, "audit_viewed")
    assert [(e.actor_id, e.object_type, json.loads(e.details)) for e in viewed] == [
        (admin.id, "audit", {"page": "log"})
    ]
    assert viewed[0].request_id == response.headers["X-Request-Id"]


@pytest.mark.parametrize("query, expected", [
    ({"action": "lead_viewed"}, [3, 1]),
    ({"user": "ben"}, [4, 3]),
    ({"lead": "lead_a"}, [4, 2, 1]),
    ({"lead": "reference_a"}, [4, 2, 1]),
    ({"date_from": "2026-03-03", "date_to": "2026-03-03"}, [4, 3]),  # clinic-local days
    ({"date_from": "2026-03-02", "date_to": "2026-03-02"}, [2, 1]),
    ({"date_from": "2026-03-04"}, [5]),
    ({"user": "ana", "lead": "lead_a", "date_to": "2026-03-02"}, [2, 1]),
    ({"action": "stage_changed", "user": "ana"}, []),
])
def test_filters_select_by_user_lead_action_and_date(app, client, admin, log, query, expected):
    resolved = {k: (log[v].id if v in ("ana", "ben") else log.get(v, v)) for k, v in query.items()}
    response = client.get("/admin/audit", query_string=resolved)
    assert response.status_code == 200
    assert seqs(response) == expected
    details = json.loads(audit_events(app, "audit_viewed")[-1].details)
    assert details["page"] == "log" and details.get("action") == resolved.get("action")


@pytest.mark.parametrize("query, message", [
    ({"date_from": "yesterday"}, "Not a valid date value."),
    ({"date_from": "2026-03-04", "date_to": "2026-03-01"}, "The end date is before the start date."),
    ({"lead": "Robert'); DROP TABLE"}, "Enter a lead reference like ABCD-EFGH or a lead id."),
    ({"lead": "ZZZZ-ZZZZ"}, "No lead has that reference."),
    ({"action": "anything_else"}, "Not a valid choice."),
])
def test_bad_filters_show_an_error_and_no_events(client, admin, log, query, message):
    response = client.get("/admin/audit", query_string=query)
    assert response.status_code == 200
    assert message in response.text
    assert seqs(response) == []


def record_alternating_events(app, count: int) -> None:
    """Events 1..count: odd seqs ``stage_changed``, even seqs ``lead_viewed``."""
    with app.app_context():
        for n in range(count):
            audit.record("lead_viewed" if n % 2 else "stage_changed", object_type="lead", object_id=f"l{n}")
        db.session.commit()


def test_keyset_pages_cover_every_event_once_in_both_directions(app, client, admin, monkeypatch):
    monkeypatch.setattr(audit, "PAGE_SIZE", 50)
    record_alternating_events(app, 120)
    first = client.get("/admin/audit")
    assert seqs(first) == list(range(120, 70, -1)) and "Newer" not in first.text
    older = re.search(r'href="([^"]+before=71[^"]*)"', first.text).group(1).replace("&amp;", "&")
    second = client.get(older)
    assert seqs(second) == list(range(70, 20, -1))
    last = client.get("/admin/audit?before=21")
    assert seqs(last) == list(range(20, 0, -1)) and "Older" not in last.text
    newer = re.search(r'href="([^"]+after=20[^"]*)"', last.text).group(1).replace("&amp;", "&")
    assert seqs(client.get(newer)) == list(range(70, 20, -1))


def test_pages_keep_their_filter(app, client, admin, monkeypatch):
    monkeypatch.setattr(audit, "PAGE_SIZE", 50)
    record_alternating_events(app, 130)
    first = client.get("/admin/audit?action=stage_changed")
    assert seqs(first) == list(range(129, 29, -2))
    link = re.search(r'href="([^"]+before=31[^"]*)"', first.text).group(1).replace("&amp;", "&")
    assert "action=stage_changed" in link
    assert seqs(client.get(link)) == list(range(29, 0, -2))


def test_page_query_uses_an_index_for_each_filter(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
        for filters, index in [
            (audit.AuditFilter(action="lead_viewed"), "ix_audit_action_seq"),
            (audit.AuditFilter(actor_id="x"), "ix_audit_actor_seq"),
            (audit.AuditFilter(actor_id="x", since=dt.datetime(2026, 1, 1), until=dt.datetime(2026, 1, 2)),
             "ix_audit_actor_seq"),
            (audit.AuditFilter(lead_id="x"), "ix_audit_object"),
        ]:
            stmt = select(AuditEvent.seq).where(*filters.criteria()).order_by(AuditEvent.seq.desc()).limit(51)
            sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r) for r in db.session.execute(db.text(f"EXPLAIN QUERY PLAN {sql}")))
            assert index in plan and "TEMP B-TREE" not in plan, plan


# --- one lead's access history -------------------------------------------------------------


def test_lead_access_lists_everyone_who_touched_the_lead_and_no_phi(app, client, admin, log):
    response = client.get(f"/admin/leads/{log['lead_a']}/access")
    assert response.status_code == 200
    assert seqs(response) == [4, 2, 1]
    assert log["reference_a"] in response.text
    assert "ana@clinic.test" in response.text and "ben@clinic.test" in response.text
    assert not [s for s in sentinels.ALL if s in response.text]
    viewed = audit_events(app, "audit_viewed")[-1]
    assert (viewed.actor_id, viewed.object_type, viewed.object_id) == (admin.id, "lead", log["lead_a"])
    assert seqs(client.get(f"/admin/leads/{log['lead_a']}/access")) == [6, 4, 2, 1]  # the last view shows


def test_lead_access_is_linked_from_the_log(client, admin, log):
    assert f'/admin/leads/{log["lead_b"]}/access' in client.get("/admin/audit").text


def test_lead_access_outlives_a_shredded_lead_and_404s_for_unknown_ids(app, client, admin):
    gone = str(uuid.uuid4())
    with app.app_context():
        audit.record("lead_viewed", object_type="lead", object_id=gone)
        db.session.commit()
    assert seqs(client.get(f"/admin/leads/{gone}/access")) == [1]
    assert client.get(f"/admin/leads/{uuid.uuid4()}/access").status_code == 404
    assert client.get("/admin/leads/not-a-lead/access").status_code == 404


# --- CSV export ----------------------------------------------------------------------------


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_export_is_post_only(client, admin):
    assert client.get("/admin/audit/export").status_code == 405


def test_export_streams_the_filtered_events_and_is_audited(app, client, admin, log):
    response = client.post("/admin/audit/export", data={"lead": log["lead_a"], "user": log["ana"].id})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    rows = csv_rows(response)
    assert [int(r["seq"]) for r in rows] == [1, 2]
    assert list(rows[0]) == list(audit.EXPORT_COLUMNS)
    assert rows[0]["actor_email"] == "ana@clinic.test" and rows[0]["at"] == "2026-03-02T17:00:00.000000Z"
    assert rows[1]["prev_mac"] == rows[0]["mac"]
    exported = audit_events(app, "audit_exported")
    assert [(e.actor_id, json.loads(e.details)) for e in exported] == [
        (admin.id, {"format": "csv", "lead_id": log["lead_a"], "actor_id": log["ana"].id})
    ]


def test_export_applies_clinic_day_and_action_filters(client, admin, log):
    response = client.post("/admin/audit/export",
                           data={"date_from": "2026-03-03", "date_to": "2026-03-03", "action": "stage_changed"})
    assert [int(r["seq"]) for r in csv_rows(response)] == [4]
    response = client.post("/admin/audit/export", data={"date_from": "2026-03-02", "date_to": "2026-03-02"})
    assert [int(r["seq"]) for r in csv_rows(response)] == [1, 2]


def test_export_carries_no_phi(client, admin, log):
    text = client.post("/admin/audit/export", data={}).get_data(as_text=True)
    lines = text.splitlines()
    assert len(lines) == 7 and ",audit_exported," in lines[-1]  # five events, then the export itself
    assert not [s for s in sentinels.ALL if s in text]


def test_export_neutralises_spreadsheet_formulas(app, client, admin, make_user):
    odd = make_user(email="=HYPERLINK(1)@clinic.test")
    with app.app_context():
        audit.record("sign_in", actor=odd, object_type="user", object_id=odd.id)
        db.session.commit()
    rows = csv_rows(client.post("/admin/audit/export", data={"action": "sign_in"}))
    assert rows[0]["actor_email"] == "'=HYPERLINK(1)@clinic.test"


def test_export_needs_recent_reauthentication(app, client, admin, log):
    with app.app_context():
        db.session.execute(update(UserSession).values(reauth_at=utcnow() - dt.timedelta(hours=1)))
        db.session.commit()
    response = client.post("/admin/audit/export", data={"action": "lead_viewed", "next": "/admin/audit"})
    assert response.status_code == 302
    assert "/auth/reauth" in response.headers["Location"]
    assert audit_events(app, "audit_exported") == []


def test_export_needs_a_csrf_token(app, config, client, admin, log):
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post("/admin/audit/export", data={"action": "lead_viewed"})
    assert response.status_code == 400
    assert audit_events(app, "audit_exported") == []


def test_export_with_bad_filters_goes_back_to_the_log(app, client, admin, log):
    response = client.post("/admin/audit/export", data={"date_from": "soon"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/audit")
    assert audit_events(app, "audit_exported") == []


def test_the_log_page_offers_export_with_the_current_filters(client, admin, log):
    page = client.get("/admin/audit", query_string={"action": "lead_viewed", "date_from": "2026-03-02"})
    form = re.search(r'<form method="post" action="/admin/audit/export".*?</form>', page.text, re.S).group(0)
    assert 'name="csrf_token"' in form
    assert 'name="action" value="lead_viewed"' in form and 'name="date_from" value="2026-03-02"' in form
