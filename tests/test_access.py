"""Deny by default, roles, CSRF on every state change and safe redirects after sign-in.

The URL map is walked at run time, so an endpoint added later is covered without
touching these tests.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from crm.access import HALF_SIGNED_IN, is_public_endpoint
from crm.models import AuditEvent, Role, db
from tests.auth_helpers import (
    PASSWORD,
    PASSWORD_HASH,
    form_token,
    give_totp,
    methods_of,
    sample_url,
    sign_in,
)

#: Every endpoint an anonymous visitor may reach. Adding one here is a security decision.
PUBLIC_ALLOWLIST = {
    "static",
    "public.enquiry",
    "public.thanks",
    "public.privacy",
    "public.health",
    "auth.login",
    "auth.accept_invitation",
}


def _rules(app, prefix: str = ""):
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint.startswith(prefix)), key=lambda r: r.rule)


def test_public_views_are_exactly_the_allowlist(app):
    marked = {endpoint for endpoint in app.view_functions if is_public_endpoint(app, endpoint)}
    assert marked == PUBLIC_ALLOWLIST


def test_every_endpoint_outside_the_allowlist_sends_anonymous_visitors_to_sign_in(app, client):
    leaks = []
    checked = 0
    for rule in _rules(app):
        if rule.endpoint in PUBLIC_ALLOWLIST:
            continue
        for method in methods_of(rule):
            response = client.open(sample_url(rule), method=method)
            checked += 1
            location = urlsplit(response.headers.get("Location", "")).path
            if response.status_code != 302 or location != "/auth/login":
                leaks.append(f"{method} {rule.rule} ({rule.endpoint}) -> {response.status_code} {location}")
    assert checked > 20
    assert not leaks, "endpoints answering anonymous requests:\n" + "\n".join(leaks)


def test_allowlisted_pages_answer_anonymous_visitors(client):
    assert client.get("/auth/login").status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/privacy").status_code == 200


@pytest.fixture
def csrf_on(config):
    """Turn CSRF protection on; request before ``app``."""
    config["WTF_CSRF_ENABLED"] = True


@pytest.mark.parametrize("signed_in", [True, False])
def test_every_state_changing_rule_rejects_a_missing_csrf_token(csrf_on, app, client, make_user, login_as,
                                                                signed_in):
    if signed_in:
        login_as(client, make_user(role=Role.ADMIN))
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    accepted = []
    checked = 0
    for rule in app.url_map.iter_rules():
        for method in set(methods_of(rule)) - {"GET"}:
            response = client.open(sample_url(rule), method=method, data={"next": "/leads/home", "role": "admin"})
            checked += 1
            if response.status_code != 400:
                accepted.append(f"{method} {rule.rule} -> {response.status_code}")
    assert checked > 15
    assert not accepted, "state changes accepted without a CSRF token:\n" + "\n".join(accepted)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_sign_in_works_with_the_csrf_token_from_the_form(csrf_on, app, client, make_user):
    make_user(email="csrf@clinic.test", password_hash=PASSWORD_HASH)
    token = form_token(client.get("/auth/login").get_data(as_text=True))
    response = client.post("/auth/login", data={"email": "csrf@clinic.test", "password": PASSWORD,
                                                 "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/leads/home"


def test_coordinator_gets_403_and_an_audit_row_on_every_admin_endpoint(app, client, make_user, login_as):
    coordinator = make_user(role=Role.COORDINATOR)
    login_as(client, coordinator)
    rules = _rules(app, "admin.")
    assert {"admin.users", "admin.user", "admin.user_role", "admin.audit"} <= {r.endpoint for r in rules}
    for rule in rules:
        for method in methods_of(rule):
            with app.app_context():
                before = db.session.scalar(select(func.count()).select_from(AuditEvent))
            response = client.open(sample_url(rule), method=method, data={"role": "admin"})
            assert response.status_code == 403, f"{method} {rule.rule}"
            with app.app_context():
                new = list(db.session.scalars(select(AuditEvent).where(AuditEvent.seq > before)))
            assert [(e.action, e.object_id, e.actor_id, e.outcome) for e in new] == [
                ("access_denied", rule.endpoint, coordinator.id, "denied")
            ], f"{method} {rule.rule}"
    with app.app_context():
        assert db.session.get(type(coordinator), coordinator.id).role == Role.COORDINATOR


def test_admin_guard_refuses_anonymous_visitors_on_its_own(app):
    """Even without the app-wide sign-in check (a view wrongly marked public), the admin blueprint says 403."""
    from werkzeug.exceptions import Forbidden

    from crm.admin import require_admin

    with app.test_request_context("/admin/users"):
        with pytest.raises(Forbidden):
            require_admin()
    with app.app_context():
        denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "access_denied")).all()
        assert [(e.actor_kind, e.outcome) for e in denied] == [("public", "denied")]


def test_admin_reaches_the_admin_pages(app, client, make_user, login_as):
    admin = make_user(role=Role.ADMIN)
    other = make_user()
    login_as(client, admin)
    assert client.get("/admin/users").status_code == 200
    assert client.get(f"/admin/users/{other.id}").status_code == 200
    assert client.get("/admin/users/new").status_code == 200
    assert client.get("/admin/audit").status_code == 200


def test_half_signed_in_session_reaches_only_the_second_factor_pages(app, client, make_user):
    admin = make_user(email="half@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH)
    give_totp(app, admin)
    response = sign_in(client, "half@clinic.test")
    assert urlsplit(response.headers["Location"]).path == "/auth/second-factor"
    reached = []
    for rule in _rules(app):
        if rule.endpoint in PUBLIC_ALLOWLIST | HALF_SIGNED_IN or "GET" not in rule.methods:
            continue
        response = client.get(sample_url(rule))
        if urlsplit(response.headers.get("Location", "")).path != "/auth/second-factor":
            reached.append(f"{rule.rule} -> {response.status_code}")
    assert not reached, "reachable without the second factor:\n" + "\n".join(reached)
    assert client.post("/leads/search", data={"q": "x"}).status_code == 302


OPEN_REDIRECTS = [
    "//evil.example",
    "/\\evil.example",
    "/%09/evil.example",
    "/\t/evil.example",
    "https://evil.example",
    "http://localhost.evil.example/leads/home",
    "javascript:alert(1)",
    "///evil.example",
    "/%2F%2Fevil.example",
    "/no/such/page",
    "/auth/logout",
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_sign_in_never_redirects_outside_the_app(client, make_user, target):
    make_user(email="redirect@clinic.test", password_hash=PASSWORD_HASH)
    response = sign_in(client, "redirect@clinic.test", next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/leads/home"


@pytest.mark.parametrize("target", ["/leads/", "/auth/account", "/leads/search?q=abc"])
def test_sign_in_returns_to_a_page_of_this_app(client, make_user, target):
    make_user(email="return@clinic.test", password_hash=PASSWORD_HASH)
    response = sign_in(client, "return@clinic.test", next=target)
    assert response.headers["Location"] == target


def test_anonymous_visit_remembers_the_page_for_after_sign_in(client, make_user):
    response = client.get("/auth/account")
    assert response.headers["Location"] == "/auth/login?next=/auth/account"
