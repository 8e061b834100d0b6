"""Shared helpers for the sign-in, session and user-administration tests."""

from __future__ import annotations

import re

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from crm import crypto
from crm.models import AuditEvent, User, db
from crm.passwords import hash_password

PASSWORD = "plum harbour violin seventeen"
PASSWORD_HASH = hash_password(PASSWORD)  # hashed once per run: argon2id at full cost is slow
UUID = "00000000-0000-4000-8000-000000000000"


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD, next: str | None = None):
    """Post the real sign-in form."""
    query = {"next": next} if next is not None else None
    return client.post("/auth/login", data={"email": email, "password": password}, query_string=query)


def session_cookie(app: Flask, client: FlaskClient) -> str | None:
    """The value of the session cookie the client holds."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    return cookie.value if cookie else None


def give_totp(app: Flask, user: User) -> str:
    """Enrol a TOTP seed for ``user`` directly in the database; returns the seed."""
    secret = pyotp.random_base32()
    with app.app_context():
        row = db.session.get(User, user.id)
        row.totp_secret_sealed = crypto.seal(app.extensions["crm_keyring"], "totp", user.id, secret.encode())
        db.session.commit()
    return secret


def code_at(secret: str, moment: float) -> str:
    """The TOTP code for ``secret`` at Unix time ``moment``."""
    return pyotp.TOTP(secret).at(int(moment))


def audit_events(app: Flask, *actions: str, object_id: str | None = None) -> list[AuditEvent]:
    """Audit events in chain order, optionally only the given actions' and one object's."""
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if actions:
            query = query.where(AuditEvent.action.in_(actions))
        if object_id:
            query = query.where(AuditEvent.object_id == object_id)
        events = list(db.session.scalars(query))
        db.session.expunge_all()
        return events


def sample_url(rule) -> str:
    """Build a URL for ``rule``, filling each argument with a value its converter accepts."""
    for sample in (UUID, "1", "x"):
        try:
            built = rule.build({name: sample for name in rule.arguments}, append_unknown=False)
        except (ValueError, TypeError):
            continue
        if built is not None:
            return built[1]
    raise AssertionError(f"cannot build a URL for {rule.rule}")


def methods_of(rule) -> list[str]:
    """The rule's methods apart from the automatic HEAD and OPTIONS."""
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def hidden_value(page: str, name: str) -> str:
    """The value of a hidden input on a rendered page."""
    match = re.search(rf'name="{name}" type="hidden" value="([^"]+)"', page)
    assert match, f"page has no hidden {name}"
    return match.group(1)


def form_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)
