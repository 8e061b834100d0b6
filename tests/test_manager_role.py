"""The read-only manager role: reports yes; no lead's PHI and no admin page, on any route or method."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from crm.models import Role, User, db
from tests import sentinels
from tests.auth_helpers import PASSWORD, audit_events
from tests.conftest import phi_sentinels_in


@pytest.fixture
def manager(make_user):
    return make_user(email="morgan@clinic.test", display_name="Morgan", role=Role.MANAGER)


@pytest.fixture
def manager_client(client, manager, login_as):
    login_as(client, manager)
    return client


@pytest.fixture
def sentinel_lead(make_lead):
    return make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, phone=sentinels.PHONE,
                     email=sentinels.EMAIL)


def _refused_routes(app, lead_id: str, user_id: str) -> list[tuple[str, str]]:
    """Every (method, URL) of the workspace and the admin pages, with real ids filled in."""
    fill = {"lead_id": lead_id, "user_id": user_id, "card_id": lead_id, "session_id": "x" * 64, "token": "x"}
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(("leads.", "admin.")):
            continue
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: fill.get(m.group(1), lead_id), rule.rule)
        routes += [(method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def test_manager_opens_reports_but_no_workspace_or_admin_route(app, manager_client, manager, sentinel_lead):
    assert manager_client.get("/reports/").status_code == 200
    routes = _refused_routes(app, sentinel_lead, manager.id)
    assert len(routes) > 25  # the whole workspace and admin area, not a sample
    for method, url in routes:
        response = manager_client.open(url, method=method)
        if (method, url) == ("GET", "/leads/home"):
            assert response.status_code == 302 and response.location.endswith("/reports/")
            continue
        assert response.status_code == 403, (method, url)
        assert phi_sentinels_in([response.get_data(as_text=True)]) == [], (method, url)
    denied = audit_events(app, "access_denied")
    assert len(denied) == len(routes) - 1 and {e.actor_id for e in denied} == {manager.id}
    assert not audit_events(app, "lead_viewed", "leads_listed", "field_revealed", "card_viewed")


def test_manager_signs_in_to_reports(app, client, make_user):
    from tests.auth_helpers import PASSWORD_HASH, sign_in

    make_user(email="morgan@clinic.test", role=Role.MANAGER, password_hash=PASSWORD_HASH)
    response = sign_in(client, "morgan@clinic.test", PASSWORD)
    assert response.status_code == 302
    home = client.get(response.location)
    assert home.status_code == 302 and home.location.endswith("/reports/")
    page = client.get("/reports/").get_data(as_text=True)
    assert 'href="/reports/" aria-current="page">Reports' in page


def test_an_admin_can_give_the_manager_role(app, client, make_user, login_as):
    admin = make_user(role=Role.ADMIN)
    login_as(client, admin)
    form = client.get("/admin/users/new").get_data(as_text=True)
    assert 'value="manager"' in form and "reads reports only" in form
    response = client.post("/admin/users/new", data={"email": "new.manager@clinic.test", "role": "manager"})
    assert response.status_code == 200
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new.manager@clinic.test"))
        assert user.role == Role.MANAGER


def test_create_user_accepts_the_manager_role(app, runner):
    result = runner.invoke(args=["create-user", "boss@clinic.test", "--role", "manager"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Created manager account boss@clinic.test." in result.output
    with app.app_context():
        assert db.session.scalar(select(User.role).where(User.email == "boss@clinic.test")) == Role.MANAGER
