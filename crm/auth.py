"""Staff sign-in pages: password, second factor, re-authentication, the user's own account, invitations.

Each view loads, checks, validates, calls one use case from :mod:`crm.operations.sign_in`
or :mod:`crm.operations.users`, commits and redirects. The session machinery is
:mod:`crm.sessions`; the route guards are :mod:`crm.access`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from . import audit, crypto, throttle, totp
from .access import client_ip, fresh_required, public, safe_next, second_factor_pending, second_factor_step
from .forms.auth import (
    CodeForm,
    LoginForm,
    NewPasswordForm,
    PasswordChangeForm,
    ReauthForm,
    RecoveryForm,
)
from .models import Role, User, UserSession, db
from .operations import emergency, sign_in
from .operations import users as accounts
from .sessions import current_session, end_session, mark_reauthenticated, mark_second_factor, start_session

bp = Blueprint("auth", __name__, url_prefix="/auth")

SIGN_IN_REFUSED = "That e-mail and password don't match an active account."


@bp.app_context_processor
def _emergency_banner() -> dict[str, Any]:
    """Admins see every break-glass grant in force on every page (an alert that needs no mail)."""
    if not current_user or not current_user.is_authenticated or current_user.role != Role.ADMIN:
        return {"emergency_grants": []}
    grants = emergency.live_grants()
    people = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_([r.user_id for r in grants])))}
    return {"emergency_grants": [(people[r.user_id], r) for r in grants if r.user_id in people]}


# --- sign-in -------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Check e-mail and password, then open a session (half open until the second factor)."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form)
    with audit.appended_last():  # after the new session's row
        outcome = sign_in.sign_in(form.email.data, form.password.data, client_ip())
        if outcome.passed:
            start_session(outcome.user, client_ip())
    db.session.commit()
    if outcome.throttled:
        return _refuse_throttled(form, outcome.verdict)
    if not outcome.passed:
        flash(SIGN_IN_REFUSED, "error")
        return render_template("auth/login.html", form=form)
    if outcome.second_factor_pending:
        return second_factor_step(request.args.get("next"))
    return redirect(safe_next(request.args.get("next")))


def _refuse_throttled(form: LoginForm, verdict: throttle.Verdict) -> tuple[str, int, dict[str, str]]:
    """Answer 429 without checking the password; identical for real and unknown accounts."""
    if verdict.locked:
        flash(_("Sign-in is locked for this account after too many failed attempts. "
              "Ask an administrator to unlock it."), "error")
    else:
        minutes = max(1, -(-verdict.retry_after // 60))
        flash(ngettext("Too many sign-in attempts. Please wait %(num)d minute and try again.",
                       "Too many sign-in attempts. Please wait %(num)d minutes and try again.", minutes), "error")
    retry = str(verdict.retry_after or 3600)
    return render_template("auth/login.html", form=form), 429, {"Retry-After": retry}


def _conclude(outcome: sign_in.Outcome, mark: Callable[[], None]) -> Response | None:
    """Sign a throttled user out (returning the answer), else ``mark`` a passed check on the session; commits."""
    if outcome.throttled:
        return _throttled_out()
    if outcome.passed:
        mark()
    db.session.commit()
    return None


def _throttled_out() -> Response:
    """End a session whose second-factor or re-authentication attempts are throttled (already audited)."""
    end_session("throttled")
    db.session.commit()
    flash(_("Too many attempts. Please wait a few minutes and sign in again."), "error")
    return redirect(url_for("auth.login"))


@bp.route("/second-factor", methods=["GET", "POST"])
def second_factor():
    """Ask a half-signed-in user for the code from their authenticator app."""
    if not second_factor_pending():
        return redirect(safe_next(request.args.get("next")))
    if not current_user.has_totp:
        return second_factor_step(request.args.get("next"))
    form = CodeForm()
    if not form.validate_on_submit():
        return render_template("auth/second_factor.html", form=form)
    outcome = sign_in.verify_second_factor(current_user, form.code.data, client_ip())
    if (ended := _conclude(outcome, mark_second_factor)) is not None:
        return ended
    if outcome.passed:
        return redirect(safe_next(request.args.get("next")))
    form.code.errors.append("That code didn't work. Wait for a new one and try again.")
    return render_template("auth/second_factor.html", form=form)


@bp.route("/second-factor/recovery", methods=["GET", "POST"])
def recovery():
    """Accept a one-time recovery code instead of the authenticator app."""
    if not second_factor_pending() or not current_user.has_totp:
        return redirect(safe_next(request.args.get("next")))
    form = RecoveryForm()
    if not form.validate_on_submit():
        return render_template("auth/recovery.html", form=form)
    outcome = sign_in.use_recovery_code(current_user, form.code.data, client_ip())
    if (ended := _conclude(outcome, mark_second_factor)) is not None:
        return ended
    if not outcome.passed:
        form.code.errors.append(_("That recovery code didn't work."))
        return render_template("auth/recovery.html", form=form)
    flash(_("Recovery code used; %(left)s left. Replace your authenticator or codes "
            "from your account page.", left=outcome.codes_left), "info")
    return redirect(url_for("auth.account"))


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
            mark_second_factor()
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
    if not form.validate_on_submit():
        return render_template("auth/reauth.html", form=form, next=request.args.get("next"))
    outcome = sign_in.reauthenticate(current_user, form.password.data, form.code.data, client_ip())
    if (ended := _conclude(outcome, mark_reauthenticated)) is not None:
        return ended
    if outcome.passed:
        return redirect(safe_next(request.args.get("next")))
    form.password.errors.append("That didn't match. Check your password and code.")
    return render_template("auth/reauth.html", form=form, next=request.args.get("next"))


@bp.post("/logout")
def logout():
    """Sign out and revoke the server session."""
    with audit.appended_last():  # after the session's revocation
        sign_in.sign_out(current_user)
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
        held = sign_in.reserve_attempt(current_user, client_ip(), password=True)
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
            sign_in.settle(held, current_user, password=True)  # right current password, refused new one
            db.session.commit()
            form.new_password.errors.append(str(exc))
        else:
            sign_in.settle(held, current_user, password=True)
            mark_reauthenticated()
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
    sign_in.refuse_password_change(held, current_user)
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
