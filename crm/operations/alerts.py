"""Alerts: who is told what, written as in-app alerts and outbox rows in the caller's transaction.

Nothing here sends anything: the worker (``crm.jobs``) delivers the outbox. Every message
says what happened, when, the lead's reference code and a sign-in link built from
``BASE_URL``; never a name, phone, e-mail, date of birth, insurance or message. Each alert
has a key, so a periodic job that runs twice, or on two workers, tells each person once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, select, update

from .. import audit, crypto
from ..clinic import clinic_zone
from ..labels import ALERT_KINDS
from ..models import (
    Alert,
    AlertPreference,
    OnCallMember,
    OutboxMessage,
    Role,
    User,
    db,
    keyring,
    new_id,
    utcnow,
)

URGENT = "urgent_enquiry"
FIRST_RESPONSE = "first_response"
CALLBACK_OVERDUE = "callback_overdue"
SIGN_OFF = "sign_off_awaiting"
DIGEST = "morning_digest"
INVITATION = "invitation"
SECOND_FACTOR_RESET = "second_factor_reset"
ACCESS_DUE = "access_request_due"
ACCESS_OVERDUE = "access_request_overdue"

#: Alerts a staff member may switch off on their account page (urgent ones follow the on-call list).
CHOOSABLE = {
    FIRST_RESPONSE: _l("A new lead has had no call by its first-response deadline"),
    CALLBACK_OVERDUE: _l("A callback of yours is overdue"),
    SIGN_OFF: _l("A screening is waiting for a clinician's sign-off (clinicians)"),
    DIGEST: _l("Morning summary of your day (coordinators)"),
}
#: What the app's alert list calls each kind.
KIND_LABELS = ALERT_KINDS
LINK_SLOT = "{{link}}"  # where the worker puts a sealed link (an invitation) when it sends
FOOTER = "This message holds no patient details. Sign in to the CRM to see the lead."


@dataclass(frozen=True)
class Notice:
    """One thing to tell people: its kind, its once-per-person key, and words without PHI."""

    kind: str
    key: str
    subject: str
    text: str
    lead_id: str | None = None
    reference: str | None = None
    round: int = 0
    link_path: str = "/leads/home"


# --- links and channels -----------------------------------------------------------------


def link(path: str) -> str:
    """An absolute link from ``BASE_URL`` (never the request's Host header); the path alone if unset."""
    base = (current_app.config.get("BASE_URL") or "").rstrip("/")
    return f"{base}{path}"


def lead_path(lead_id: str) -> str:
    """The lead page's path (signing in first when needed)."""
    return current_app.url_map.bind("crm").build("leads.detail", {"lead_id": lead_id})


def email_on() -> bool:
    """True when SMTP is configured; otherwise alerts appear in the app only."""
    return bool(current_app.config.get("SMTP_URL"))


def webhook_on() -> bool:
    """True when a team-chat webhook is configured."""
    return bool(current_app.config.get("ALERT_WEBHOOK_URL"))


def clinic_time(at: dt.datetime) -> str:
    """A stored naive-UTC time as the clinic reads it, e.g. ``Tue Dec 1, 2:04 AM PST``."""
    return at.replace(tzinfo=dt.UTC).astimezone(clinic_zone()).strftime("%a %b %-d, %-I:%M %p %Z")


def email_body(notice: Notice, at: dt.datetime) -> str:
    """The plain-text body of an alert e-mail."""
    lines = [notice.text, ""]
    if notice.reference:
        lines.append(f"Reference: {notice.reference}")
    lines += [f"When: {clinic_time(at)}", f"Sign in: {link(notice.link_path)}", "", FOOTER]
    return "\n".join(lines)


def webhook_body(notice: Notice, at: dt.datetime) -> str:
    """The JSON a team chat receives: the same facts as the e-mail, no PHI."""
    return json.dumps({"kind": notice.kind, "text": notice.text, "reference": notice.reference,
                       "at": f"{at.isoformat(timespec='seconds')}Z", "link": link(notice.link_path)})


# --- recipients -----------------------------------------------------------------------


def active(role: Role | None = None) -> list[User]:
    """Active staff accounts, optionally of one role."""
    stmt = select(User).where(User.is_active_flag.is_(True))
    if role is not None:
        stmt = stmt.where(User.role == role)
    return list(db.session.scalars(stmt.order_by(User.email)))


def on_call() -> list[User]:
    """The active members of the on-call list, or every active admin when the list has none."""
    members = list(db.session.scalars(select(User).join(OnCallMember, OnCallMember.user_id == User.id)
                                      .where(User.is_active_flag.is_(True)).order_by(User.email)))
    return members or active(Role.ADMIN)


def set_on_call(user_ids: Iterable[str], actor: User) -> None:
    """Replace the on-call list; audited."""
    chosen = sorted(set(user_ids))
    db.session.execute(delete(OnCallMember))
    db.session.add_all(OnCallMember(user_id=user_id, added_by=actor.id) for user_id in chosen)
    audit.record("settings_changed", actor=actor, object_type="settings", object_id="on_call",
                 details={"members": chosen})


def disabled_kinds(user_ids: Iterable[str]) -> set[tuple[str, str]]:
    """``(user_id, kind)`` pairs a staff member switched off."""
    ids = list(user_ids)
    if not ids:
        return set()
    rows = db.session.execute(select(AlertPreference.user_id, AlertPreference.kind)
                              .where(AlertPreference.user_id.in_(ids), AlertPreference.enabled.is_(False)))
    return {(user_id, kind) for user_id, kind in rows}


def set_preferences(user: User, enabled: Iterable[str]) -> None:
    """Store which of the choosable alerts ``user`` receives; audited (kinds only)."""
    wanted = set(enabled) & set(CHOOSABLE)
    db.session.execute(delete(AlertPreference).where(AlertPreference.user_id == user.id))
    db.session.add_all(AlertPreference(user_id=user.id, kind=kind, enabled=False)
                       for kind in CHOOSABLE if kind not in wanted)
    audit.record("settings_changed", actor=user, object_type="user", object_id=user.id,
                 details={"alerts_on": sorted(wanted)})


# --- raising alerts ---------------------------------------------------------------------


def notify(notice: Notice, recipients: Iterable[User], now: dt.datetime | None = None,
           *, choosable: bool = True, webhook: bool = True) -> int:
    """Alert each recipient once per key (in the app, and by e-mail when SMTP is on); returns how many.

    Recipients who switched this kind off are skipped when ``choosable``. One webhook row
    per notice tells the team chat.
    """
    now = now or utcnow()
    people = {user.id: user for user in recipients}
    if choosable:
        off = disabled_kinds(people)
        people = {uid: user for uid, user in people.items() if (uid, notice.kind) not in off}
    already = set(db.session.scalars(select(Alert.user_id).where(Alert.key == notice.key,
                                                                 Alert.user_id.in_(list(people)))))
    fresh = [user for uid, user in people.items() if uid not in already]
    for user in fresh:
        db.session.add(Alert(user_id=user.id, key=notice.key, kind=notice.kind, round=notice.round,
                             lead_id=notice.lead_id, text=notice.text[:300], created_at=now))
        if email_on():
            queue_email(notice, user, now)
    if webhook and webhook_on() and not _queued(f"{notice.key}|webhook"):
        queue(f"{notice.key}|webhook", "webhook", notice.kind, None, notice.subject, webhook_body(notice, now),
              now, lead_id=notice.lead_id)
    return len(fresh)


def _queued(key: str) -> bool:
    """True when a message with this idempotency key is already in the outbox."""
    return db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)) is not None


def queue_email(notice: Notice, user: User, now: dt.datetime, secret: str | None = None) -> OutboxMessage:
    """Queue the e-mail of ``notice`` to one staff member."""
    return queue(f"{notice.key}|{user.id}|email", "email", notice.kind, user, notice.subject,
                 email_body(notice, now), now, lead_id=notice.lead_id, secret=secret)


def queue(key: str, channel: str, kind: str, user: User | None, subject: str, body: str, now: dt.datetime,
          *, lead_id: str | None = None, secret: str | None = None) -> OutboxMessage:
    """Add one outbox row; a secret (a set-password link) is sealed, and filled in at send time."""
    message = OutboxMessage(id=new_id(), idempotency_key=key[:160], channel=channel, kind=kind,
                            user_id=user.id if user else None, recipient=user.email if user else None,
                            lead_id=lead_id, subject=subject[:200], body=body, created_at=now, next_attempt_at=now)
    if secret is not None:
        message.secret_sealed = crypto.seal(keyring(), "outbox", message.id, secret.encode())
    db.session.add(message)
    return message


def urgent_enquiry(lead_id: str, reference: str, now: dt.datetime, episode: str) -> int:
    """Tell the on-call list at once that an urgent enquiry arrived."""
    notice = Notice(URGENT, f"urgent:{lead_id}:{episode}", f"Urgent enquiry {reference}",
                    f"Urgent enquiry {reference}: the patient asked for help now. Call them as soon as you can.",
                    lead_id, reference, link_path=lead_path(lead_id))
    return notify(notice, on_call(), now, choosable=False)


def urgent_repeat(first: Alert, reference: str, now: dt.datetime) -> int:
    """Repeat an unacknowledged urgent alert (round ``first.round + 1``) to the on-call list."""
    base = first.key.split(":r", 1)[0]
    number = first.round + 1
    notice = Notice(URGENT, f"{base}:r{number}", f"Urgent enquiry {reference} (reminder {number})",
                    f"Urgent enquiry {reference} is still not acknowledged (reminder {number}).",
                    first.lead_id, reference, number, lead_path(first.lead_id))
    return notify(notice, on_call(), now, choosable=False)


def sign_off_awaiting(lead_id: str, reference: str, screening_id: str, now: dt.datetime) -> int:
    """Tell clinicians a pre-screen needs their review and sign-off."""
    notice = Notice(SIGN_OFF, f"sign_off:{screening_id}", f"Sign-off waiting {reference}",
                    f"A screening for lead {reference} is waiting for a clinician's sign-off.",
                    lead_id, reference, link_path=lead_path(lead_id))
    return notify(notice, active(Role.CLINICIAN), now)


def access_request_reminder(lead_id: str, reference: str, due: dt.datetime, overdue: bool,
                            now: dt.datetime) -> int:
    """Remind every admin, once per request, that a patient's copy is near due or overdue (reference and date only)."""
    day = due.replace(tzinfo=dt.UTC).astimezone(clinic_zone()).strftime("%a %b %-d, %Y")
    stamp = due.strftime("%Y%m%dT%H%M%S")  # a later request on the same lead is a new request
    if overdue:
        notice = Notice(ACCESS_OVERDUE, f"access_overdue:{lead_id}:{stamp}", f"Copy request overdue {reference}",
                        f"The patient's copy of lead {reference} was due by {day} and has not been produced.",
                        lead_id, reference, link_path=lead_path(lead_id))
    else:
        notice = Notice(ACCESS_DUE, f"access_due:{lead_id}:{stamp}", f"Copy request due {reference}",
                        f"The patient's copy of lead {reference} is due by {day}.",
                        lead_id, reference, link_path=lead_path(lead_id))
    return notify(notice, active(Role.ADMIN), now, choosable=False)


def invitation_email(user: User, token_path: str, hours: int, now: dt.datetime | None = None) -> OutboxMessage | None:
    """Queue the set-password e-mail to a new or reset account (SMTP only; the page still shows the link)."""
    if not email_on():
        return None
    now = now or utcnow()
    body = "\n".join([
        f"An account on {current_app.config['CLINIC_NAME']}'s intake system was set up for you.",
        "", f"Choose your password here (the link works once and expires in {hours} hours):", LINK_SLOT, "",
        "If you did not expect this, tell your administrator and do not use the link."])
    return queue(f"invitation:{user.id}:{crypto.random_token(8)}", "email", INVITATION, user,
                 "Your sign-in link", body, now, secret=link(token_path))


def second_factor_reset_email(user: User, now: dt.datetime | None = None) -> OutboxMessage | None:
    """Queue the notice that an admin reset someone's two-step sign-in (SMTP only)."""
    if not email_on():
        return None
    now = now or utcnow()
    body = "\n".join([
        f"An administrator reset two-step sign-in for your account at {clinic_time(now)}.",
        "You will set up your authenticator app again the next time you sign in:", link("/auth/login"), "",
        "If you did not ask for this, tell your administrator at once."])
    return queue(f"second_factor_reset:{user.id}:{crypto.random_token(8)}", "email", SECOND_FACTOR_RESET, user,
                 "Two-step sign-in was reset", body, now)


# --- in the app -----------------------------------------------------------------------


def unread_count(user: User) -> int:
    """How many alerts ``user`` has not read."""
    return db.session.scalar(select(func.count()).select_from(Alert)
                             .where(Alert.user_id == user.id, Alert.read_at.is_(None))) or 0


def mark_read(user: User, alert_id: str | None = None, now: dt.datetime | None = None) -> int:
    """Mark one of ``user``'s alerts (or all of them) read; returns how many changed."""
    stmt = update(Alert).where(Alert.user_id == user.id, Alert.read_at.is_(None))
    if alert_id is not None:
        stmt = stmt.where(Alert.id == alert_id)
    return db.session.execute(stmt.values(read_at=now or utcnow())).rowcount


def resend(message: OutboxMessage, actor: User, now: dt.datetime | None = None) -> None:
    """Put a failed message back in the queue with its retries reset; audited."""
    if message.status != "failed":
        raise ValueError(_("Only failed messages can be sent again."))
    message.status, message.attempts, message.next_attempt_at = "pending", 0, now or utcnow()
    message.last_error = None
    audit.record("alert_resent", actor=actor, object_type="alert", object_id=message.id,
                 details={"kind": message.kind, "channel": message.channel})
