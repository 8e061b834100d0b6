"""Break-glass emergency access (issue 12, item 15; security.md control 7)."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, text

from crm.models import EmergencyGrant, Role, db, new_id, utcnow
from tests.auth_helpers import PASSWORD_HASH, audit_events, give_totp, sign_in

START = dt.datetime(2026, 3, 2, 15, 0, 10, tzinfo=dt.UTC)
REASON = "Authenticator lost during a patient's crisis call; admin unreachable"


def _path(response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


@pytest.fixture
def stranded(app, make_user, time_machine):
    """A coordinator who must use a second factor and has lost the phone that holds it."""
    time_machine.move_to(START, tick=False)
    app.config["SECOND_FACTOR_FOR_PHI"] = True
    user = make_user(email="stranded@clinic.test", password_hash=PASSWORD_HASH)
    give_totp(app, user)
    return user


def _break_glass(runner, *args: str):
    return runner.invoke(args=["break-glass", *args])


def test_a_grant_needs_a_reason(app, runner, stranded):
    result = _break_glass(runner, stranded.email)
    assert result.exit_code == 1 and "give a reason" in result.output
    assert _break_glass(runner, stranded.email, "--reason", "because").exit_code == 1
    with app.app_context():
        assert db.session.scalar(select(EmergencyGrant.id)) is None
    assert audit_events(app, "emergency_access_granted") == []


def test_a_grant_lets_the_user_in_without_the_factor_and_alerts_every_admin(app, runner, stranded, make_user,
                                                                            login_as):
    assert _path(sign_in(app.test_client(), stranded.email)) == "/auth/second-factor"
    result = _break_glass(runner, stranded.email, "--reason", REASON, "--minutes", "30")
    assert result.exit_code == 0 and "Every admin is alerted" in result.output
    granted = audit_events(app, "emergency_access_granted")
    assert len(granted) == 1 and granted[0].object_id == stranded.id and granted[0].actor_kind == "system"
    details = json.loads(granted[0].details)
    assert (details["severity"], details["notify"], details["minutes"]) == ("high", "all_admins", 30)
    client = app.test_client()
    assert _path(sign_in(client, stranded.email)) == "/leads/home"
    assert json.loads(audit_events(app, "sign_in")[-1].details) == {"second_factor": "waived_emergency"}
    assert client.get("/leads/home").status_code == 200
    uses = audit_events(app, "emergency_access_used")
    assert [(u.actor_id, u.object_id, json.loads(u.details)["emergency"]) for u in uses] == [
        (stranded.id, "leads.home", True)]
    admin = app.test_client()
    login_as(admin, make_user(role=Role.ADMIN))
    banner = admin.get("/admin/users").get_data(as_text=True)
    assert "Emergency access in force." in banner and "stranded@clinic.test may sign in" in banner


def test_the_reason_is_stored_sealed(app, runner, stranded):
    _break_glass(runner, stranded.email, "--reason", REASON)
    with app.app_context(), db.engine.connect() as conn:
        blob = conn.execute(text("SELECT reason_sealed FROM emergency_grants")).scalar_one()
    assert b"crisis" not in bytes(blob) and bytes(blob)[0] == 0x02


def test_the_grant_ends_at_its_time_limit(app, runner, stranded, time_machine):
    _break_glass(runner, stranded.email, "--reason", REASON, "--minutes", "30")
    client = app.test_client()
    sign_in(client, stranded.email)
    for _ in range(2):
        time_machine.shift(dt.timedelta(minutes=14))
        assert client.get("/leads/home").status_code == 200
    time_machine.shift(dt.timedelta(minutes=3))  # 31 minutes after the grant
    assert _path(client.get("/leads/home")) == "/auth/second-factor"
    assert _path(sign_in(app.test_client(), stranded.email)) == "/auth/second-factor"


def test_the_grant_can_be_ended_early_and_that_is_audited(app, runner, stranded):
    _break_glass(runner, stranded.email, "--reason", REASON)
    result = _break_glass(runner, stranded.email, "--end")
    assert result.exit_code == 0 and "ended" in result.output
    assert _path(sign_in(app.test_client(), stranded.email)) == "/auth/second-factor"
    assert json.loads(audit_events(app, "emergency_access_ended")[0].details)["severity"] == "high"


def test_a_grant_row_forged_in_the_database_grants_nothing(app, stranded):
    now = utcnow()
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("INSERT INTO emergency_grants (id, user_id, reason_sealed, granted_at, expires_at) "
                          "VALUES (:id, :user, :blob, :now, :later)"),
                     {"id": new_id(), "user": stranded.id, "blob": b"\x02forged", "now": now,
                      "later": now + dt.timedelta(hours=1)})
    assert _path(sign_in(app.test_client(), stranded.email)) == "/auth/second-factor"


def test_a_grant_lifts_a_sign_in_lock(app, runner, stranded):
    app.config.update(LOGIN_LOCK_AFTER=6, LOGIN_BACKOFF_AFTER=100)
    for _ in range(6):
        sign_in(app.test_client(), stranded.email, "wrong wrong wrong wrong")
    assert sign_in(app.test_client(), stranded.email).status_code == 429
    _break_glass(runner, stranded.email, "--reason", REASON)
    assert _path(sign_in(app.test_client(), stranded.email)) == "/leads/home"
