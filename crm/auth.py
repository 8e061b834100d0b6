"""Staff sign-in: server-side sessions behind Flask-Login, deny-by-default access and roles.

The cookie carries only a random token; its SHA-256 names a :class:`UserSession` row
that can be revoked and that expires after the idle and absolute limits, enforced here
on the server. Every endpoint needs a signed-in user unless its view is marked
:func:`public`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from werkzeug.exceptions import HTTPException

from . import audit, crypto
from .forms.auth import LoginForm
from .models import Role, User, UserSession, db, utcnow
from .passwords import verify_password

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to continue."
login_manager.login_message_category = "info"
login_manager.session_protection = None  # the server-side session row is the protection


def public(view: Callable) -> Callable:
    """Mark a view as reachable without signing in (the explicit allowlist)."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


def is_public_endpoint(app: Flask, endpoint: str | None) -> bool:
    """True for allowlisted endpoints: static files and views marked :func:`public`."""
    if endpoint is None or endpoint == "static":
        return True
    view = app.view_functions.get(endpoint)
    return bool(getattr(view, "is_public", False))


def role_required(role: Role) -> Callable:
    """Answer 403 (and audit the denial) unless the signed-in user has ``role``."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role != role:
                deny("role_required")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def deny(reason: str) -> None:
    """Audit a refused request and abort with 403."""
    db.session.rollback()
    audit.record(
        "access_denied",
        actor=current_user if current_user.is_authenticated else None,
        actor_kind=None if current_user.is_authenticated else "public",
        object_type="endpoint",
        object_id=request.endpoint,
        outcome="denied",
        details={"reason": reason},
    )
    db.session.commit()
    abort(403)


# --- server-side sessions ------------------------------------------------------------


def start_session(user: User) -> str:
    """Open a fresh server session for ``user`` and sign them in; returns the raw token.

    The Flask session is cleared first so nothing from before sign-in survives
    (session fixation).
    """
    session.clear()
    token = crypto.random_token()
    now = utcnow()
    db.session.add(
        UserSession(
            id=crypto.token_digest(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            reauth_at=now,
            ip=request.remote_addr,
            user_agent=(request.user_agent.string or "")[:200],
        )
    )
    user.session_token = token  # type: ignore[attr-defined]
    session.permanent = True
    login_user(user)
    return token


def end_session(reason: str = "signed_out") -> None:
    """Revoke the current server session and forget the cookie."""
    row = g.get("user_session")
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        row.revoked_reason = reason
    logout_user()
    session.clear()


def revoke_sessions(user: User, reason: str, *, keep: UserSession | None = None) -> int:
    """Revoke every live session of ``user`` (except ``keep``); returns how many."""
    count = 0
    for row in db.session.scalars(
        db.select(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    ):
        if keep is None or row.id != keep.id:
            row.revoked_at, row.revoked_reason = utcnow(), reason
            count += 1
    return count


def session_expiry(row: UserSession, now: dt.datetime) -> str | None:
    """Return why a session row is no longer valid (``revoked``, ``idle``, ``absolute``) or None."""
    if row.revoked_at is not None:
        return "revoked"
    cfg = current_app.config
    if now - row.last_seen_at > dt.timedelta(minutes=cfg["SESSION_IDLE_MINUTES"]):
        return "idle"
    if now - row.created_at > dt.timedelta(hours=cfg["SESSION_MAX_HOURS"]):
        return "absolute"
    return None


@login_manager.user_loader
def load_user(token: str) -> User | None:
    """Resolve the cookie's token to its user, rejecting revoked, expired or inactive sessions."""
    row = db.session.get(UserSession, crypto.token_digest(token))
    if row is None:
        return None
    now = utcnow()
    reason = session_expiry(row, now)
    if reason is None and not row.user.is_active_flag:
        reason = "deactivated"
    if reason is not None:
        _expire(row, reason, now)
        return None
    row.last_seen_at = now
    g.user_session = row
    row.user.session_token = token  # type: ignore[attr-defined]
    return row.user


def _expire(row: UserSession, reason: str, now: dt.datetime) -> None:
    """Mark a session dead and audit the expiry once."""
    if row.revoked_at is None:
        row.revoked_at, row.revoked_reason = now, reason
        audit.record("session_expired", actor=row.user, object_type="user", object_id=row.user_id,
                     details={"reason": reason})
        db.session.commit()


def require_login() -> Any:
    """Deny by default: every endpoint outside the public allowlist needs a signed-in user."""
    if is_public_endpoint(current_app, request.endpoint):
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def init_app(app: Flask) -> None:
    """Install Flask-Login, the session-token user model and the deny-by-default guard."""
    login_manager.init_app(app)
    app.config["REMEMBER_COOKIE_DURATION"] = dt.timedelta(seconds=0)
    app.permanent_session_lifetime = dt.timedelta(hours=app.config["SESSION_MAX_HOURS"])
    app.before_request(require_login)
    app.register_blueprint(bp)



# --- views ---------------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """Return ``target`` only if it is a same-application path the URL map resolves, else home."""
    home = url_for("leads.home")
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ch in target for ch in "\\\t\r\n"):
        return home
    try:
        current_app.url_map.bind("localhost").match(parts.path, method="GET")
    except HTTPException:
        return home
    return target


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Sign a staff member in with e-mail and password."""
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(db.select(User).where(User.email == form.email.data.strip().lower()))
        if user is not None and user.is_active_flag and verify_password(user.password_hash, form.password.data):
            start_session(user)
            audit.record("sign_in", actor=user, object_type="user", object_id=user.id)
            db.session.commit()
            return redirect(safe_next(request.args.get("next")))
        verify_password(None, form.password.data) if user is None else None
        audit.record("sign_in", actor_kind="public", object_type="user", outcome="failure")
        db.session.commit()
        flash("That e-mail and password don't match an active account.", "error")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout():
    """Sign out and revoke the server session."""
    audit.record("sign_out", actor=current_user, object_type="user", object_id=current_user.id)
    end_session()
    db.session.commit()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.get("/account")
def account():
    """Show the signed-in user's account page."""
    return render_template("auth/account.html")
