"""Staff account use cases."""

from __future__ import annotations

from sqlalchemy import func, select

from .. import audit
from ..models import Role, User, db, utcnow
from ..passwords import hash_password, password_problem


class AccountError(ValueError):
    """A user-facing reason an account change was refused."""


def create_user(email: str, role: Role, *, password: str | None = None, actor: User | None = None,
                display_name: str = "") -> User:
    """Create a staff account (e-mail unique in any case); audited, flushed, not committed."""
    email = email.strip().lower()
    if db.session.scalar(select(User.id).where(func.lower(User.email) == email)):
        raise AccountError("An account with that e-mail already exists.")
    user = User(email=email, role=Role(role), display_name=display_name)
    if password is not None:
        problem = password_problem(password, has_totp=False, context=(email.split("@")[0],))
        if problem:
            raise AccountError(problem)
        user.password_hash = hash_password(password)
        user.password_changed_at = utcnow()
    db.session.add(user)
    db.session.flush()
    audit.record("user_created", actor=actor, object_type="user", object_id=user.id, details={"role": str(role)})
    return user
