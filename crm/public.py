"""Public pages: the confidential enquiry form, the thank-you page, privacy notice, health."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import text

from .auth import public
from .models import db

bp = Blueprint("public", __name__)


@bp.get("/privacy")
@public
def privacy():
    """Show the privacy notice patients acknowledge on the form."""
    return render_template("public/privacy.html")


@bp.get("/health")
@public
def health():
    """Answer a load balancer's liveness probe after one round trip to the database."""
    db.session.execute(text("SELECT 1"))
    db.session.rollback()
    return {"status": "ok"}
