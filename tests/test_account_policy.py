"""Password strength, second-factor policy, set-password links (issue 12, items 7, 8 and 16)."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from crm.models import Role, User, db
from crm.operations import users as accounts
from crm.passwords import hash_password, password_problem
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events, code_at, give_totp, sign_in

START = dt.datetime(2026, 3, 2, 15, 0, 10, tzinfo=dt.UTC)
NOW = START.timestamp()
SHORT = "zq8!vmrt"  # 8 characters: enough only where a second factor is enforced
LONG = "quiet lantern meadow copper"
PATTERNS = ["1234567890123456", "abcdefghijklmnop", "qwertyuiopasdfgh", "P@ssword12345678", "Summer2026Summer2026"]


def _path(response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def _link(page: str) -> str:
    match = re.search(r'value="http://localhost(/auth/invitation/[^"]+)"', page)
    assert match, "page shows no set-password link"
    return match.group(1)


@pytest.fixture
def admin_client(app, make_user, login_as):
    make_user(role=Role.ADMIN)  # a second admin keeps the last-admin guard out of the way
    client = app.test_client()
    login_as(client, make_user(email="boss@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH))
    return client


def _invite(admin_client, email="new.hire@clinic.test", role="coordinator") -> str:
    page = admin_client.post("/admin/users/new", data={"email": email, "display_name": "New Hire", "role": role})
    return _link(page.get_data(as_text=True))


def _set_password(app, link: str, password: str):
    return app.test_client().post(link, data={"new_password": password, "confirm": password})


# --- item 7: patterns are refused, and PHI roles need a second factor in production -------


@pytest.mark.parametrize("has_totp", [False, True])
@pytest.mark.parametrize("password", PATTERNS)
def test_sequences_repeats_and_keyboard_walks_are_refused_with_a_helpful_message(password, has_totp):
    problem = password_problem(password, has_totp=has_totp)
    assert problem.startswith("That password is too easy to guess.")
    assert "a few unrelated words do" in problem


def test_the_message_names_what_was_found():
    assert 'Sequences like "abc"' in password_problem("abcdefghijklmnop", has_totp=False)
    assert 'Repeats like "abcabcabc"' in password_problem("Summer2026Summer2026", has_totp=False)


def test_an_invitation_refuses_a_keyboard_walk_and_keeps_the_account_without_a_password(app, admin_client):
    link = _invite(admin_client)
    response = _set_password(app, link, "qwertyuiopasdfgh")
    assert response.status_code == 400
    assert "That password is too easy to guess." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.password_hash).where(User.email == "new.hire@clinic.test")) is None


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.CLINICIAN])
def test_every_role_that_reads_phi_must_enrol_when_second_factor_for_phi_is_on(app, client, make_user, role):
    app.config["SECOND_FACTOR_FOR_PHI"] = True  # the production default (see test_startup_checks)
    make_user(email="reader@clinic.test", role=role, password_hash=PASSWORD_HASH)
    assert _path(sign_in(client, "reader@clinic.test")) == "/auth/second-factor/setup"
    assert _path(client.get("/leads/home")) == "/auth/second-factor/setup"


def test_with_second_factor_for_phi_off_a_coordinator_signs_in_with_the_password(app, client, make_user):
    app.config["SECOND_FACTOR_FOR_PHI"] = False
    make_user(email="dev@clinic.test", password_hash=PASSWORD_HASH)
    assert _path(sign_in(client, "dev@clinic.test")) == "/leads/home"


# --- item 8: deactivation ends every link for good ------------------------------------------


def test_deactivation_ends_every_set_password_link_and_reactivation_does_not_revive_it(app, admin_client):
    invitation = _invite(admin_client)
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == "new.hire@clinic.test"))
    assert app.test_client().get(invitation).status_code == 200
    admin_client.post(f"/admin/users/{user_id}/deactivate")
    admin_client.post(f"/admin/users/{user_id}/reactivate")
    assert app.test_client().get(invitation).status_code == 404
    assert _set_password(app, invitation, LONG).status_code == 404
    assert audit_events(app, "user_deactivated")[0].details == '{"links_ended":1,"sessions_revoked":0}'


def test_a_reset_link_issued_before_deactivation_stays_dead(app, admin_client, make_user):
    user = make_user(email="returning@clinic.test", password_hash=PASSWORD_HASH)
    reset = _link(admin_client.post(f"/admin/users/{user.id}/invitation").get_data(as_text=True))
    admin_client.post(f"/admin/users/{user.id}/deactivate")
    admin_client.post(f"/admin/users/{user.id}/reactivate")
    assert _set_password(app, reset, LONG).status_code == 404
    assert sign_in(app.test_client(), "returning@clinic.test").status_code == 302  # the old password still works
    fresh = _link(admin_client.post(f"/admin/users/{user.id}/invitation").get_data(as_text=True))
    assert _path(_set_password(app, fresh, LONG)) == "/auth/login"


# --- item 16: the short minimum follows enforcement; the factor guards password changes -------


def test_an_enrolled_but_unenforced_second_factor_does_not_lower_the_minimum(app, client, make_user, login_as):
    user = make_user(email="enrolled@clinic.test", password_hash=PASSWORD_HASH)
    give_totp(app, user)
    with app.app_context():
        assert accounts.minimum_password_length(db.session.get(User, user.id)) == 15
    login_as(client, user)
    response = client.post("/auth/password", data={"current_password": PASSWORD, "new_password": SHORT,
                                                   "confirm": SHORT})
    assert response.status_code == 400
    assert "Use at least 15 characters" in response.get_data(as_text=True)


def test_an_admin_whose_factor_is_enforced_may_use_8_characters(app, admin_client):
    link = _invite(admin_client, "second.admin@clinic.test", role="admin")
    assert _path(_set_password(app, link, SHORT)) == "/auth/login"


def _demoted_admin_with_short_password(app, make_user):
    """An admin who chose an 8-character password, enrolled, and was then made a coordinator."""
    user = make_user(email="former.admin@clinic.test", role=Role.ADMIN)
    with app.app_context():
        row = db.session.get(User, user.id)
        row.password_hash, row.short_password = hash_password(SHORT), True
        row.role = Role.COORDINATOR
        db.session.commit()
    return user, give_totp(app, user)


def test_removing_the_factor_behind_a_short_password_forces_a_new_password(app, make_user, login_as,
                                                                           time_machine):
    time_machine.move_to(START, tick=False)
    user, secret = _demoted_admin_with_short_password(app, make_user)
    make_user(role=Role.ADMIN)
    admin_client = app.test_client()
    login_as(admin_client, make_user(role=Role.ADMIN))
    client = app.test_client()
    sign_in(client, user.email, SHORT)
    assert _path(client.post("/auth/second-factor", data={"code": code_at(secret, NOW)})) == "/leads/home"
    reset = admin_client.post(f"/admin/users/{user.id}/second-factor/reset")
    assert reset.headers["Location"] == f"/admin/users/{user.id}", reset.headers
    assert audit_events(app, "second_factor")[-1].details.count('"password_renewal":true') == 1
    again = app.test_client()
    assert _path(sign_in(again, user.email, SHORT)) == "/leads/home"
    for url in ("/leads/home", "/admin/users", "/auth/account"):
        assert _path(again.get(url)) == "/auth/password", url
    assert "too short to protect patient information" in again.get("/auth/password").get_data(as_text=True)
    changed = again.post("/auth/password", data={"current_password": SHORT, "new_password": LONG, "confirm": LONG})
    assert _path(changed) == "/auth/account"
    assert again.get("/leads/home").status_code == 200
    with app.app_context():
        assert db.session.get(User, user.id).short_password is False


def test_replacing_ones_own_factor_leaves_the_short_password_usable_only_to_enrol_or_change(
    app, make_user, login_as, time_machine
):
    time_machine.move_to(START, tick=False)
    user, _secret = _demoted_admin_with_short_password(app, make_user)
    client = app.test_client()
    login_as(client, user)
    replaced = client.post("/auth/second-factor/replace", data={"next": "/auth/account"})
    assert _path(replaced) == "/auth/second-factor/setup"
    assert client.get("/auth/second-factor/setup").status_code == 200  # enrolling again is allowed
    assert _path(client.get("/leads/home")) == "/auth/password"


def test_a_password_change_needs_a_recent_second_factor(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user = make_user(email="changer@clinic.test", password_hash=PASSWORD_HASH)
    secret = give_totp(app, user)
    sign_in(client, user.email)
    client.post("/auth/second-factor", data={"code": code_at(secret, NOW)})
    time_machine.shift(dt.timedelta(minutes=6))
    stale = client.post("/auth/password", data={"current_password": PASSWORD, "new_password": LONG,
                                                "confirm": LONG, "next": "/auth/password"})
    assert stale.headers["Location"] == "/auth/reauth?next=/auth/password"
    with app.app_context():
        assert db.session.get(User, user.id).password_hash == PASSWORD_HASH
    no_code = client.post(stale.headers["Location"], data={"password": PASSWORD})
    assert no_code.status_code == 200
    later = (START + dt.timedelta(minutes=6)).timestamp()
    assert _path(client.post(stale.headers["Location"], data={"password": PASSWORD,
                                                              "code": code_at(secret, later)})) == "/auth/password"
    done = client.post("/auth/password", data={"current_password": PASSWORD, "new_password": LONG, "confirm": LONG})
    assert _path(done) == "/auth/account"


@pytest.mark.parametrize("action", ["second-factor/reset", "invitation", "role"])
def test_admin_resets_and_link_reissues_need_a_recent_second_factor(app, make_user, login_as, time_machine, action):
    time_machine.move_to(START, tick=False)
    make_user(role=Role.ADMIN)
    admin = make_user(email="stale.admin@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH)
    target = make_user(email="target@clinic.test", password_hash=PASSWORD_HASH)
    client = app.test_client()
    login_as(client, admin)
    time_machine.shift(dt.timedelta(minutes=6))
    response = client.post(f"/admin/users/{target.id}/{action}", data={"role": "admin",
                                                                       "next": f"/admin/users/{target.id}"})
    assert _path(response) == "/auth/reauth"
    with app.app_context():
        row = db.session.get(User, target.id)
        assert (row.role, row.password_hash) == (Role.COORDINATOR, PASSWORD_HASH)
