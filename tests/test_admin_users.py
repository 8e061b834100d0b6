"""User administration: invitations, status, roles, second-factor resets, sessions, re-authentication."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from crm import crypto
from crm.models import Invitation, RecoveryCode, Role, User, UserSession, db
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events, give_totp, sign_in


@pytest.fixture
def admin(make_user):
    """An admin (a second admin keeps the last-admin guard out of the way)."""
    make_user(role=Role.ADMIN)
    return make_user(email="boss@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH)


@pytest.fixture
def admin_client(app, admin, login_as):
    """A client signed in as ``admin`` with a full, fresh session."""
    client = app.test_client()
    login_as(client, admin)
    return client


def _link(page: str) -> str:
    match = re.search(r'value="(http://localhost/auth/invitation/[^"]+)"', page)
    assert match, "page shows no set-password link"
    return match.group(1).removeprefix("http://localhost")


def _user(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge_all()
        return user


def _invite(admin_client, email="new.hire@clinic.test", role="coordinator") -> str:
    response = admin_client.post("/admin/users/new", data={"email": email, "display_name": "New Hire", "role": role})
    assert response.status_code == 200
    return _link(response.get_data(as_text=True))


def test_invitation_creates_an_account_the_invitee_sets_a_password_for(app, admin_client, admin):
    form = admin_client.get("/admin/users/new").get_data(as_text=True)
    assert 'type="password"' not in form  # the admin never chooses or sees a password
    link = _invite(admin_client)
    token = link.rsplit("/", 1)[1]
    user = _user(app, "new.hire@clinic.test")
    assert user.password_hash is None and user.role == Role.COORDINATOR
    with app.app_context():
        invitation = db.session.scalar(select(Invitation))
        assert invitation.id == crypto.token_digest(token) and invitation.created_by == admin.id
    assert [e.action for e in audit_events(app) if e.object_id == user.id] == ["user_created", "user_invited"]
    invitee = app.test_client()
    page = invitee.get(link)
    assert page.status_code == 200 and "new.hire@clinic.test" in page.get_data(as_text=True)
    response = invitee.post(link, data={"new_password": "quiet lantern meadow copper",
                                        "confirm": "quiet lantern meadow copper"})
    assert response.headers["Location"] == "/auth/login"
    assert sign_in(invitee, "new.hire@clinic.test", "quiet lantern meadow copper").status_code == 302
    assert invitee.get(link).status_code == 404  # single use
    assert [e.details for e in audit_events(app, "password_changed")] == ['{"sessions_revoked":0,"via":"invitation"}']


def test_invitation_applies_the_password_rules(app, admin_client):
    link = _invite(admin_client)
    response = app.test_client().post(link, data={"new_password": "short but ok", "confirm": "short but ok"})
    assert response.status_code == 400
    assert "Use at least 15 characters" in response.get_data(as_text=True)
    assert _user(app, "new.hire@clinic.test").password_hash is None


def test_an_invited_admin_may_choose_an_8_character_password_since_totp_is_enforced(app, admin_client):
    link = _invite(admin_client, "second.admin@clinic.test", role="admin")
    response = app.test_client().post(link, data={"new_password": "zq8!vmrt", "confirm": "zq8!vmrt"})
    assert response.headers["Location"] == "/auth/login"


def test_invitation_expires(app, admin_client, time_machine):
    time_machine.move_to(dt.datetime.now(dt.UTC), tick=False)  # after the admin's sign-in
    link = _invite(admin_client)
    time_machine.shift(dt.timedelta(hours=app.config["INVITATION_HOURS"], seconds=1))
    assert app.test_client().get(link).status_code == 404


def test_a_new_link_voids_the_earlier_one(app, admin_client):
    first = _invite(admin_client)
    user = _user(app, "new.hire@clinic.test")
    response = admin_client.post(f"/admin/users/{user.id}/invitation")
    second = _link(response.get_data(as_text=True))
    assert second != first
    assert app.test_client().get(first).status_code == 404
    assert app.test_client().get(second).status_code == 200


def test_duplicate_email_is_refused_in_any_case(app, admin_client):
    _invite(admin_client)
    response = admin_client.post("/admin/users/new", data={"email": "NEW.HIRE@clinic.test", "role": "coordinator"})
    assert response.status_code == 400
    assert "already exists" in response.get_data(as_text=True)


def test_user_list_shows_every_account(app, admin_client, make_user):
    make_user(email="listed@clinic.test")
    page = admin_client.get("/admin/users").get_data(as_text=True)
    assert "listed@clinic.test" in page and "boss@clinic.test" in page


def test_deactivate_and_reactivate(app, admin_client, make_user):
    user = make_user(email="leaver@clinic.test", password_hash=PASSWORD_HASH)
    admin_client.post(f"/admin/users/{user.id}/deactivate")
    assert not _user(app, "leaver@clinic.test").is_active_flag
    assert sign_in(app.test_client(), "leaver@clinic.test").status_code == 200  # refused
    admin_client.post(f"/admin/users/{user.id}/reactivate")
    assert _user(app, "leaver@clinic.test").is_active_flag
    assert sign_in(app.test_client(), "leaver@clinic.test").status_code == 302
    assert [e.action for e in audit_events(app) if e.object_id == user.id and e.action.startswith("user_")] == [
        "user_deactivated", "user_reactivated"
    ]


def test_an_admin_cannot_deactivate_themselves(app, admin_client, admin):
    response = admin_client.post(f"/admin/users/{admin.id}/deactivate", follow_redirects=True)
    assert "can&#39;t deactivate your own account" in response.get_data(as_text=True)
    assert _user(app, admin.email).is_active_flag


def test_role_change_needs_a_recent_reauthentication(app, admin_client, make_user, time_machine):
    time_machine.move_to(dt.datetime.now(dt.UTC), tick=False)  # after the admin's sign-in
    user = make_user(email="promote@clinic.test")
    admin_client.get("/admin/users")  # touch the session so it stays alive
    time_machine.shift(dt.timedelta(minutes=6))
    back = f"/admin/users/{user.id}"
    stale = admin_client.post(f"{back}/role", data={"role": "admin", "next": back})
    assert stale.headers["Location"] == f"/auth/reauth?next={back}"
    assert _user(app, "promote@clinic.test").role == Role.COORDINATOR
    assert "asks for your password first" in admin_client.get(back).get_data(as_text=True)
    confirmed = admin_client.post(stale.headers["Location"], data={"password": PASSWORD})
    assert confirmed.headers["Location"] == back
    done = admin_client.post(f"{back}/role", data={"role": "admin", "next": back})
    assert done.headers["Location"] == back
    assert _user(app, "promote@clinic.test").role == Role.ADMIN
    assert audit_events(app, "role_changed")[0].details == '{"from":"coordinator","to":"admin"}'


def test_a_promoted_user_must_enrol_a_second_factor(app, admin_client, make_user):
    user = make_user(email="promoted@clinic.test", password_hash=PASSWORD_HASH)
    client = app.test_client()
    sign_in(client, user.email)
    admin_client.post(f"/admin/users/{user.id}/role", data={"role": "admin"})
    assert client.get("/leads/home").headers["Location"].startswith("/auth/second-factor/setup")


def test_the_last_active_admin_cannot_be_demoted(app, make_user, login_as):
    only = make_user(email="only@clinic.test", role=Role.ADMIN)
    client = app.test_client()
    login_as(client, only)
    response = client.post(f"/admin/users/{only.id}/role", data={"role": "coordinator"}, follow_redirects=True)
    assert "Keep at least one active admin" in response.get_data(as_text=True)
    assert _user(app, "only@clinic.test").role == Role.ADMIN


def test_resetting_a_second_factor_clears_it_and_ends_the_user_s_sessions(app, admin_client, make_user, login_as):
    user = make_user(email="phone.lost@clinic.test", password_hash=PASSWORD_HASH)
    give_totp(app, user)
    with app.app_context():
        db.session.add(RecoveryCode(user_id=user.id, code_hash="$argon2id$placeholder"))
        db.session.commit()
    victim = app.test_client()
    login_as(victim, user)
    response = admin_client.post(f"/admin/users/{user.id}/second-factor/reset")
    assert response.headers["Location"] == f"/admin/users/{user.id}"
    stored = _user(app, "phone.lost@clinic.test")
    assert stored.totp_secret_sealed is None and stored.totp_last_step is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode)) == 0
    assert victim.get("/leads/home").status_code == 302
    assert audit_events(app, "second_factor")[0].details == (
        '{"event":"reset","password_renewal":false,"sessions_revoked":1}')


def test_admin_lists_and_revokes_a_user_s_sessions(app, admin_client, make_user, login_as):
    user = make_user(email="many.tabs@clinic.test")
    browsers = [app.test_client() for _ in range(3)]
    tokens = [login_as(b, user) for b in browsers]
    page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert page.count("/sessions/") == 4  # three rows and "sign out all sessions"
    first = crypto.token_digest(tokens[0])
    admin_client.post(f"/admin/users/{user.id}/sessions/{first}/revoke")
    assert [b.get("/leads/home").status_code for b in browsers] == [302, 200, 200]
    admin_client.post(f"/admin/users/{user.id}/sessions/revoke-all")
    assert [b.get("/leads/home").status_code for b in browsers] == [302, 302, 302]
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(UserSession.revoked_at.is_(None),
                                                             UserSession.user_id == user.id)) == 0
    assert [e.details for e in audit_events(app, "session_revoked")] == ['{"own":false}', '{"count":2,"own":false}']


def test_session_revoke_refuses_a_session_of_another_user(app, admin_client, make_user, login_as):
    owner, other = make_user(), make_user()
    token = login_as(app.test_client(), owner)
    response = admin_client.post(f"/admin/users/{other.id}/sessions/{crypto.token_digest(token)}/revoke")
    assert response.status_code == 404


def test_unknown_user_is_404(admin_client):
    assert admin_client.get("/admin/users/00000000-0000-4000-8000-000000000000").status_code == 404
