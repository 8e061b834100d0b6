"""The audit viewer."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/audit")
def audit():
    """Browse the audit log."""
    return render_template("admin/audit.html")
