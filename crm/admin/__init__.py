"""Administration blueprint: staff accounts (``users``) and the audit viewer (``audit``).

Every admin endpoint answers 403 to coordinators: the blueprint checks the role before
any view runs, so a new admin page cannot forget it.
"""

from __future__ import annotations

from flask import Blueprint

from ..access import require_role
from ..models import Role

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_admin() -> None:
    """Refuse (403, audited) every admin endpoint to anyone but a signed-in admin.

    Anonymous visitors never get here (sign-in is required app-wide); refusing them too keeps
    an admin view safe even if it were ever marked public by mistake.
    """
    require_role(Role.ADMIN, reason="admin_only")


from . import audit, imports, users  # noqa: E402,F401  (views register on bp)
