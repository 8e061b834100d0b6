"""Staff account administration."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/users")
def users():
    """List staff accounts."""
    return render_template("admin/users.html")
