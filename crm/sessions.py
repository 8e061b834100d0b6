"""Server-side staff sessions behind Flask-Login: start, load, touch and revoke.

The cookie carries only a random token; its SHA-256 names a :class:`UserSession` row that
can be revoked and that expires after the idle and absolute limits, enforced here on the
server. Route guards live in :mod:`crm.access`; the sign-in pages in :mod:`crm.auth`.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask, current_app, g, request, session
from flask_login import LoginManager, current_user, login_user, logout_user

from . import audit, crypto, integrity
from .models import User, UserSession, db, utcnow

login_manager = LoginManager()
login_manager.session_protection = None  # the server-side session row is the protection

LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)


def init_app(app: Flask) -> None:
    """Install Flask-Login with the session-token user loader and the absolute cookie lifetime."""
    login_manager.init_app(app)
    app.permanent_session_lifetime = dt.timedelta(hours=app.config["SESSION_MAX_HOURS"])


def current_session() -> UserSession | None:
    """The server-side session row behind this request, if signed in."""
    return g.get("user_session")


def start_session(user: User, ip: str) -> str:
    """Open a fresh server session for ``user`` and sign them in; returns the raw token.

    The Flask session is cleared first so nothing from before sign-in survives
    (session fixation), and a session this browser already had is revoked.
    """
    previous = current_session() if current_user.is_authenticated else None
    if previous is not None and previous.revoked_at is None:
        previous.revoked_at, previous.revoked_reason = utcnow(), "replaced"
    session.clear()
    token = crypto.random_token()
    now = utcnow()
    row = UserSession(
        id=crypto.token_digest(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        reauth_at=now,
        ip=ip,
        user_agent=(request.user_agent.string or "")[:200],
    )
    db.session.add(row)
    g.user_session = row
    user.session_token = token  # type: ignore[attr-defined]
    session.permanent = True
    login_user(user)
    return token


def end_session(reason: str = "signed_out") -> None:
    """Revoke the current server session and forget the cookie."""
    row = current_session()
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        row.revoked_reason = reason
    logout_user()
    session.clear()


def mark_second_factor() -> None:
    """Record that this session gave its second factor (which also counts as a re-authentication)."""
    row = current_session()
    row.second_factor_at = row.reauth_at = utcnow()


def mark_reauthenticated() -> None:
    """Record that the user confirmed their identity again in this session."""
    current_session().reauth_at = utcnow()


def session_expiry(row: UserSession, now: dt.datetime) -> str | None:
    """Return why a session row is no longer valid (``revoked``, ``idle``, ``absolute``) or None."""
    if row.revoked_at is not None:
        return "revoked"
    cfg = current_app.config
    if now - row.created_at > dt.timedelta(hours=cfg["SESSION_MAX_HOURS"]):
        return "absolute"
    if now - row.last_seen_at > dt.timedelta(minutes=cfg["SESSION_IDLE_MINUTES"]):
        return "idle"
    return None


@login_manager.user_loader
def load_user(token: str) -> User | None:
    """Resolve the cookie's token to its user, rejecting revoked, expired or inactive sessions.

    A live session's last-seen time is committed at once (:func:`_touch`), so idle expiry
    counts from the latest request whatever the view does with its own transaction.
    """
    row = db.session.get(UserSession, crypto.token_digest(token))
    if row is None:
        return None
    now = utcnow()
    reason = _refusal(row, now)
    if reason is not None:
        _expire(row, reason, now)
        return None
    _touch(row, now)
    g.user_session = row
    row.user.session_token = token  # type: ignore[attr-defined]
    return row.user


def _refusal(row: UserSession, now: dt.datetime) -> str | None:
    """Why a session row may not sign this request in: expired, tampered with, or its account disabled."""
    reason = session_expiry(row, now)
    if reason is None and not (row.integrity_ok and row.user.integrity_ok):
        reason = "tampered"
        integrity.report(row if not row.integrity_ok else row.user)
    if reason is None and not row.user.is_active_flag:
        reason = "deactivated"
    return reason


def _touch(row: UserSession, now: dt.datetime) -> None:
    """Commit the session's last-seen time, rewritten at most once a minute.

    A session may idle out up to a minute early, never late; the resolution spares most page
    views a write and, on SQLite, an fsync.
    """
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    db.session.commit()


def _expire(row: UserSession, reason: str, now: dt.datetime) -> None:
    """Mark a session dead and audit the expiry once."""
    g.session_ended = reason
    if row.revoked_at is None:
        row.revoked_at, row.revoked_reason = now, reason
        actor = row.user if row.user.integrity_ok else None
        audit.record("session_expired", actor=actor, object_type="session", object_id=row.id[:16],
                     details={"reason": reason})
    db.session.commit()
