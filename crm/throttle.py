"""Sign-in throttling kept in the database, so every worker and every instance shares it.

Each attempt (password or second factor) is a :class:`LoginAttempt` row keyed by a keyed
digest of the e-mail typed, whether or not such an account exists, so unknown and real
accounts are throttled alike. Per account: after ``LOGIN_BACKOFF_AFTER`` consecutive
failures each further attempt waits twice as long as the last (capped), and
``LOGIN_LOCK_AFTER`` consecutive failures lock the account until an admin unlocks it.
Per address: ``LOGIN_IP_LIMIT`` failures within ``LOGIN_IP_WINDOW_MINUTES``.

Second-factor codes are counted under a key of their own (:func:`factor_key`), so a correct
password never resets a run of wrong codes; both runs share the back-off and the hard lock.

Deciding and counting is one step (:func:`reserve`): under a per-key lock (PostgreSQL
advisory locks; SQLite's single writer) the attempt is stored as a failure before the secret
is checked, and :func:`settle` turns it into a success afterwards. Parallel guesses therefore
never get more checks than the limit allows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import delete, func, select, update

from . import crypto, locks
from .models import LoginAttempt, User, db, keyring, utcnow

BACKOFF_BASE_SECONDS = 30


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt may proceed now."""

    retry_after: int = 0
    locked: bool = False

    @property
    def allowed(self) -> bool:
        """True when the attempt may be checked at all."""
        return self.retry_after == 0 and not self.locked


def account_key(email: str) -> str:
    """Keyed digest of the normalised e-mail: attempts are grouped without storing addresses."""
    message = b"crm|v1|login|" + crypto.normalize_email(email).encode()
    return hmac.new(keyring().index_key, message, hashlib.sha256).hexdigest()


def factor_key(user: User) -> str:
    """Keyed digest naming the account's run of second-factor attempts, apart from its passwords."""
    message = b"crm|v1|second-factor|" + user.id.encode()
    return hmac.new(keyring().index_key, message, hashlib.sha256).hexdigest()


def consecutive_failures(key: str) -> tuple[int, dt.datetime | None]:
    """Failures for ``key`` since its last success (or unlock), and when the latest happened."""
    last_success = select(func.max(LoginAttempt.id)).where(
        LoginAttempt.email_digest == key, LoginAttempt.succeeded.is_(True)
    ).scalar_subquery()
    row = db.session.execute(
        select(func.count(LoginAttempt.id), func.max(LoginAttempt.at)).where(
            LoginAttempt.email_digest == key,
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.id > func.coalesce(last_success, 0),
        )
    ).one()
    return row[0], row[1]


def backoff_seconds(failures: int) -> int:
    """How long an account waits after ``failures`` consecutive failures."""
    over = failures - int(current_app.config["LOGIN_BACKOFF_AFTER"])
    if over < 0:
        return 0
    return min(BACKOFF_BASE_SECONDS * 2 ** min(over, 20), int(current_app.config["LOGIN_BACKOFF_MAX_SECONDS"]))


def _seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    return max(0, int((moment - now).total_seconds() + 0.999))


def _address_wait(ip: str, now: dt.datetime) -> int:
    """Seconds until the address's oldest failure leaves the window, when it is over the limit."""
    window = dt.timedelta(minutes=int(current_app.config["LOGIN_IP_WINDOW_MINUTES"]))
    count, oldest = db.session.execute(
        select(func.count(LoginAttempt.id), func.min(LoginAttempt.at)).where(
            LoginAttempt.ip == ip, LoginAttempt.succeeded.is_(False), LoginAttempt.at > now - window
        )
    ).one()
    if count < int(current_app.config["LOGIN_IP_LIMIT"]):
        return 0
    return max(1, _seconds_until(oldest + window, now))


def check(key: str, ip: str) -> Verdict:
    """Decide whether an attempt for account ``key`` from ``ip`` may be checked now."""
    now = utcnow()
    failures, latest = consecutive_failures(key)
    if failures >= int(current_app.config["LOGIN_LOCK_AFTER"]):
        return Verdict(locked=True)
    wait = _seconds_until(latest + dt.timedelta(seconds=backoff_seconds(failures)), now) if latest else 0
    return Verdict(retry_after=max(wait, _address_wait(ip, now)))


def _lock(keys: Sequence[str], ip: str) -> None:
    """Serialise attempts on the same account keys and address until the transaction ends.

    SQLite needs nothing: every transaction there starts with ``BEGIN IMMEDIATE``. Locks are
    taken in sorted order so two attempts can never wait on each other.
    """
    if not locks.on_postgresql():
        return
    for name in sorted({*keys, "ip|" + ip}):
        locks.hold(locks.SIGN_IN_ATTEMPTS, locks.key_of(name))


@dataclass
class Reservation:
    """Provisional failures stored for one attempt, by key, until :func:`settle` decides them."""

    ip: str
    ids: dict[str, int] = field(default_factory=dict)


def reserve(keys: Sequence[str], ip: str) -> tuple[Verdict, Reservation | None]:
    """Decide whether an attempt may be checked and, if so, count it as a failure now; flushes.

    The caller commits before checking the secret, so the provisional failure is visible to
    every parallel attempt and the lock is held only for this decision.
    """
    _lock(keys, ip)
    for key in keys:
        verdict = check(key, ip)
        if not verdict.allowed:
            return verdict, None
    held = Reservation(ip)
    for key in keys:
        row = LoginAttempt(at=utcnow(), ip=ip, email_digest=key, succeeded=False)
        db.session.add(row)
        db.session.flush()
        held.ids[key] = row.id
    return Verdict(), held


def settle(held: Reservation, outcomes: Mapping[str, bool | None], user: User | None = None) -> None:
    """Record what each reserved attempt turned out to be: a success, a failure, or (None) not tried."""
    for key, row_id in held.ids.items():
        outcome = outcomes.get(key)
        if outcome is None:
            db.session.execute(delete(LoginAttempt).where(LoginAttempt.id == row_id))
        elif outcome:
            db.session.execute(update(LoginAttempt).where(LoginAttempt.id == row_id).values(succeeded=True))
    db.session.flush()
    if user is not None:
        mirror(user)


def record(key: str, ip: str, *, succeeded: bool, user: User | None = None) -> None:
    """Store one decided attempt and mirror the account's failure count onto ``user``; flushes."""
    db.session.add(LoginAttempt(at=utcnow(), ip=ip, email_digest=key, succeeded=succeeded))
    db.session.flush()
    if user is not None:
        mirror(user)


def mirror(user: User) -> None:
    """Copy the longer of the account's two runs (passwords, codes) onto the user row for admins."""
    runs = [consecutive_failures(key) for key in (account_key(user.email), factor_key(user))]
    failures, latest = max(runs, key=lambda run: run[0])
    user.failed_logins = failures
    wait = backoff_seconds(failures)
    user.locked_until = latest + dt.timedelta(seconds=wait) if failures and wait else None


def unlock(user: User, ip: str) -> None:
    """End both of the user's runs of failures; recorded as successful attempts. Flushes."""
    record(factor_key(user), ip, succeeded=True)
    record(account_key(user.email), ip, succeeded=True, user=user)


def is_locked(user: User) -> bool:
    """True when the account has reached the hard lock."""
    return user.failed_logins >= int(current_app.config["LOGIN_LOCK_AFTER"])
