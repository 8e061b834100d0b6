"""Administration: staff accounts, the audit viewer, key status."""

from __future__ import annotations

from flask import Blueprint, render_template

from .auth import role_required
from .models import Role

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/users")
@role_required(Role.ADMIN)
def users():
    """List staff accounts."""
    return render_template("admin/users.html")


@bp.get("/audit")
@role_required(Role.ADMIN)
def audit():
    """Browse the audit log."""
    return render_template("admin/audit.html")
