"""Alerts blueprint: the signed-in person's alerts, their alert choices, and (admins) the on-call
list and the messages that could not be delivered.

A count of unread alerts reaches every staff page through a context processor. Views follow
load → check access → validate → one operation → commit → redirect.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select

from .access import role_required
from .forms.alerts import ButtonForm, OnCallForm, PreferencesForm
from .labels import label
from .models import Alert, OnCallMember, OutboxMessage, Role, User, db
from .operations import alerts as ops

bp = Blueprint("alerts", __name__, url_prefix="/alerts")
LIST_SIZE = 100


@bp.app_context_processor
def alert_globals() -> dict:
    """Give staff templates the unread count and the alert-choice form for the account page."""
    if not current_user or not current_user.is_authenticated:  # no request user: a CLI export, an e-mail
        return {}
    return {"unread_alerts": ops.unread_count(current_user), "alert_preferences_form": preferences_form}


def preferences_form() -> PreferencesForm:
    """The account page's alert choices, ticked as the person chose (everything on by default)."""
    off = {kind for _uid, kind in ops.disabled_kinds([current_user.id])}
    form = PreferencesForm(formdata=None, kinds=[kind for kind in ops.CHOOSABLE if kind not in off])
    form.kinds.choices = list(ops.CHOOSABLE.items())
    return form


@bp.get("/")
def index():
    """List the person's newest alerts, unread ones marked."""
    rows = db.session.scalars(select(Alert).where(Alert.user_id == current_user.id)
                              .order_by(Alert.created_at.desc()).limit(LIST_SIZE))
    return render_template("alerts/index.html", alerts=list(rows), labels=ops.KIND_LABELS, form=ButtonForm())


@bp.post("/<alert_id>/read")
def mark_read(alert_id: str):
    """Mark one of the person's alerts read."""
    alert = db.session.get(Alert, alert_id)
    if alert is None or alert.user_id != current_user.id:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    ops.mark_read(current_user, alert.id)
    db.session.commit()
    return redirect(url_for("alerts.index"))


@bp.post("/read-all")
def mark_all_read():
    """Mark every alert of the person read."""
    if not ButtonForm().validate_on_submit():
        abort(400)
    count = ops.mark_read(current_user)
    db.session.commit()
    flash(ngettext("%(num)d alert marked read.", "%(num)d alerts marked read.", count), "success")
    return redirect(url_for("alerts.index"))


@bp.post("/preferences")
def preferences():
    """Save which alerts the person receives (from the account page)."""
    form = PreferencesForm()
    form.kinds.choices = list(ops.CHOOSABLE.items())
    if not form.validate_on_submit():
        flash(_("Choose from the alerts listed."), "error")
        return redirect(url_for("auth.account"))
    ops.set_preferences(current_user, form.kinds.data)
    db.session.commit()
    flash(_("Alert choices saved."), "success")
    return redirect(url_for("auth.account", _anchor="alerts-h"))


@bp.route("/on-call", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def on_call():
    """Choose who receives urgent-enquiry alerts; with nobody chosen, every admin does."""
    form = OnCallForm()
    form.members.choices = [(user.id, f"{user.shown_name} ({label(user.role, 'roles').lower()})")
                            for user in ops.active()]
    if form.validate_on_submit():
        ops.set_on_call(form.members.data, current_user)
        db.session.commit()
        flash(_("On-call list saved."), "success")
        return redirect(url_for("alerts.on_call"))
    if request.method == "GET":
        form.members.data = list(db.session.scalars(select(OnCallMember.user_id)))
    status = 400 if form.errors else 200
    return render_template("alerts/on_call.html", form=form, fallback=ops.active(Role.ADMIN)), status


@bp.get("/failed")
@role_required(Role.ADMIN)
def failed():
    """List messages that failed after their last retry, with a resend button each."""
    rows = db.session.execute(select(OutboxMessage, User.email).outerjoin(User, User.id == OutboxMessage.user_id)
                              .where(OutboxMessage.status == "failed")
                              .order_by(OutboxMessage.created_at.desc()).limit(LIST_SIZE)).all()
    return render_template("alerts/failed.html", rows=rows, labels=ops.KIND_LABELS, form=ButtonForm())


@bp.post("/failed/<message_id>/resend")
@role_required(Role.ADMIN)
def resend(message_id: str):
    """Queue a failed message again with fresh retries."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        ops.resend(message, current_user)
    except ValueError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("alerts.failed"))
    db.session.commit()
    flash(_("Message queued again."), "success")
    return redirect(url_for("alerts.failed"))
