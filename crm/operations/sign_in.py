"""Staff sign-in use cases: password, second factor, recovery code and re-authentication.

Each counts the attempt against the sign-in throttle, checks the secret, writes its audit
event and returns an :class:`Outcome` the view turns into a flash and a redirect. Unlike the
other operations, each commits once on its own, and only the count: the attempt is stored
as a failure and committed *before* the secret is checked, so parallel guesses see it and
the throttle's lock is held only for that decision (:func:`crm.throttle.reserve`).
Everything after the check is flushed; the caller commits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .. import audit, integrity, throttle
from ..models import EmergencyGrant, User, db
from ..passwords import needs_rehash, verify_password
from . import emergency
from .users import check_second_factor, find_user, rehash_password, second_factor_required
from .users import use_recovery_code as spend_recovery_code


class Result(enum.Enum):
    """How an attempt went."""

    PASSED = "passed"
    FAILED = "failed"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class Outcome:
    """An attempt's result, with what the view needs to answer it."""

    result: Result
    user: User | None = None
    verdict: throttle.Verdict | None = None  # why a throttled attempt was refused
    second_factor_pending: bool = False  # a signed-in password still owes a code
    codes_left: int | None = None  # recovery codes left after one was used

    @property
    def passed(self) -> bool:
        """True when the secret was right."""
        return self.result is Result.PASSED

    @property
    def throttled(self) -> bool:
        """True when the attempt was refused before any secret was checked."""
        return self.result is Result.THROTTLED


def sign_in(email: str, password: str, ip: str) -> Outcome:
    """Check an e-mail and password; on success the outcome says whether a second factor is owed.

    Unknown, inactive and tampered-with accounts are refused exactly like a wrong password,
    after as long a check. A run of wrong codes is not undone by the right password.
    """
    key = throttle.account_key(email)
    verdict, held = throttle.reserve([key], ip)
    if held is None:
        return _refused_throttled(verdict)
    db.session.commit()  # counted before the password is checked, so parallel guesses see it
    user = find_user(email)
    if user is not None and not user.integrity_ok:  # changed behind the application's back
        integrity.report(user)
        user = None
    matched = _password_matches(user, password)
    throttle.settle(held, {key: matched}, user=user)
    if not matched:
        audit.record("sign_in", actor_kind="public", object_type="user", object_id=user.id if user else None,
                     outcome="failure", details={"reason": "credentials"})
        return Outcome(Result.FAILED)
    codes = throttle.check(throttle.factor_key(user), ip)
    if not codes.allowed:
        return _refused_throttled(codes)
    if needs_rehash(user.password_hash):
        rehash_password(user, password)
    pending, step = _second_factor_step(user)
    audit.record("sign_in", actor=user, object_type="user", object_id=user.id, details={"second_factor": step})
    return Outcome(Result.PASSED, user=user, second_factor_pending=pending)


def verify_second_factor(user: User, code: str, ip: str) -> Outcome:
    """Check the code from a half-signed-in user's authenticator app."""
    held = reserve_attempt(user, ip, code=True)
    if held is None:
        return _throttled_out(user)
    verified = check_second_factor(user, code)
    settle(held, user, code=verified)
    return Outcome(Result.PASSED if verified else Result.FAILED, user=user)


def use_recovery_code(user: User, code: str, ip: str) -> Outcome:
    """Spend a one-time recovery code instead of the authenticator app's code."""
    held = reserve_attempt(user, ip, code=True)
    if held is None:
        return _throttled_out(user)
    left = spend_recovery_code(user, code)
    settle(held, user, code=left is not None)
    return Outcome(Result.FAILED if left is None else Result.PASSED, user=user, codes_left=left)


def reauthenticate(user: User, password: str, code: str | None, ip: str) -> Outcome:
    """Confirm a signed-in user's identity again: the password, and the code when enrolled."""
    held = reserve_attempt(user, ip, password=True, code=user.has_totp)
    if held is None:
        return _throttled_out(user)
    confirmed = _reauth_matches(user, password, code, held)
    audit.record("reauthenticated", actor=user, object_type="user", object_id=user.id,
                 outcome="success" if confirmed else "failure")
    return Outcome(Result.PASSED if confirmed else Result.FAILED, user=user)


def sign_out(user: User) -> None:
    """Audit a user signing out (the view revokes the session)."""
    audit.record("sign_out", actor=user, object_type="user", object_id=user.id)


def refuse_password_change(held: throttle.Reservation, user: User) -> None:
    """A wrong current password counts against the account like a failed sign-in, and is audited."""
    settle(held, user, password=False)
    audit.record("password_changed", actor=user, object_type="user", object_id=user.id,
                 outcome="failure", details={"reason": "wrong_current_password"})


def reserve_attempt(user: User, ip: str, *, password: bool = False,
                    code: bool = False) -> throttle.Reservation | None:
    """Count a password and/or code attempt of ``user`` before checking it (committed).

    Returns None when the account is throttled or locked; nothing is then written.
    """
    keys = ([throttle.account_key(user.email)] if password else []) + (
        [throttle.factor_key(user)] if code else [])
    _verdict, held = throttle.reserve(keys, ip)
    db.session.commit()
    return held


def settle(held: throttle.Reservation, user: User, *, password: bool | None = None,
           code: bool | None = None) -> None:
    """Record how a reserved attempt went: each factor checked (True/False) or not tried (None)."""
    outcomes = {throttle.account_key(user.email): password, throttle.factor_key(user): code}
    throttle.settle(held, outcomes, user=user)


def second_factor_owed(user: User, grant: EmergencyGrant | None) -> bool:
    """True when a session of ``user`` must give a second factor: enrolled or required, unless under break-glass."""
    return grant is None and (user.has_totp or second_factor_required(user))


def _password_matches(user: User | None, password: str) -> bool:
    """Verify against the account's hash, or a dummy hash so unknown accounts take as long."""
    matched = verify_password(user.password_hash if user is not None else None, password)
    return matched and user is not None and user.is_active_flag


def _second_factor_step(user: User) -> tuple[bool, str]:
    """Whether a fresh session of ``user`` owes a second factor, and how the audit event names it."""
    grant = emergency.active_grant(user)
    if second_factor_owed(user, grant):
        return True, "pending"
    return False, "waived_emergency" if grant is not None else "not_required"


def _reauth_matches(user: User, password: str, code: str | None, held: throttle.Reservation) -> bool:
    """Check the password, then the code when enrolled; each counts under its own run."""
    if not verify_password(user.password_hash, password):
        settle(held, user, password=False)
        return False
    checked = check_second_factor(user, code or "") if user.has_totp else None
    settle(held, user, password=True, code=checked)
    return checked is not False


def _refused_throttled(verdict: throttle.Verdict) -> Outcome:
    """Refuse a sign-in without checking the password; identical for real and unknown accounts."""
    audit.record("sign_in", actor_kind="public", object_type="user", outcome="failure",
                 details={"reason": "locked" if verdict.locked else "throttled"})
    return Outcome(Result.THROTTLED, verdict=verdict)


def _throttled_out(user: User) -> Outcome:
    """Refuse a signed-in user's throttled code or re-authentication; the view ends the session."""
    audit.record("sign_in", actor=user, object_type="user", object_id=user.id,
                 outcome="failure", details={"reason": "throttled"})
    return Outcome(Result.THROTTLED, user=user)
