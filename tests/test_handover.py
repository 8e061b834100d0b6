"""Handing over a leaver's open leads and callbacks when their account is deactivated."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from crm.models import AuditEvent, Callback, Lead, LeadEvent, Role, Stage, User, db, utcnow
from crm.operations import leads as lead_ops
from tests.auth_helpers import PASSWORD_HASH


@pytest.fixture
def admin(make_user):
    """An admin (a second admin keeps the last-admin guard out of the way)."""
    make_user(role=Role.ADMIN)
    return make_user(email="boss@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH)


@pytest.fixture
def admin_client(app, admin, login_as):
    client = app.test_client()
    login_as(client, admin)
    return client


@pytest.fixture
def team(make_user, make_lead, app):
    """A leaver with two open leads, a converted and a closed one, and three open callbacks
    (one on a colleague's lead, one done); a colleague, a former coordinator and a clinician."""
    leaver = make_user(email="leaver@clinic.test", display_name="Lee Leaver")
    colleague = make_user(email="colleague@clinic.test", display_name="Cora Colleague")
    former = make_user(email="former@clinic.test", display_name="Fay Former", is_active_flag=False)
    clinician = make_user(email="doc@clinic.test", role=Role.CLINICIAN)
    open_ids = [make_lead(stage=Stage.NEW, assignee_id=leaver.id),
                make_lead(stage=Stage.SCREENING, assignee_id=leaver.id)]
    closed_ids = [make_lead(stage=Stage.CONVERTED, assignee_id=leaver.id),
                  make_lead(stage=Stage.CLOSED, stage_reason="cost", assignee_id=leaver.id)]
    others = make_lead(stage=Stage.CONTACTING, assignee_id=colleague.id)
    due = utcnow() + dt.timedelta(days=1)
    with app.app_context():
        db.session.add_all([
            Callback(id="cb-own", lead_id=open_ids[0], assignee_id=leaver.id, due_at=due),
            Callback(id="cb-own-2", lead_id=open_ids[1], assignee_id=leaver.id, due_at=due),
            Callback(id="cb-covering", lead_id=others, assignee_id=leaver.id, due_at=due),
            Callback(id="cb-done", lead_id=open_ids[0], assignee_id=leaver.id, due_at=due, done_at=utcnow()),
        ])
        db.session.commit()
    return {"leaver": leaver, "colleague": colleague, "former": former, "clinician": clinician,
            "open": open_ids, "closed": closed_ids, "others": others}


def _assignees(app, ids) -> list[str | None]:
    with app.app_context():
        return [db.session.get(Lead, lead_id).assignee_id for lead_id in ids]


def _callback_assignees(app) -> dict[str, str | None]:
    with app.app_context():
        return dict(db.session.execute(select(Callback.id, Callback.assignee_id)).all())


def _active(app, user) -> bool:
    with app.app_context():
        return db.session.get(User, user.id).is_active_flag


def _audit(app, action):
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.seq)))


def _deactivate(client, user, **data):
    return client.post(f"/admin/users/{user.id}/deactivate", data=data, follow_redirects=True)


def _unchanged(app, team) -> bool:
    leaver = team["leaver"].id
    return (_active(app, team["leaver"])
            and _assignees(app, team["open"] + team["closed"]) == [leaver] * 4
            and all(v == leaver for k, v in _callback_assignees(app).items())
            and not _audit(app, "work_handed_over"))


def test_the_detail_page_asks_where_the_open_work_goes(app, admin_client, team):
    page = admin_client.get(f"/admin/users/{team['leaver'].id}").get_data(as_text=True)
    assert "Still holds 2 open leads and 3 open callbacks." in page
    assert 'name="handover"' in page and 'value="pool"' in page
    assert f'value="{team["colleague"].id}"' in page
    for unfit in ("former", "clinician", "leaver"):
        assert f'<option value="{team[unfit].id}"' not in page


def test_deactivating_with_open_work_and_no_choice_is_refused(app, admin_client, team):
    page = _deactivate(admin_client, team["leaver"]).get_data(as_text=True)
    assert "still holds 2 open lead(s) and 3 open callback(s): choose who takes them over" in page
    assert _unchanged(app, team)
    assert not _audit(app, "user_deactivated")


@pytest.mark.parametrize("unfit", ["former", "clinician", "leaver", "unknown"])
def test_an_inactive_or_non_coordinator_successor_is_refused(app, admin_client, team, unfit):
    target = team[unfit].id if unfit != "unknown" else "00000000-0000-0000-0000-000000000000"
    page = _deactivate(admin_client, team["leaver"], handover=target).get_data(as_text=True)
    assert "can go only to another active coordinator, or back to the unassigned pool" in page
    assert _unchanged(app, team)


def test_handover_to_a_coordinator_moves_every_open_lead_and_callback(app, admin_client, team):
    leaver, colleague = team["leaver"], team["colleague"]
    page = _deactivate(admin_client, leaver, handover=colleague.id).get_data(as_text=True)
    assert "2 open leads and 3 open callbacks handed over." in page
    assert not _active(app, leaver)
    assert _assignees(app, team["open"]) == [colleague.id, colleague.id]
    assert _assignees(app, team["closed"]) == [leaver.id, leaver.id]  # history stays as it was
    assert _callback_assignees(app) == {"cb-own": colleague.id, "cb-own-2": colleague.id,
                                        "cb-covering": colleague.id, "cb-done": leaver.id}
    [summary] = _audit(app, "work_handed_over")
    assert summary.object_id == leaver.id
    assert json.loads(summary.details) == {"to": colleague.id, "leads": 2, "callbacks": 3}
    moved = _audit(app, "lead_assigned")
    assert sorted(e.object_id for e in moved) == sorted(team["open"])
    assert all(json.loads(e.details) == {"assignee": colleague.id, "from": leaver.id, "via": "handover"}
               for e in moved)
    assert [e.action for e in _audit(app, "user_deactivated")] == ["user_deactivated"]
    with app.app_context():
        events = db.session.scalars(select(LeadEvent).where(LeadEvent.kind == "assigned")).all()
        assert sorted(e.lead_id for e in events) == sorted(team["open"])
        assert {e.reason for e in events} == {"handover"}
    timeline = admin_client.get(f"/leads/{team['open'][0]}").get_data(as_text=True)
    assert "Handed over" in timeline and "Cora Colleague" in timeline


def test_handover_to_the_pool_unassigns_and_leaves_covering_callbacks_with_the_leads_coordinator(
        app, admin_client, team):
    _deactivate(admin_client, team["leaver"], handover="pool")
    assert not _active(app, team["leaver"])
    assert _assignees(app, team["open"]) == [None, None]
    assert _assignees(app, team["closed"]) == [team["leaver"].id] * 2
    callbacks = _callback_assignees(app)
    assert (callbacks["cb-own"], callbacks["cb-own-2"]) == (None, None)
    assert callbacks["cb-covering"] == team["colleague"].id
    [summary] = _audit(app, "work_handed_over")
    assert json.loads(summary.details) == {"to": "pool", "leads": 2, "callbacks": 3}


def test_a_failure_midway_moves_nothing(app, admin_client, team, monkeypatch):
    real, calls = lead_ops.record, []

    def fail_on_second(action, *args, **kwargs):
        calls.append(action)
        if len(calls) == 2:
            raise RuntimeError("storage failed")
        return real(action, *args, **kwargs)

    monkeypatch.setattr(lead_ops, "record", fail_on_second)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = admin_client.post(f"/admin/users/{team['leaver'].id}/deactivate",
                                 data={"handover": team["colleague"].id})
    assert response.status_code == 500
    assert len(calls) == 2  # the first lead had moved when the second failed
    assert _unchanged(app, team)
    with app.app_context():
        assert not db.session.scalars(select(LeadEvent).where(LeadEvent.kind == "assigned")).all()
    assert not _audit(app, "lead_assigned") and not _audit(app, "user_deactivated")


def test_an_account_without_open_work_needs_no_choice(app, admin_client, make_user, make_lead):
    user = make_user()
    make_lead(stage=Stage.CLOSED, stage_reason="cost", assignee_id=user.id)
    page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert 'name="handover"' not in page
    _deactivate(admin_client, user)
    assert not _active(app, user) and not _audit(app, "work_handed_over")


def test_the_lead_list_assignee_filter_lists_former_staff(app, admin_client, team):
    _deactivate(admin_client, team["leaver"], handover="pool")
    page = admin_client.get("/leads/").get_data(as_text=True)
    assert f'<option value="{team["leaver"].id}">Lee Leaver (inactive)</option>' in page
    assert f'<option value="{team["former"].id}">Fay Former (inactive)</option>' in page
    assert f'<option value="{team["colleague"].id}">Cora Colleague</option>' in page
    listed = admin_client.get(f"/leads/?assignee={team['leaver'].id}&stage=").get_data(as_text=True)
    with app.app_context():
        references = [db.session.get(Lead, i).reference for i in team["closed"]]
    assert all(reference in listed for reference in references)
