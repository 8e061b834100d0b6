"""Security headers on every response, HTTPS-only extras, ProxyFix and templates free of inline script."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from crm.models import Role, UserSession, db
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events, sample_url, sign_in

TEMPLATES = Path(__file__).resolve().parents[1] / "crm" / "templates"
CSP_DIRECTIVES = ["default-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
                  "frame-ancestors 'none'", "script-src 'self'"]


def _get_rules(app):
    return sorted((r for r in app.url_map.iter_rules() if "GET" in r.methods), key=lambda r: r.rule)


def _check(response, where: str) -> list[str]:
    headers = response.headers
    problems = []
    csp = headers.get("Content-Security-Policy", "")
    problems += [f"{where}: CSP lacks {d}" for d in CSP_DIRECTIVES if d not in csp]
    if "unsafe-inline" in csp or "unsafe-eval" in csp or "http" in csp:
        problems.append(f"{where}: CSP allows inline, eval or remote origins")
    expected = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }
    problems += [f"{where}: {k}={headers.get(k)}" for k, v in expected.items() if headers.get(k) != v]
    if not where.startswith("/static/") and headers.get("Cache-Control") != "no-store":
        problems.append(f"{where}: Cache-Control={headers.get('Cache-Control')}")
    return problems


def test_every_get_route_carries_the_security_headers(app, client, make_user, login_as):
    problems = []
    for signed_in in (False, True):
        if signed_in:
            login_as(client, make_user(role=Role.ADMIN))
        for rule in _get_rules(app):
            url = sample_url(rule) if rule.endpoint != "static" else "/static/crm.css"
            problems += _check(client.get(url), url)
    problems += _check(client.get("/no/such/page"), "404")
    assert not problems, "\n".join(problems)


def test_hsts_only_over_https(app, client):
    assert "Strict-Transport-Security" not in client.get("/auth/login").headers
    hsts = client.get("/auth/login", base_url="https://localhost").headers["Strict-Transport-Security"]
    max_age = int(re.search(r"max-age=(\d+)", hsts).group(1))
    assert max_age >= 31536000


def test_https_deployment_always_sends_hsts(config, app, client):
    app.config["HTTPS"] = True
    assert "Strict-Transport-Security" in client.get("/health").headers


def test_forwarded_headers_are_ignored_without_proxy_fix(client):
    ignored = client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in ignored.headers


def test_proxy_fix_trusts_the_forwarded_scheme_and_address_when_configured(config, tmp_path, make_user):
    from crm import create_app

    proxied = create_app({**config, "PROXY_FIX": 1}, instance_path=str(tmp_path / "proxied"))
    make_user(email="proxy@clinic.test", password_hash=PASSWORD_HASH)
    client = proxied.test_client()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "crm.example"}
    assert "Strict-Transport-Security" in client.get("/health", headers=forwarded).headers
    client.post("/auth/login", data={"email": "proxy@clinic.test", "password": PASSWORD},
                headers=forwarded)
    with proxied.app_context():
        assert db.session.scalar(select(UserSession.ip)) == "203.0.113.9"
        db.session.remove()
    assert audit_events(proxied, "sign_in")[0].ip == "203.0.113.9"


def test_staff_and_sign_in_pages_are_never_cached(client, make_user):
    make_user(email="cache@clinic.test", password_hash=PASSWORD_HASH)
    sign_in(client, "cache@clinic.test")
    for url in ("/auth/login", "/leads/home", "/auth/account", "/"):
        assert client.get(url).headers["Cache-Control"] == "no-store", url


def test_templates_have_no_inline_script_style_or_event_handlers():
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text) or re.search(r"\son[a-z]+\s*=", text):
            offenders.append(str(path.relative_to(TEMPLATES)))
        if re.search(r"\sstyle\s*=", text) or "<style" in text:
            offenders.append(str(path.relative_to(TEMPLATES)))
    assert not offenders
