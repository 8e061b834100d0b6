"""Sign-in throttling kept in the database, so every worker and every instance shares it.

Each attempt (password or second factor) is a :class:`LoginAttempt` row keyed by a keyed
digest of the e-mail typed, whether or not such an account exists, so unknown and real
accounts are throttled alike. Per account: after ``LOGIN_BACKOFF_AFTER`` consecutive
failures each further attempt waits twice as long as the last (capped), and
``LOGIN_LOCK_AFTER`` consecutive failures lock the account until an admin unlocks it.
Per address: ``LOGIN_IP_LIMIT`` failures within ``LOGIN_IP_WINDOW_MINUTES``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from . import crypto
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


def record(key: str, ip: str, *, succeeded: bool, user: User | None = None) -> None:
    """Store one attempt and mirror the account's failure count onto ``user``; flushes."""
    db.session.add(LoginAttempt(at=utcnow(), ip=ip, email_digest=key, succeeded=succeeded))
    db.session.flush()
    if user is None:
        return
    failures, latest = consecutive_failures(key)
    user.failed_logins = failures
    wait = backoff_seconds(failures)
    user.locked_until = latest + dt.timedelta(seconds=wait) if failures and wait else None


def unlock(user: User, ip: str) -> None:
    """End the user's run of failures; recorded as a successful attempt. Flushes."""
    record(account_key(user.email), ip, succeeded=True, user=user)


def is_locked(user: User) -> bool:
    """True when the account has reached the hard lock."""
    return user.failed_logins >= int(current_app.config["LOGIN_LOCK_AFTER"])
