"""Staff account use cases: accounts, invitations, passwords, second factors and sessions.

Every function changes rows, writes its audit event and flushes; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from .. import audit, crypto, throttle, totp
from ..models import (
    OPEN_STAGES,
    Callback,
    Invitation,
    Lead,
    RecoveryCode,
    Role,
    User,
    UserSession,
    db,
    keyring,
    utcnow,
)
from ..passwords import (
    MIN_LENGTH_SINGLE_FACTOR,
    MIN_LENGTH_WITH_TOTP,
    context_words,
    hash_password,
    password_length,
    password_problem,
    verify_password,
)
from . import leads as lead_ops


class AccountError(ValueError):
    """A user-facing reason an account change was refused."""


class WrongPasswordError(AccountError):
    """The current password given to confirm a change was wrong (counts as a failed sign-in)."""


# --- accounts ------------------------------------------------------------------------


def find_user(email: str) -> User | None:
    """The staff account with this e-mail address, in any letter case and with stray spaces."""
    return db.session.scalar(select(User).where(func.lower(User.email) == _normalize_email(email)))


def _normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(email: str, role: Role, *, password: str | None = None, actor: User | None = None,
                display_name: str = "") -> User:
    """Create a staff account (e-mail unique in any case); audited, flushed, not committed."""
    email = _normalize_email(email)
    if find_user(email) is not None:
        raise AccountError(_("An account with that e-mail already exists."))
    user = User(email=email, role=Role(role), display_name=display_name.strip())
    if password is not None:
        _set_password(user, password)
    db.session.add(user)
    audit.record("user_created", actor=actor, object_type="user", object_id=user.id, details={"role": str(role)})
    return user


def invite_user(email: str, role: Role, display_name: str, actor: User) -> tuple[User, str]:
    """Create an account without a password and return it with its set-password token."""
    user = create_user(email, role, actor=actor, display_name=display_name)
    return user, issue_invitation(user, actor)


def deactivate_user(user: User, actor: User, handover: str | None = None) -> int:
    """Disable an account, revoke all its sessions and end its set-password links; returns sessions revoked.

    Open leads and callbacks go where ``handover`` says (see :func:`hand_over_work`) in the same
    transaction; an account that still holds some is refused without a choice.
    Links end for good: reactivating the account does not bring them back.
    """
    if user.id == actor.id:
        raise AccountError(_("You can't deactivate your own account."))
    if user.role == Role.ADMIN and _active_admins() <= 1:
        raise AccountError(_("Keep at least one active admin."))
    hand_over_work(user, handover, actor)
    user.is_active_flag = False
    count = revoke_sessions(user, "deactivated")
    links = _end_invitations(user)
    audit.record("user_deactivated", actor=actor, object_type="user", object_id=user.id,
                 details={"sessions_revoked": count, "links_ended": links})
    return count


def reactivate_user(user: User, actor: User, ip: str) -> None:
    """Enable an account again and clear any sign-in lock."""
    user.is_active_flag = True
    locked = throttle.is_locked(user)
    throttle.unlock(user, ip)
    audit.record("user_reactivated", actor=actor, object_type="user", object_id=user.id,
                 details={"unlocked": locked})


def change_role(user: User, role: Role, actor: User) -> None:
    """Give ``user`` another role; the last active admin cannot be demoted."""
    role = Role(role)
    if user.role == role:
        return
    if user.role == Role.ADMIN and _active_admins() <= 1:
        raise AccountError(_("Keep at least one active admin."))
    previous, user.role = user.role, role
    audit.record("role_changed", actor=actor, object_type="user", object_id=user.id,
                 details={"from": str(previous), "to": str(role)})


def _active_admins() -> int:
    return db.session.scalar(
        select(func.count(User.id)).where(User.role == Role.ADMIN, User.is_active_flag.is_(True))
    ) or 0


#: Roles that can open leads and so read PHI (a reports-only role would stay out of this set).
PHI_ROLES = frozenset({Role.COORDINATOR, Role.CLINICIAN, Role.ADMIN})


def second_factor_required(user: User) -> bool:
    """True for admins; for every role that reads PHI under ``SECOND_FACTOR_FOR_PHI`` (production
    default); for everyone under ``REQUIRE_TOTP_FOR_ALL``."""
    config = current_app.config
    if user.role == Role.ADMIN or config["REQUIRE_TOTP_FOR_ALL"]:
        return True
    return bool(config["SECOND_FACTOR_FOR_PHI"]) and user.role in PHI_ROLES


# --- passwords and invitations -------------------------------------------------------


def minimum_password_length(user: User) -> int:
    """8 characters when a second factor is enforced for the account, else 15.

    Enrolment alone does not count: a user can remove a factor they chose, and then the
    password would stand alone.
    """
    return MIN_LENGTH_WITH_TOTP if second_factor_required(user) else MIN_LENGTH_SINGLE_FACTOR


def password_renewal_due(user: User) -> bool:
    """True when a password set under the 8-character rule now stands alone (no factor, none enforced)."""
    return bool(user.short_password) and not user.has_totp and not second_factor_required(user)


def _set_password(user: User, password: str) -> None:
    """Check ``password`` against the rules and store its hash, or raise :class:`AccountError`."""
    words = context_words(user.email, current_app.config["CLINIC_NAME"])
    with_totp = minimum_password_length(user) == MIN_LENGTH_WITH_TOTP
    problem = password_problem(password, has_totp=with_totp, context=words)
    if problem:
        raise AccountError(problem)
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    user.short_password = password_length(password) < MIN_LENGTH_SINGLE_FACTOR


def change_password(user: User, current: str, new: str, keep: UserSession | None) -> int:
    """Change a password after checking the current one; revokes every other session."""
    if not verify_password(user.password_hash, current):
        raise WrongPasswordError(_("Your current password is not correct."))
    _set_password(user, new)
    count = revoke_sessions(user, "password_changed", keep=keep)
    audit.record("password_changed", actor=user, object_type="user", object_id=user.id,
                 details={"via": "account", "sessions_revoked": count})
    return count


def rehash_password(user: User, password: str) -> None:
    """Re-hash a just-verified password with today's parameters (no rule check, no audit)."""
    user.password_hash = hash_password(password)


def _end_invitations(user: User) -> int:
    """Expire every unused set-password link of ``user`` now; returns how many were live."""
    now = utcnow()
    return db.session.execute(
        update(Invitation)
        .where(Invitation.user_id == user.id, Invitation.used_at.is_(None), Invitation.expires_at > now)
        .values(expires_at=now)
    ).rowcount


def issue_invitation(user: User, actor: User) -> str:
    """Create a single-use, expiring set-password token; earlier unused ones stop working."""
    _end_invitations(user)
    now = utcnow()
    token = crypto.random_token()
    hours = int(current_app.config["INVITATION_HOURS"])
    db.session.add(Invitation(id=crypto.token_digest(token), user_id=user.id, created_by=actor.id,
                              created_at=now, expires_at=now + dt.timedelta(hours=hours)))
    audit.record("user_invited", actor=actor, object_type="user", object_id=user.id, details={"hours": hours})
    return token


def find_invitation(token: str) -> Invitation | None:
    """Return the invitation behind ``token`` if it is unused, unexpired and its account active."""
    invitation = db.session.get(Invitation, crypto.token_digest(token))
    if invitation is None or invitation.used_at is not None or invitation.expires_at <= utcnow():
        return None
    user = db.session.get(User, invitation.user_id)
    return invitation if user is not None and user.is_active_flag else None


def accept_invitation(invitation: Invitation, password: str) -> User:
    """Set the invited account's password, use up the token and revoke older sessions."""
    user = db.session.get(User, invitation.user_id)
    _set_password(user, password)
    invitation.used_at = utcnow()
    count = revoke_sessions(user, "password_changed")
    throttle.unlock(user, "-")
    audit.record("password_changed", actor=user, object_type="user", object_id=user.id,
                 details={"via": "invitation", "sessions_revoked": count})
    return user


# --- second factor -------------------------------------------------------------------


def totp_secret(user: User) -> str:
    """Decrypt the user's TOTP seed."""
    return crypto.unseal(keyring(), "totp", user.id, user.totp_secret_sealed).decode()


def seal_pending_secret(user: User, secret: str) -> bytes:
    """Encrypt a seed that is being enrolled, bound to the user, for the signed session cookie."""
    return crypto.seal(keyring(), "totp-pending", user.id, secret.encode())


def unseal_pending_secret(user: User, blob: bytes) -> str:
    """Decrypt a seed sealed by :func:`seal_pending_secret`."""
    return crypto.unseal(keyring(), "totp-pending", user.id, blob).decode()


def enrol_second_factor(user: User, secret: str, code: str) -> list[str] | None:
    """Store ``secret`` once ``code`` proves the app has it; returns new recovery codes or None."""
    step = totp.matching_step(secret, code, None)
    if step is None:
        return None
    user.totp_secret_sealed = crypto.seal(keyring(), "totp", user.id, secret.encode())
    user.totp_last_step = step
    codes = _replace_recovery_codes(user)
    audit.record("second_factor", actor=user, object_type="user", object_id=user.id,
                 details={"event": "enrolled"})
    return codes


def check_second_factor(user: User, code: str) -> bool:
    """Accept a TOTP code once: its step must be newer than the last one used. Audited.

    The step is claimed with a conditional UPDATE, so of several requests racing with the
    same code exactly one wins, whatever each had read before.
    """
    step = totp.matching_step(totp_secret(user), code, user.totp_last_step) if user.has_totp else None
    if step is not None and not _claim_step(user, step):
        step = None
    event = "verified" if step is not None else "failed"
    audit.record("second_factor", actor=user, object_type="user", object_id=user.id,
                 outcome="success" if step is not None else "failure", details={"event": event})
    return step is not None


def _claim_step(user: User, step: int) -> bool:
    """Record ``step`` as the last one used unless a newer or equal one already is; True if won."""
    claimed = db.session.execute(
        update(User)
        .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if claimed:
        set_committed_value(user, "totp_last_step", step)
    return claimed


def _spend(code_row: RecoveryCode) -> bool:
    """Mark a recovery code used unless a parallel request already did; True if this one won."""
    return db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == code_row.id, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def use_recovery_code(user: User, code: str) -> int | None:
    """Spend one unused recovery code; returns how many remain, or None when none matched."""
    unused = list(db.session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ))
    match = next((row for row in unused if totp.recovery_code_matches(row.code_hash, code)), None)
    if match is not None and not _spend(match):
        match = None
    audit.record("second_factor", actor=user, object_type="user", object_id=user.id,
                 outcome="success" if match else "failure",
                 details={"event": "recovery_used" if match else "failed"})
    return len(unused) - 1 if match is not None else None


def replace_recovery_codes(user: User) -> list[str]:
    """Issue a fresh set of recovery codes, voiding the old ones; audited."""
    codes = _replace_recovery_codes(user)
    audit.record("second_factor", actor=user, object_type="user", object_id=user.id,
                 details={"event": "recovery_codes_replaced"})
    return codes


def _replace_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = totp.new_recovery_codes()
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=totp.hash_recovery_code(c)) for c in codes)
    return codes


def reset_second_factor(user: User, actor: User) -> int:
    """Remove a user's TOTP seed and recovery codes and revoke their sessions."""
    user.totp_secret_sealed = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    count = revoke_sessions(user, "second_factor_reset") if actor.id != user.id else 0
    audit.record("second_factor", actor=actor, object_type="user", object_id=user.id,
                 details={"event": "reset", "sessions_revoked": count,
                          "password_renewal": password_renewal_due(user)})
    return count


def unused_recovery_codes(user: User) -> int:
    """How many recovery codes the user has left."""
    return db.session.scalar(
        select(func.count(RecoveryCode.id)).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ) or 0


# --- sessions ------------------------------------------------------------------------


def live_sessions(user: User) -> list[UserSession]:
    """The user's sessions that are not revoked, newest first (expired ones die on next use)."""
    return list(db.session.scalars(
        select(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .order_by(UserSession.last_seen_at.desc())
    ))


def revoke_sessions(user: User, reason: str, *, keep: UserSession | None = None) -> int:
    """Revoke every live session of ``user`` except ``keep``; returns how many. Not audited."""
    now = utcnow()
    count = 0
    for row in live_sessions(user):
        if keep is None or row.id != keep.id:
            row.revoked_at, row.revoked_reason = now, reason
            count += 1
    db.session.flush()
    return count


def sign_out_everywhere(user: User, actor: User, *, keep: UserSession | None = None) -> int:
    """Revoke all of ``user``'s sessions except ``keep`` on request of the user or an admin; audited."""
    count = revoke_sessions(user, "revoked", keep=keep)
    audit.record("session_revoked", actor=actor, object_type="user", object_id=user.id,
                 details={"own": actor.id == user.id, "count": count})
    return count


def revoke_session(row: UserSession, actor: User) -> None:
    """Revoke one session on request of its owner or an admin; audited."""
    if row.revoked_at is None:
        row.revoked_at, row.revoked_reason = utcnow(), "revoked"
    audit.record("session_revoked", actor=actor, object_type="user", object_id=row.user_id,
                 details={"own": actor.id == row.user_id})


# --- handing over open work ----------------------------------------------------------

#: The handover choice that returns a leaver's open leads and callbacks to the unassigned pool.
TO_POOL = "pool"


@dataclass(frozen=True)
class OpenWork:
    """How many open leads and not-done callbacks an account holds."""

    leads: int
    callbacks: int

    @property
    def any(self) -> bool:
        """True when there is something to hand over."""
        return bool(self.leads or self.callbacks)


def _open_leads_of(user: User):
    """Leads still moving through the pipeline with ``user`` as coordinator (closed ones keep their history)."""
    return (Lead.assignee_id == user.id, Lead.stage.in_([str(s) for s in OPEN_STAGES]), Lead.erased_at.is_(None))


def _open_callbacks_of(user: User):
    return (Callback.assignee_id == user.id, Callback.done_at.is_(None))


def open_work(user: User) -> OpenWork:
    """The open leads and callbacks ``user`` holds, counted (index-served by assignee)."""
    leads = db.session.scalar(select(func.count(Lead.id)).where(*_open_leads_of(user))) or 0
    callbacks = db.session.scalar(select(func.count(Callback.id)).where(*_open_callbacks_of(user))) or 0
    return OpenWork(leads, callbacks)


def handover_candidates(user: User) -> list[User]:
    """Active coordinators other than ``user``, by name: who may take over their open work."""
    rows = db.session.scalars(select(User).where(
        User.role == Role.COORDINATOR, User.is_active_flag.is_(True), User.id != user.id))
    return sorted(rows, key=lambda u: u.shown_name.lower())


def handover_target(user: User, choice: str | None) -> User | None:
    """The coordinator ``choice`` names (None for the unassigned pool), or raise :class:`AccountError`."""
    if choice == TO_POOL:
        return None
    target = db.session.get(User, choice) if choice else None
    if target is None or target not in handover_candidates(user):
        raise AccountError("Open leads and callbacks can go only to another active coordinator, "
                           "or back to the unassigned pool.")
    return target


def hand_over_work(user: User, choice: str | None, actor: User) -> OpenWork:
    """Move every open lead and callback of ``user`` to the chosen coordinator or the pool; audited.

    Nothing to move needs no choice; otherwise a missing or unfit choice is refused. Flushed,
    not committed: the caller's one commit moves everything or nothing.
    """
    work = open_work(user)
    if not work.any:
        return work
    if not choice:
        raise AccountError(f"This account still holds {work.leads} open lead(s) and {work.callbacks} open "
                           "callback(s): choose who takes them over (another coordinator, or the unassigned "
                           "pool) before deactivating it.")
    target = handover_target(user, choice)
    moved = OpenWork(_hand_over_leads(user, target, actor), _hand_over_callbacks(user, target))
    audit.record("work_handed_over", actor=actor, object_type="user", object_id=user.id,
                 details={"to": target.id if target else TO_POOL, "leads": moved.leads,
                          "callbacks": moved.callbacks})
    return moved


def _hand_over_leads(user: User, target: User | None, actor: User) -> int:
    """Reassign ``user``'s open leads, row-locked, each with a timeline entry and an audit row."""
    query = select(Lead).where(*_open_leads_of(user)).order_by(Lead.created_at).with_for_update(of=Lead)
    rows = list(db.session.scalars(query))
    for lead in rows:
        lead.assignee_id = target.id if target else None
        lead_ops.add_event(lead, actor, "assigned", reason="handover" if target else "unassigned",
                           body=target.shown_name if target else None)
        lead_ops.record("lead_assigned", lead.id, actor,
                        {"assignee": target.id if target else None, "from": user.id, "via": "handover"})
    db.session.flush()
    return len(rows)


def _hand_over_callbacks(user: User, target: User | None) -> int:
    """Give ``user``'s open callbacks to ``target``; for the pool, to each lead's own coordinator, if any."""
    if target is not None:
        value = target.id
    else:
        value = (select(Lead.assignee_id).where(Lead.id == Callback.lead_id, Lead.assignee_id != user.id)
                 .scalar_subquery())
    return db.session.execute(
        update(Callback).where(*_open_callbacks_of(user)).values(assignee_id=value)
        .execution_options(synchronize_session=False)
    ).rowcount
