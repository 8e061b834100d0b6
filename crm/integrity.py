"""Integrity of the security-relevant rows (accounts, sessions, emergency grants).

Each such row carries a MAC of its protected columns under a key derived from the keyring
(see :func:`crm.models.protected_mac`), checked every time the row is loaded. A database
writer without the keyring can change a password hash, a role or a session, but not the
MAC: the application refuses the row. This module finds such rows for ``audit verify`` and
seals accounts once, on the first start after the MAC column was added.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from . import audit
from .models import PROTECTED_MODELS, AuditEvent, Protected, User, UserSession, db, mac_matches, protected_mac

SEALED_ONCE = "accounts_sealed"


@dataclass(frozen=True)
class Tampered:
    """A row whose MAC does not match its protected columns."""

    table: str
    row_id: str


def tampered_rows() -> list[Tampered]:
    """Every account, session and grant row whose stored MAC is wrong or missing."""
    found = []
    for model in PROTECTED_MODELS:
        for row in db.session.scalars(select(model).execution_options(populate_existing=True)):
            if not mac_matches(row):
                found.append(Tampered(model.__tablename__, row.id))
    db.session.rollback()
    return found


def report(row: Protected) -> None:
    """Audit a row that failed its check (the caller refuses it and commits)."""
    if isinstance(row, UserSession):
        object_type, object_id = "session", row.id[:16]
    else:
        object_type, object_id = "user", row.user_id if hasattr(row, "user_id") else row.id
    audit.record("integrity_failed", object_type=object_type, object_id=object_id, outcome="failure",
                 details={"table": row.__tablename__})


def seal_legacy_accounts() -> int:
    """MAC every account once after the upgrade that added MACs; never again after that.

    Only while no account has a MAC yet and the audit log has no earlier sealing: afterwards
    a missing MAC means the row was tampered with. Audited; flushes, the caller commits.
    """
    already = db.session.scalar(select(func.count()).where(AuditEvent.action == SEALED_ONCE))
    sealed = db.session.scalar(select(func.count()).where(User.security_mac.is_not(None)))
    legacy = list(db.session.scalars(select(User).where(User.security_mac.is_(None))))
    if already or sealed or not legacy:
        return 0
    for user in legacy:
        user.integrity_ok = True
        user.security_mac = protected_mac(user)
    audit.record(SEALED_ONCE, object_type="user", details={"accounts": len(legacy)})
    return len(legacy)
