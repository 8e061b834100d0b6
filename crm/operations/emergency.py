"""Break-glass emergency access (HIPAA §164.312(a)(2)(ii)): grant, end and look up grants.

A grant lets one named, active staff member sign in with their password alone (the second
factor is waived and a sign-in lock lifted) for a limited time, when the normal route is
unavailable in an emergency: a lost authenticator with no admin reachable, a locked account
during a patient's crisis. It is given only from the command line on the application host.
Granting raises a high-severity audit event addressed to every admin (the alerting worker
and the admin pages pick it up); every request made under the grant is audited as emergency
use. The reason is kept sealed, since it may name a patient.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from .. import audit, crypto, throttle
from ..models import EmergencyGrant, Role, User, db, keyring, new_id, utcnow

DEFAULT_MINUTES = 60
MAX_MINUTES = 240
MIN_REASON_LENGTH = 10


class EmergencyError(ValueError):
    """Why a grant was refused, for the operator."""


def grant(user: User, reason: str, minutes: int = DEFAULT_MINUTES) -> EmergencyGrant:
    """Grant ``user`` emergency access for ``minutes``; audited for every admin. Flushes."""
    reason = reason.strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise EmergencyError(f"give a reason of at least {MIN_REASON_LENGTH} characters (--reason)")
    if not 1 <= minutes <= MAX_MINUTES:
        raise EmergencyError(f"emergency access lasts 1 to {MAX_MINUTES} minutes")
    if not user.is_active_flag or not user.integrity_ok:
        raise EmergencyError("that account is deactivated or failed its integrity check")
    if active_grant(user) is not None:
        raise EmergencyError("that account already has emergency access; end it first (--end)")
    now = utcnow()
    row = EmergencyGrant(id=new_id(), user_id=user.id, granted_at=now,
                         expires_at=now + dt.timedelta(minutes=minutes))
    row.reason_sealed = crypto.seal(keyring(), "break-glass", row.id, reason.encode())
    db.session.add(row)
    throttle.unlock(user, "-")
    audit.record("emergency_access_granted", object_type="user", object_id=user.id, outcome="success",
                 details={"grant": row.id, "minutes": minutes, "expires_at": row.expires_at.isoformat(),
                          "severity": "high", "notify": "all_admins", "admins": _admin_count()})
    return row


def end(user: User) -> int:
    """End ``user``'s live grants now; returns how many. Audited, flushes."""
    now, ended = utcnow(), 0
    for row in live_grants(user_id=user.id):
        row.ended_at = now
        ended += 1
        audit.record("emergency_access_ended", object_type="user", object_id=user.id,
                     details={"grant": row.id, "severity": "high", "notify": "all_admins"})
    db.session.flush()
    return ended


def live_grants(user_id: str | None = None) -> list[EmergencyGrant]:
    """Grants in force now (intact rows only: a forged grant row grants nothing), newest first."""
    now = utcnow()
    query = select(EmergencyGrant).where(EmergencyGrant.granted_at <= now, EmergencyGrant.expires_at > now,
                                         EmergencyGrant.ended_at.is_(None))
    if user_id is not None:
        query = query.where(EmergencyGrant.user_id == user_id)
    return [row for row in db.session.scalars(query.order_by(EmergencyGrant.granted_at.desc())) if row.integrity_ok]


def active_grant(user: User) -> EmergencyGrant | None:
    """The grant in force for ``user`` now, if any."""
    grants = live_grants(user_id=user.id)
    return grants[0] if grants else None


def record_use(user: User, row: EmergencyGrant, endpoint: str | None, method: str) -> None:
    """Audit one request made under a grant (emergency use is always attributable)."""
    audit.record("emergency_access_used", actor=user, object_type="endpoint", object_id=endpoint,
                 details={"grant": row.id, "method": method.lower(), "emergency": True})


def _admin_count() -> int:
    return db.session.scalar(
        select(func.count(User.id)).where(User.role == Role.ADMIN, User.is_active_flag.is_(True))
    ) or 0
