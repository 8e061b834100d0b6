"""Staff account administration: invitations, status, roles, second factors and sessions.

Admins never see or set a password: an invitation (or a reset) is a single-use, expiring
link the person opens themselves. Role and second-factor changes, and new set-password
links, need a recent re-authentication.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import func, select

from .. import throttle
from ..access import client_ip, fresh_required, is_fresh
from ..forms.admin import InviteForm, RoleForm
from ..models import Role, User, UserSession, db
from ..operations import alerts
from ..operations import users as accounts
from ..urls import external_url
from . import bp


def _load(user_id: str) -> User:
    """Return the account or answer 404."""
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _back(user: User):
    return redirect(url_for("admin.user", user_id=user.id))


@bp.get("/users")
def users():
    """List staff accounts with their role, status, second factor and live sessions."""
    accounts_list = db.session.scalars(select(User).order_by(User.is_active_flag.desc(), func.lower(User.email)))
    live = dict(
        db.session.execute(
            select(UserSession.user_id, func.count(UserSession.id))
            .where(UserSession.revoked_at.is_(None))
            .group_by(UserSession.user_id)
        ).all()
    )
    return render_template("admin/users.html", users=list(accounts_list), live=live,
                           lock_after=int(current_app.config["LOGIN_LOCK_AFTER"]))


@bp.route("/users/new", methods=["GET", "POST"])
def user_new():
    """Invite a staff member: creates the account and shows its set-password link once."""
    form = InviteForm()
    if form.validate_on_submit():
        try:
            user, token = accounts.invite_user(form.email.data, Role(form.role.data), form.display_name.data or "",
                                               actor=current_user)
        except accounts.AccountError as exc:
            db.session.rollback()
            form.email.errors.append(str(exc))
        else:
            emailed = _email_invitation(user, token)
            db.session.commit()
            return _show_link(user, token, emailed)
    return render_template("admin/user_new.html", form=form), 400 if form.errors else 200


def _email_invitation(user: User, token: str) -> bool:
    """Queue the set-password e-mail (the link sealed in the outbox) when SMTP is configured."""
    path = url_for("auth.accept_invitation", token=token)
    return alerts.invitation_email(user, path, int(current_app.config["INVITATION_HOURS"])) is not None


def _show_link(user: User, token: str, emailed: bool = False) -> str:
    """Render a set-password link once; it is never stored or shown again (only its hash is kept)."""
    link = external_url("auth.accept_invitation", token=token)
    hours = int(current_app.config["INVITATION_HOURS"])
    return render_template("admin/user_link.html", user=user, link=link, hours=hours, emailed=emailed)


@bp.get("/users/<user_id>")
def user(user_id: str):
    """Show one account with the actions an admin can take on it."""
    account = _load(user_id)
    return render_template(
        "admin/user_detail.html",
        account=account,
        sessions=accounts.live_sessions(account),
        role_form=RoleForm(role=account.role),
        fresh=is_fresh(),
        locked=throttle.is_locked(account),
        recovery_left=accounts.unused_recovery_codes(account),
        **_handover_view(account),
    )


@bp.post("/users/<user_id>/role")
@fresh_required
def user_role(user_id: str):
    """Change an account's role."""
    account = _load(user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        flash(_("Choose a role."), "error")
        return _back(account)
    try:
        accounts.change_role(account, Role(form.role.data), actor=current_user)
    except accounts.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back(account)
    db.session.commit()
    flash(_("Role saved."), "success")
    return _back(account)


@bp.post("/users/<user_id>/deactivate")
def user_deactivate(user_id: str):
    """Deactivate an account, handing its open leads and callbacks over as chosen; all its sessions end at once."""
    account = _load(user_id)
    try:
        work = accounts.open_work(account)
        count = accounts.deactivate_user(account, actor=current_user, handover=request.form.get("handover") or None)
    except accounts.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back(account)
    db.session.commit()
    flash(f"Account deactivated; {count} session{'s' if count != 1 else ''} signed out.", "success")
    if work.any:
        flash(_("%(leads)s open leads and %(callbacks)s open callbacks handed over.",
                leads=work.leads, callbacks=work.callbacks), "success")
    return _back(account)


@bp.post("/users/<user_id>/reactivate")
def user_reactivate(user_id: str):
    """Reactivate an account and clear any sign-in lock."""
    account = _load(user_id)
    accounts.reactivate_user(account, actor=current_user, ip=client_ip())
    db.session.commit()
    flash(_("Account active; sign-in is unlocked."), "success")
    return _back(account)


@bp.post("/users/<user_id>/second-factor/reset")
@fresh_required
def user_reset_second_factor(user_id: str):
    """Remove an account's authenticator and recovery codes; they enrol again at next sign-in."""
    account = _load(user_id)
    accounts.reset_second_factor(account, actor=current_user)
    alerts.second_factor_reset_email(account)
    db.session.commit()
    flash(_("Two-step sign-in reset. They will set it up again when they next sign in."), "success")
    return _back(account)


@bp.post("/users/<user_id>/invitation")
@fresh_required
def user_invitation(user_id: str):
    """Issue a new set-password link (earlier links stop working); shown once."""
    account = _load(user_id)
    if not account.is_active_flag:
        flash(_("Reactivate the account first."), "error")
        return _back(account)
    token = accounts.issue_invitation(account, actor=current_user)
    emailed = _email_invitation(account, token)
    db.session.commit()
    return _show_link(account, token, emailed)


@bp.post("/users/<user_id>/sessions/<session_id>/revoke")
def user_session_revoke(user_id: str, session_id: str):
    """Sign out one of an account's sessions."""
    account = _load(user_id)
    row = db.session.get(UserSession, session_id)
    if row is None or row.user_id != account.id:
        abort(404)
    accounts.revoke_session(row, actor=current_user)
    db.session.commit()
    flash(_("Session signed out."), "success")
    return _back(account)


@bp.post("/users/<user_id>/sessions/revoke-all")
def user_sessions_revoke(user_id: str):
    """Sign out every session of an account."""
    account = _load(user_id)
    count = accounts.sign_out_everywhere(account, actor=current_user)
    db.session.commit()
    flash(ngettext("%(num)d session signed out.", "%(num)d sessions signed out.", count), "success")
    return _back(account)


def _handover_view(account: User) -> dict:
    """What the deactivate form needs: the account's open work and who could take it over."""
    work = accounts.open_work(account) if account.is_active_flag else accounts.OpenWork(0, 0)
    return {"open_work": work, "pool": accounts.TO_POOL,
            "successors": accounts.handover_candidates(account) if work.any else []}
