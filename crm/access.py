"""Route guards every blueprint shares: deny by default, roles, fresh re-authentication.

Every endpoint needs a signed-in user unless its view is marked :func:`public`. A session
whose account needs a second factor stays half open, reaching only the second-factor pages,
until the code is given. Sensitive changes also need a recent re-authentication
(:func:`fresh_required`). A refusal is audited (:func:`deny`). Blueprints take their access
rules from here and from nowhere else; the sessions behind them are :mod:`crm.sessions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask, abort, current_app, flash, g, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import audit
from .models import EmergencyGrant, Role, db, utcnow
from .operations import emergency, sign_in
from .operations import users as accounts
from .sessions import current_session, login_manager

#: Endpoints a half-signed-in session (password given, second factor not yet) may reach.
HALF_SIGNED_IN = frozenset(
    {"auth.second_factor", "auth.recovery", "auth.enrol", "auth.reauth", "auth.logout"}
)
#: Endpoints open to a user whose short password lost its second factor: replace one or the other.
RENEWING_PASSWORD = frozenset({"auth.change_password", "auth.enrol", "auth.reauth", "auth.logout"})
RENEWAL_MESSAGE = ("Your password is too short to protect patient information on its own now that "
                   "two-step sign in is off. Choose a longer one, or set up two-step sign in again.")
ENDED_MESSAGES = {
    "idle": "You were signed out after a period without activity. Please sign in again.",
    "absolute": "Your session reached its maximum length. Please sign in again.",
}


def init_app(app: Flask) -> None:
    """Install the deny-by-default guard and send anonymous requests to the sign-in page."""
    login_manager.unauthorized_handler(to_login)
    app.before_request(require_login)


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


def role_required(*roles: Role, reason: str = "role_required") -> Callable:
    """Answer 403 (and audit the denial) unless the signed-in user has one of ``roles``."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            require_role(*roles, reason=reason)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def require_role(*roles: Role, reason: str = "role_required") -> None:
    """Refuse (403, audited, ``reason`` recorded) anyone not signed in with one of ``roles``."""
    if not current_user.is_authenticated or current_user.role not in roles:
        deny(reason)


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


def is_fresh() -> bool:
    """True when the user signed in or re-authenticated within ``SESSION_REAUTH_MINUTES``."""
    row = current_session()
    limit = dt.timedelta(minutes=int(current_app.config["SESSION_REAUTH_MINUTES"]))
    return row is not None and utcnow() - row.reauth_at <= limit


def fresh_required(view: Callable) -> Callable:
    """Send the user to confirm their password (and code) first unless they did so recently.

    GET requests come back to the same URL afterwards; other methods come back to the
    form's ``next`` field (the page that holds the form), and must be submitted again.
    """

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if is_fresh():
            return view(*args, **kwargs)
        flash(_("Please confirm it's you to continue."), "info")
        return redirect(url_for("auth.reauth", next=_return_path()))

    return wrapped


def _return_path() -> str:
    if request.method == "GET":
        return request.full_path.rstrip("?")
    return request.form.get("next", "")


def client_ip() -> str:
    """The client's address (ProxyFix applies ``X-Forwarded-For`` when configured)."""
    return request.remote_addr or "-"


def second_factor_pending() -> bool:
    """True while the session has the password but still owes a second factor (none under break-glass)."""
    row = current_session()
    if row is None or row.second_factor_at is not None:
        return False
    return sign_in.second_factor_owed(current_user, emergency_grant())


def emergency_grant() -> EmergencyGrant | None:
    """The signed-in user's break-glass grant in force now, looked up once per request."""
    if "emergency_grant" not in g:
        g.emergency_grant = emergency.active_grant(current_user) if current_user.is_authenticated else None
    return g.emergency_grant


def _audit_emergency_use() -> None:
    """Every request made under a break-glass grant is audited as emergency use."""
    grant = emergency_grant()
    if grant is not None:
        emergency.record_use(current_user, grant, request.endpoint, request.method)
        db.session.commit()


def second_factor_step(next_url: str | None) -> Response:
    """Send a half-signed-in user to give, or first enrol, their second factor."""
    endpoint = "auth.second_factor" if current_user.has_totp else "auth.enrol"
    return redirect(url_for(endpoint, next=next_url or None))


def to_login() -> Response:
    """Redirect an anonymous request to the sign-in page, keeping where it was going."""
    flash(ENDED_MESSAGES.get(g.get("session_ended", ""), "Please sign in to continue."), "info")
    return redirect(url_for("auth.login", next=_return_path() if request.method == "GET" else None))


def require_login() -> Response | None:
    """Deny by default: every endpoint outside the public allowlist needs a signed-in user."""
    if is_public_endpoint(current_app, request.endpoint):
        return None
    if not current_user.is_authenticated:
        return to_login()
    if second_factor_pending() and request.endpoint not in HALF_SIGNED_IN:
        return second_factor_step(_return_path() if request.method == "GET" else None)
    _audit_emergency_use()
    if accounts.password_renewal_due(current_user) and request.endpoint not in RENEWING_PASSWORD:
        flash(RENEWAL_MESSAGE, "info")
        return redirect(url_for("auth.change_password"))
    return None


def safe_next(target: str | None) -> str:
    """Return ``target`` only if it is a same-application path the URL map resolves, else home."""
    home = url_for("leads.home")
    if not target or not _is_local_path(target):
        return home
    try:
        current_app.url_map.bind(request.host).match(unquote(urlsplit(target).path), method="GET")
    except HTTPException:
        return home
    return target


def _is_local_path(target: str) -> bool:
    """Reject schemes, hosts, ``//host``, backslashes and control characters, encoded or not."""
    decoded = unquote(target)
    if any(ord(ch) < 32 or ch in "\\\x7f" for ch in target + decoded):
        return False
    if not target.startswith("/") or decoded.startswith("//"):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
