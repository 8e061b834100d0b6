"""Server-side sessions: new token at sign-in, revocation, idle and absolute expiry, cookies."""

from __future__ import annotations

import datetime as dt
from http.cookies import SimpleCookie

from sqlalchemy import func, select

from crm import crypto
from crm.models import LoginAttempt, Role, User, UserSession, db
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events, session_cookie, sign_in

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


def _signed_in(app, client, make_user, email="staff@clinic.test", **kwargs):
    user = make_user(email=email, password_hash=PASSWORD_HASH, **kwargs)
    response = sign_in(client, email)
    assert response.headers["Location"] == "/leads/home"
    return user


def _home_status(client) -> tuple[int, str]:
    response = client.get("/leads/home")
    return response.status_code, response.headers.get("Location", "")


def _rows(app, user) -> list[UserSession]:
    with app.app_context():
        rows = list(db.session.scalars(select(UserSession).where(UserSession.user_id == user.id)))
        db.session.expunge_all()
        return rows


def test_sign_in_issues_a_new_token_and_a_planted_one_never_authenticates(app, client, make_user):
    with client.session_transaction() as sess:
        sess["_user_id"] = "token-chosen-by-an-attacker"
        sess["_fresh"] = True
    assert _home_status(client)[0] == 302
    before = session_cookie(app, client)
    _signed_in(app, client, make_user)
    with client.session_transaction() as sess:
        token = sess["_user_id"]
    assert token != "token-chosen-by-an-attacker"
    assert session_cookie(app, client) != before
    with app.app_context():
        assert db.session.get(UserSession, crypto.token_digest(token)) is not None
        assert db.session.get(UserSession, crypto.token_digest("token-chosen-by-an-attacker")) is None
        assert db.session.scalar(select(UserSession.id).where(UserSession.id == token)) is None  # only the hash
    assert _home_status(client)[0] == 200


def test_signing_in_again_replaces_the_browser_s_previous_session(app, client, make_user):
    user = _signed_in(app, client, make_user)
    sign_in(client, user.email)
    reasons = sorted(r.revoked_reason or "live" for r in _rows(app, user))
    assert reasons == ["live", "replaced"]


def test_a_cookie_copied_before_sign_out_is_dead_after_it(app, client, make_user):
    user = _signed_in(app, client, make_user)
    copied = session_cookie(app, client)
    response = client.post("/auth/logout")
    assert response.headers["Location"] == "/auth/login"
    replay = app.test_client()
    replay.set_cookie(app.config["SESSION_COOKIE_NAME"], copied)
    status, location = _home_status(replay)
    assert status == 302 and location.startswith("/auth/login")
    assert [r.revoked_reason for r in _rows(app, user)] == ["signed_out"]
    assert [e.actor_id for e in audit_events(app, "sign_out")] == [user.id]


def test_a_session_idle_14_minutes_lives_and_one_idle_16_minutes_is_dead(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user = _signed_in(app, client, make_user)
    time_machine.shift(dt.timedelta(minutes=14))
    assert _home_status(client)[0] == 200
    time_machine.shift(dt.timedelta(minutes=14))
    assert _home_status(client)[0] == 200  # activity moved the idle clock
    time_machine.shift(dt.timedelta(minutes=16))
    status, location = _home_status(client)
    assert status == 302 and location.startswith("/auth/login")
    assert [r.revoked_reason for r in _rows(app, user)] == ["idle"]
    expired = audit_events(app, "session_expired")
    assert [(e.actor_id, e.details) for e in expired] == [(user.id, '{"reason":"idle"}')]
    assert "without activity" in client.get(location).get_data(as_text=True)


def test_last_seen_is_written_at_most_once_a_minute(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user = _signed_in(app, client, make_user)
    [signed_in_at] = [r.last_seen_at for r in _rows(app, user)]
    time_machine.shift(dt.timedelta(seconds=30))
    assert _home_status(client)[0] == 200
    assert [r.last_seen_at for r in _rows(app, user)] == [signed_in_at]  # no write for this page view
    time_machine.shift(dt.timedelta(seconds=31))
    assert _home_status(client)[0] == 200
    assert [r.last_seen_at for r in _rows(app, user)] == [signed_in_at + dt.timedelta(seconds=61)]


def test_idle_limit_is_configurable(config, app, client, make_user, time_machine):
    app.config["SESSION_IDLE_MINUTES"] = 5
    time_machine.move_to(START, tick=False)
    _signed_in(app, client, make_user)
    time_machine.shift(dt.timedelta(minutes=6))
    assert _home_status(client)[0] == 302


def test_a_session_ends_after_12_hours_despite_activity(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user = _signed_in(app, client, make_user)
    for _ in range(51):  # 51 × 14 min = 11 h 54 min, never idle for long
        time_machine.shift(dt.timedelta(minutes=14))
        assert _home_status(client)[0] == 200
    time_machine.shift(dt.timedelta(minutes=7))  # 12 h 1 min after sign-in
    status, location = _home_status(client)
    assert status == 302 and location.startswith("/auth/login")
    assert [r.revoked_reason for r in _rows(app, user)] == ["absolute"]


def test_deactivation_kills_every_session_of_the_user(app, client, make_user, login_as):
    user = _signed_in(app, client, make_user)
    second = app.test_client()
    sign_in(second, user.email)
    admin_client = app.test_client()
    login_as(admin_client, make_user(role=Role.ADMIN))
    response = admin_client.post(f"/admin/users/{user.id}/deactivate")
    assert response.status_code == 302
    for browser in (client, second):
        status, location = _home_status(browser)
        assert status == 302 and location.startswith("/auth/login")
    assert sorted(r.revoked_reason for r in _rows(app, user)) == ["deactivated", "deactivated"]
    assert audit_events(app, "user_deactivated")[0].details == '{"links_ended":0,"sessions_revoked":2}'
    assert sign_in(app.test_client(), user.email).status_code == 200  # refused, as for a wrong password


def test_a_session_of_an_account_deactivated_behind_its_back_dies(app, client, make_user):
    user = _signed_in(app, client, make_user)
    with app.app_context():
        db.session.get(User, user.id).is_active_flag = False
        db.session.commit()
    assert _home_status(client)[0] == 302
    assert [r.revoked_reason for r in _rows(app, user)] == ["deactivated"]


def test_password_change_needs_the_current_password_and_revokes_other_sessions(app, client, make_user):
    user = _signed_in(app, client, make_user)
    other = app.test_client()
    sign_in(other, user.email)
    new = "quiet lantern meadow copper"
    missing = client.post("/auth/password", data={"new_password": new, "confirm": new})
    assert missing.status_code == 400
    wrong = client.post("/auth/password", data={"current_password": "not it at all, sorry", "new_password": new,
                                                "confirm": new})
    assert wrong.status_code == 400
    assert "current password is not correct" in wrong.get_data(as_text=True)
    with app.app_context():  # a wrong current password counts like a failed sign-in
        assert db.session.scalar(select(func.count()).where(LoginAttempt.succeeded.is_(False))) == 1
    assert _home_status(other)[0] == 200
    response = client.post("/auth/password", data={"current_password": PASSWORD, "new_password": new,
                                                   "confirm": new})
    assert response.headers["Location"] == "/auth/account"
    assert _home_status(client)[0] == 200
    assert _home_status(other)[0] == 302
    assert sorted(r.revoked_reason or "live" for r in _rows(app, user)) == ["live", "password_changed"]
    assert sign_in(app.test_client(), user.email, new).status_code == 302
    failed, changed = audit_events(app, "password_changed")
    assert (failed.outcome, failed.details) == ("failure", '{"reason":"wrong_current_password"}')
    assert (changed.outcome, changed.details) == ("success", '{"sessions_revoked":1,"via":"account"}')


def test_password_change_applies_the_password_rules(app, client, make_user):
    _signed_in(app, client, make_user)
    response = client.post("/auth/password", data={"current_password": PASSWORD, "new_password": "ketamineclinic2025",
                                                   "confirm": "ketamineclinic2025"})
    assert response.status_code == 400
    assert "treatments" in response.get_data(as_text=True)


def test_users_see_and_revoke_their_own_sessions(app, client, make_user):
    user = _signed_in(app, client, make_user)
    other = app.test_client()
    sign_in(other, user.email)
    page = client.get("/auth/account").get_data(as_text=True)
    assert page.count("/auth/sessions/") == 3  # two rows plus "sign out all other sessions"
    assert "This session" in page
    other_row = next(r for r in _rows(app, user) if r.id != _current_id(client))
    response = client.post(f"/auth/sessions/{other_row.id}/revoke")
    assert response.headers["Location"] == "/auth/account"
    assert _home_status(other)[0] == 302
    assert _home_status(client)[0] == 200
    assert audit_events(app, "session_revoked")[0].details == '{"own":true}'


def _current_id(client) -> str:
    with client.session_transaction() as sess:
        return crypto.token_digest(sess["_user_id"])


def test_a_user_cannot_revoke_someone_else_s_session(app, client, make_user, login_as):
    _signed_in(app, client, make_user)
    victim = make_user()
    token = login_as(app.test_client(), victim)
    response = client.post(f"/auth/sessions/{crypto.token_digest(token)}/revoke")
    assert response.status_code == 404
    assert [r.revoked_at for r in _rows(app, victim)] == [None]


def test_sign_out_all_other_sessions(app, client, make_user):
    user = _signed_in(app, client, make_user)
    others = [app.test_client() for _ in range(2)]
    for browser in others:
        sign_in(browser, user.email)
    client.post("/auth/sessions/revoke-others")
    assert [_home_status(b)[0] for b in others] == [302, 302]
    assert _home_status(client)[0] == 200


def test_session_cookie_attributes_over_https(config, app, make_user):
    app.config.update(HTTPS=True, SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-crm")
    make_user(email="tls@clinic.test", password_hash=PASSWORD_HASH)
    client = app.test_client()
    response = client.post("/auth/login", data={"email": "tls@clinic.test", "password": PASSWORD},
                           base_url="https://localhost")
    assert response.status_code == 302
    headers = response.headers.getlist("Set-Cookie")
    assert len(headers) == 1
    assert "remember_token" not in " ".join(headers)
    cookie = SimpleCookie()
    cookie.load(headers[0])
    morsel = cookie["__Host-crm"]
    assert morsel["secure"] and morsel["httponly"]
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert not morsel["domain"]


def test_https_setting_switches_the_cookie_name_and_secure_flag(config, tmp_path):
    from crm import create_app

    https_app = create_app({**config, "HTTPS": True}, instance_path=str(tmp_path / "https"))
    assert https_app.config["SESSION_COOKIE_NAME"] == "__Host-crm"
    assert https_app.config["SESSION_COOKIE_SECURE"] is True
    assert https_app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert https_app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
