"""Absolute links from BASE_URL, trusted hosts, forwarded addresses only from a configured proxy
(issue 12, item 14)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from crm import create_app
from crm.models import Role, UserSession, db
from crm.settings import ConfigError
from crm.urls import external_url
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events

BASE = "https://crm.clinic.test"
DIRECT = {"REMOTE_ADDR": "198.51.100.7"}  # a client reaching gunicorn without the proxy


def _second_app(config: dict, tmp_path, name: str, **settings):
    """Another app on the test database with ``settings`` (the ``app`` fixture empties it afterwards)."""
    second = create_app({**config, **settings}, instance_path=str(tmp_path / name))
    with second.app_context():
        db.create_all()
    yield second
    with second.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def based(app, config, tmp_path):
    """Links use BASE_URL; the test client's own host name is answered too."""
    yield from _second_app(config, tmp_path, "based", BASE_URL=BASE, TRUSTED_HOSTS=["localhost", "crm.clinic.test"])


@pytest.fixture
def proxied(app, config, tmp_path):
    """Behind one proxy (loopback by default), with a small per-address sign-in limit."""
    yield from _second_app(config, tmp_path, "proxied", PROXY_FIX=1, LOGIN_IP_LIMIT=3)


def test_invitation_links_use_base_url_whatever_the_host_header(based, make_user, login_as):
    client = based.test_client()
    login_as(client, make_user(role=Role.ADMIN))
    invite = {"email": "hire@clinic.test", "display_name": "", "role": "coordinator"}
    page = client.post("/admin/users/new", data=invite, headers={"X-Forwarded-Host": "evil.example"})
    page = page.get_data(as_text=True)
    link = re.search(r'value="([^"]+/auth/invitation/[^"]+)"', page).group(1)
    assert link.startswith("https://crm.clinic.test/auth/invitation/")
    assert "evil" not in page and "http://localhost" not in link


def test_external_url_works_outside_a_request_and_keeps_a_path_prefix(based):
    with based.app_context():
        assert external_url("auth.login") == "https://crm.clinic.test/auth/login"
        based.config["BASE_URL"] = "https://clinic.example/intake/"
        assert external_url("auth.accept_invitation", token="abc") == "https://clinic.example/intake/auth/invitation/abc"


def test_only_trusted_host_names_are_answered(app, config, tmp_path):
    app = create_app({**config, "BASE_URL": BASE}, instance_path=str(tmp_path / "hosts"))
    assert app.config["TRUSTED_HOSTS"] == ["crm.clinic.test"]
    client = app.test_client()
    assert client.get("/health", headers={"Host": "crm.clinic.test"}).status_code == 200
    assert client.get("/health", headers={"Host": "evil.example"}).status_code == 400
    with app.app_context():
        db.engine.dispose()


def test_forwarded_headers_from_a_client_that_is_not_the_proxy_are_ignored(proxied, make_user):
    make_user(email="direct@clinic.test", password_hash=PASSWORD_HASH)
    client = proxied.test_client()
    response = client.post("/auth/login", data={"email": "direct@clinic.test", "password": PASSWORD},
                           headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
                           environ_base=DIRECT)
    assert "Strict-Transport-Security" not in response.headers
    with proxied.app_context():
        assert db.session.scalar(select(UserSession.ip)) == "198.51.100.7"
    assert audit_events(proxied, "sign_in")[0].ip == "198.51.100.7"


def test_a_forwarded_address_that_is_not_an_ip_literal_is_not_written_anywhere(proxied, make_user):
    make_user(email="odd@clinic.test", password_hash=PASSWORD_HASH)
    client = proxied.test_client()
    client.post("/auth/login", data={"email": "odd@clinic.test", "password": "wrong wrong wrong wrong"},
                headers={"X-Forwarded-For": "<script>alert(1)</script>"})
    assert audit_events(proxied, "sign_in")[0].ip == "127.0.0.1"  # the proxy's own address


def test_rotating_forwarded_addresses_do_not_escape_the_address_limit(proxied):
    client = proxied.test_client()
    statuses = [client.post("/auth/login", data={"email": f"spray{n}@clinic.test", "password": "wrong wrong wrong"},
                            headers={"X-Forwarded-For": f"203.0.113.{n}"}, environ_base=DIRECT).status_code
                for n in range(4)]
    assert statuses == [200, 200, 200, 429]


@pytest.mark.parametrize("settings, message", [
    ({"BASE_URL": None}, "BASE_URL is not set"),
    ({"BASE_URL": "http://crm.clinic.test"}, "must start with https://"),
    ({"BASE_URL": "crm.clinic.test"}, "must be an absolute URL"),
    ({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}, "TRUSTED_PROXIES"),
])
def test_production_refuses_missing_or_bad_link_and_proxy_settings(config, tmp_path, settings, message):
    production = {**config, "MODE": "production", "BASE_URL": BASE, "DATABASE_TLS_REASON": "local test database",
                  **settings}
    with pytest.raises(ConfigError, match=message):
        create_app(production, instance_path=str(tmp_path / "prod"))
