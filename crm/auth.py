"""Staff sign-in: server-side sessions behind Flask-Login, deny-by-default access and roles.

The cookie carries only a random token; its SHA-256 names a :class:`UserSession` row
that can be revoked and that expires after the idle and absolute limits, enforced here
on the server. Every endpoint needs a signed-in user unless its view is marked
:func:`public`. A session whose account needs a second factor stays half open, reaching
only the second-factor pages, until the code is given. Sensitive changes also need a
recent re-authentication (:func:`fresh_required`).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import unquote, urlsplit

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
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import audit, crypto, integrity, throttle, totp
from .forms.auth import (
    CodeForm,
    LoginForm,
    NewPasswordForm,
    PasswordChangeForm,
    ReauthForm,
    RecoveryForm,
)
from .models import EmergencyGrant, Role, User, UserSession, db, utcnow
from .operations import emergency
from .operations import users as accounts
from .passwords import needs_rehash, verify_password

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager = LoginManager()
login_manager.session_protection = None  # the server-side session row is the protection

#: Endpoints a half-signed-in session (password given, second factor not yet) may reach.
HALF_SIGNED_IN = frozenset(
    {"auth.second_factor", "auth.recovery", "auth.enrol", "auth.reauth", "auth.logout"}
)
#: Endpoints open to a user whose short password lost its second factor: replace one or the other.
RENEWING_PASSWORD = frozenset({"auth.change_password", "auth.enrol", "auth.reauth", "auth.logout"})
RENEWAL_MESSAGE = ("Your password is too short to protect patient information on its own now that "
                   "two-step sign in is off. Choose a longer one, or set up two-step sign in again.")
SIGN_IN_REFUSED = "That e-mail and password don't match an active account."
ENDED_MESSAGES = {
    "idle": "You were signed out after a period without activity. Please sign in again.",
    "absolute": "Your session reached its maximum length. Please sign in again.",
}


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


def current_session() -> UserSession | None:
    """The server-side session row behind this request, if signed in."""
    return g.get("user_session")


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


# --- server-side sessions ------------------------------------------------------------


def start_session(user: User) -> str:
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
        ip=client_ip(),
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


LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)


@login_manager.user_loader
def load_user(token: str) -> User | None:
    """Resolve the cookie's token to its user, rejecting revoked, expired or inactive sessions.

    A live session's last-seen time is committed at once, so idle expiry counts from the
    latest request whatever the view does with its own transaction. It is rewritten at most
    once a minute (a session may idle out up to a minute early, never late), which spares
    most page views a write and, on SQLite, an fsync.
    """
    row = db.session.get(UserSession, crypto.token_digest(token))
    if row is None:
        return None
    now = utcnow()
    reason = session_expiry(row, now)
    if reason is None and not (row.integrity_ok and row.user.integrity_ok):
        reason = "tampered"
        integrity.report(row if not row.integrity_ok else row.user)
    if reason is None and not row.user.is_active_flag:
        reason = "deactivated"
    if reason is not None:
        _expire(row, reason, now)
        return None
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    db.session.commit()
    g.user_session = row
    row.user.session_token = token  # type: ignore[attr-defined]
    return row.user


def _expire(row: UserSession, reason: str, now: dt.datetime) -> None:
    """Mark a session dead and audit the expiry once."""
    g.session_ended = reason
    if row.revoked_at is None:
        row.revoked_at, row.revoked_reason = now, reason
        actor = row.user if row.user.integrity_ok else None
        audit.record("session_expired", actor=actor, object_type="session", object_id=row.id[:16],
                     details={"reason": reason})
    db.session.commit()


def second_factor_pending() -> bool:
    """True while the session has the password but still owes a second factor (none under break-glass)."""
    row = current_session()
    if row is None or row.second_factor_at is not None or emergency_grant() is not None:
        return False
    return current_user.has_totp or accounts.second_factor_required(current_user)


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


def _second_factor_step(next_url: str | None) -> Response:
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
        return _second_factor_step(_return_path() if request.method == "GET" else None)
    _audit_emergency_use()
    if accounts.password_renewal_due(current_user) and request.endpoint not in RENEWING_PASSWORD:
        flash(RENEWAL_MESSAGE, "info")
        return redirect(url_for("auth.change_password"))
    return None


def init_app(app: Flask) -> None:
    """Install Flask-Login, the session-token user model, the deny-by-default guard and the
    break-glass banner admins see on every staff page."""
    login_manager.init_app(app)
    app.context_processor(_emergency_banner)
    login_manager.unauthorized_handler(to_login)
    app.permanent_session_lifetime = dt.timedelta(hours=app.config["SESSION_MAX_HOURS"])
    app.before_request(require_login)
    app.register_blueprint(bp)


def _emergency_banner() -> dict[str, Any]:
    """Admins see every break-glass grant in force on every page (an alert that needs no mail)."""
    if not current_user or not current_user.is_authenticated or current_user.role != Role.ADMIN:
        return {"emergency_grants": []}
    grants = emergency.live_grants()
    people = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_([r.user_id for r in grants])))}
    return {"emergency_grants": [(people[r.user_id], r) for r in grants if r.user_id in people]}


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


# --- sign-in -------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Check e-mail and password, then open a session (half open until the second factor)."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form)
    key, ip = throttle.account_key(form.email.data), client_ip()
    verdict, held = throttle.reserve([key], ip)
    if held is None:
        return _refuse_throttled(form, verdict)
    db.session.commit()  # counted before the password is checked, so parallel guesses see it
    user = accounts.find_user(form.email.data)
    if user is not None and not user.integrity_ok:  # changed behind the application's back
        integrity.report(user)
        user = None  # refused exactly like an unknown account
    matched = _password_matches(user, form.password.data)
    throttle.settle(held, {key: matched}, user=user)
    if not matched:
        audit.record("sign_in", actor_kind="public", object_type="user", object_id=user.id if user else None,
                     outcome="failure", details={"reason": "credentials"})
        db.session.commit()
        flash(SIGN_IN_REFUSED, "error")
        return render_template("auth/login.html", form=form)
    codes = throttle.check(throttle.factor_key(user), ip)
    if not codes.allowed:  # a run of wrong codes is not undone by the right password
        return _refuse_throttled(form, codes)
    if needs_rehash(user.password_hash):
        accounts.rehash_password(user, form.password.data)
    start_session(user)
    pending = second_factor_pending()
    waived = not pending and emergency_grant() is not None
    step = "pending" if pending else "waived_emergency" if waived else "not_required"
    audit.record("sign_in", actor=user, object_type="user", object_id=user.id, details={"second_factor": step})
    db.session.commit()
    if pending:
        return _second_factor_step(request.args.get("next"))
    return redirect(safe_next(request.args.get("next")))


def _password_matches(user: User | None, password: str) -> bool:
    """Verify against the account's hash, or a dummy hash so unknown accounts take as long."""
    matched = verify_password(user.password_hash if user is not None else None, password)
    return matched and user is not None and user.is_active_flag


def _refuse_throttled(form: LoginForm, verdict: throttle.Verdict) -> tuple[str, int, dict[str, str]]:
    """Answer 429 without checking the password; identical for real and unknown accounts."""
    audit.record("sign_in", actor_kind="public", object_type="user", outcome="failure",
                 details={"reason": "locked" if verdict.locked else "throttled"})
    db.session.commit()
    if verdict.locked:
        flash(_("Sign-in is locked for this account after too many failed attempts. "
              "Ask an administrator to unlock it."), "error")
    else:
        minutes = max(1, -(-verdict.retry_after // 60))
        flash(ngettext("Too many sign-in attempts. Please wait %(num)d minute and try again.",
                       "Too many sign-in attempts. Please wait %(num)d minutes and try again.", minutes), "error")
    retry = str(verdict.retry_after or 3600)
    return render_template("auth/login.html", form=form), 429, {"Retry-After": retry}


def _throttled_out() -> Response:
    """End a session whose second-factor or re-authentication attempts are throttled."""
    audit.record("sign_in", actor=current_user, object_type="user", object_id=current_user.id,
                 outcome="failure", details={"reason": "throttled"})
    end_session("throttled")
    db.session.commit()
    flash(_("Too many attempts. Please wait a few minutes and sign in again."), "error")
    return redirect(url_for("auth.login"))


def _reserve_attempt(*, password: bool = False, code: bool = False) -> throttle.Reservation | None:
    """Count a password and/or code attempt of the signed-in user before checking it (committed).

    Returns None when the account is throttled or locked; nothing is then written.
    """
    keys = ([throttle.account_key(current_user.email)] if password else []) + (
        [throttle.factor_key(current_user)] if code else [])
    _verdict, held = throttle.reserve(keys, client_ip())
    db.session.commit()
    return held


def _settle(held: throttle.Reservation, *, password: bool | None = None, code: bool | None = None) -> None:
    """Record how a reserved attempt went: each factor checked (True/False) or not tried (None)."""
    outcomes = {throttle.account_key(current_user.email): password, throttle.factor_key(current_user): code}
    throttle.settle(held, outcomes, user=current_user)


def _finish_second_factor() -> None:
    row = current_session()
    row.second_factor_at = row.reauth_at = utcnow()


@bp.route("/second-factor", methods=["GET", "POST"])
def second_factor():
    """Ask a half-signed-in user for the code from their authenticator app."""
    if not second_factor_pending():
        return redirect(safe_next(request.args.get("next")))
    if not current_user.has_totp:
        return _second_factor_step(request.args.get("next"))
    form = CodeForm()
    if form.validate_on_submit():
        held = _reserve_attempt(code=True)
        if held is None:
            return _throttled_out()
        verified = accounts.check_second_factor(current_user, form.code.data)
        _settle(held, code=verified)
        if verified:
            _finish_second_factor()
            db.session.commit()
            return redirect(safe_next(request.args.get("next")))
        db.session.commit()
        form.code.errors.append("That code didn't work. Wait for a new one and try again.")
    return render_template("auth/second_factor.html", form=form)


@bp.route("/second-factor/recovery", methods=["GET", "POST"])
def recovery():
    """Accept a one-time recovery code instead of the authenticator app."""
    if not second_factor_pending() or not current_user.has_totp:
        return redirect(safe_next(request.args.get("next")))
    form = RecoveryForm()
    if form.validate_on_submit():
        held = _reserve_attempt(code=True)
        if held is None:
            return _throttled_out()
        left = accounts.use_recovery_code(current_user, form.code.data)
        _settle(held, code=left is not None)
        if left is None:
            db.session.commit()
            form.code.errors.append("That recovery code didn't work.")
        else:
            _finish_second_factor()
            db.session.commit()
            flash(_("Recovery code used; %(left)s left. Replace your authenticator or codes "
                    "from your account page.", left=left), "info")
            return redirect(url_for("auth.account"))
    return render_template("auth/recovery.html", form=form)


@bp.route("/second-factor/setup", methods=["GET", "POST"])
@fresh_required
def enrol():
    """Enrol an authenticator app: scan the QR code, confirm one code, keep the recovery codes."""
    if current_user.has_totp:
        flash(_("Two-step sign-in is already set up. You can replace it from your account page."), "info")
        return redirect(url_for("auth.account"))
    secret = _pending_secret()
    form = CodeForm()
    if form.validate_on_submit():
        codes = accounts.enrol_second_factor(current_user, secret, form.code.data)
        if codes is not None:
            _finish_second_factor()
            session.pop("totp_pending", None)
            db.session.commit()
            # Rendered once, never stored: the codes exist only as hashes from here on.
            return render_template("auth/recovery_codes.html", codes=codes, next=safe_next(request.args.get("next")))
        form.code.errors.append("That code didn't match. Check the app shows this account and try the newest code.")
    uri = totp.provisioning_uri(secret, current_user.email, current_app.config["CLINIC_NAME"])
    return render_template("auth/enrol.html", form=form, qr=totp.qr_data_uri(uri), secret=secret)


def _pending_secret() -> str:
    """The seed being enrolled, kept sealed in the session so a reload shows the same QR code."""
    blob = session.get("totp_pending")
    if blob:
        try:
            return accounts.unseal_pending_secret(current_user, base64.b64decode(blob))
        except (ValueError, crypto.CryptoError):
            pass
    secret = totp.new_secret()
    session["totp_pending"] = base64.b64encode(accounts.seal_pending_secret(current_user, secret)).decode()
    return secret


@bp.route("/reauth", methods=["GET", "POST"])
def reauth():
    """Confirm identity again (password, and code when enrolled) before a sensitive change."""
    form = ReauthForm()
    if form.validate_on_submit():
        held = _reserve_attempt(password=True, code=current_user.has_totp)
        if held is None:
            return _throttled_out()
        confirmed = _reauth_matches(form, held)
        audit.record("reauthenticated", actor=current_user, object_type="user", object_id=current_user.id,
                     outcome="success" if confirmed else "failure")
        if confirmed:
            current_session().reauth_at = utcnow()
            db.session.commit()
            return redirect(safe_next(request.args.get("next")))
        db.session.commit()
        form.password.errors.append("That didn't match. Check your password and code.")
    return render_template("auth/reauth.html", form=form, next=request.args.get("next"))


def _reauth_matches(form: ReauthForm, held: throttle.Reservation) -> bool:
    """Check the password, then the code when enrolled; each counts under its own run."""
    if not verify_password(current_user.password_hash, form.password.data):
        _settle(held, password=False)
        return False
    code = accounts.check_second_factor(current_user, form.code.data or "") if current_user.has_totp else None
    _settle(held, password=True, code=code)
    return code is not False


@bp.post("/logout")
def logout():
    """Sign out and revoke the server session."""
    audit.record("sign_out", actor=current_user, object_type="user", object_id=current_user.id)
    end_session()
    db.session.commit()
    flash(_("You have signed out."), "info")
    return redirect(url_for("auth.login"))


# --- the user's own account ----------------------------------------------------------


@bp.get("/account")
def account():
    """Show the user's account: password, second factor and live sessions."""
    return render_template(
        "auth/account.html",
        sessions=accounts.live_sessions(current_user),
        current=current_session(),
        recovery_left=accounts.unused_recovery_codes(current_user),
        required=accounts.second_factor_required(current_user),
    )


@bp.route("/password", methods=["GET", "POST"])
@fresh_required
def change_password():
    """Change the password (the current one, and a recent code when enrolled, are required).

    Other sessions are revoked.
    """
    form = PasswordChangeForm()
    if form.validate_on_submit():
        held = _reserve_attempt(password=True)
        if held is None:
            form.current_password.errors.append("Too many attempts. Please wait a few minutes and try again.")
            return _password_page(form, 429)
        try:
            count = accounts.change_password(current_user, form.current_password.data, form.new_password.data,
                                             keep=current_session())
        except accounts.WrongPasswordError as exc:
            _refuse_password_change(held)
            form.current_password.errors.append(str(exc))
        except accounts.AccountError as exc:
            db.session.rollback()
            _settle(held, password=True)  # the current password was right; only the new one was refused
            db.session.commit()
            form.new_password.errors.append(str(exc))
        else:
            _settle(held, password=True)
            current_session().reauth_at = utcnow()
            db.session.commit()
            flash(ngettext("Password changed. %(num)d other session signed out.",
                           "Password changed. %(num)d other sessions signed out.", count), "success")
            return redirect(url_for("auth.account"))
    return _password_page(form, 400 if form.errors else 200)


def _password_page(form: PasswordChangeForm, status: int):
    minimum = accounts.minimum_password_length(current_user)
    return render_template("auth/password.html", form=form, minimum=minimum), status


def _refuse_password_change(held: throttle.Reservation) -> None:
    """A wrong current password counts against the account like a failed sign-in, and is audited."""
    db.session.rollback()
    _settle(held, password=False)
    audit.record("password_changed", actor=current_user, object_type="user", object_id=current_user.id,
                 outcome="failure", details={"reason": "wrong_current_password"})
    db.session.commit()


@bp.post("/sessions/<session_id>/revoke")
def revoke_own_session(session_id: str):
    """Sign out one of the user's own sessions (this one included)."""
    row = db.session.get(UserSession, session_id)
    if row is None or row.user_id != current_user.id:
        abort(404)
    accounts.revoke_session(row, current_user)
    if row.id == current_session().id:
        end_session("revoked")
    db.session.commit()
    flash(_("Session signed out."), "success")
    return redirect(url_for("auth.account" if current_user.is_authenticated else "auth.login"))


@bp.post("/sessions/revoke-others")
def revoke_other_sessions():
    """Sign out every other session of the user."""
    count = accounts.sign_out_everywhere(current_user, actor=current_user, keep=current_session())
    db.session.commit()
    flash(ngettext("%(num)d other session signed out.", "%(num)d other sessions signed out.", count), "success")
    return redirect(url_for("auth.account"))


@bp.post("/second-factor/recovery-codes")
@fresh_required
def new_recovery_codes():
    """Replace the recovery codes; the new ones are shown once."""
    if not current_user.has_totp:
        abort(404)
    codes = accounts.replace_recovery_codes(current_user)
    db.session.commit()
    # Rendered once, never stored: the codes exist only as hashes from here on.
    return render_template("auth/recovery_codes.html", codes=codes, next=url_for("auth.account"))


@bp.post("/second-factor/replace")
@fresh_required
def replace_second_factor():
    """Remove the current authenticator and start enrolling a new one."""
    accounts.reset_second_factor(current_user, current_user)
    session.pop("totp_pending", None)
    db.session.commit()
    flash(_("Your old authenticator no longer works. Set up the new one now."), "info")
    return redirect(url_for("auth.enrol"))


# --- invitations ---------------------------------------------------------------------


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@public
def accept_invitation(token: str):
    """Let an invited (or reset) user choose their password from a single-use link."""
    invitation = accounts.find_invitation(token)
    if invitation is None:
        return render_template("auth/invitation_invalid.html"), 404
    user = db.session.get(User, invitation.user_id)
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.accept_invitation(invitation, form.new_password.data)
        except accounts.AccountError as exc:
            db.session.rollback()
            form.new_password.errors.append(str(exc))
        else:
            db.session.commit()
            flash(_("Your password is set. Sign in to continue."), "success")
            return redirect(url_for("auth.login"))
    status = 400 if form.errors else 200
    minimum = accounts.minimum_password_length(user)
    return render_template("auth/set_password.html", form=form, user=user, minimum=minimum), status
