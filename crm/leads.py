"""The coordinator workspace: home queues, lead list, search, lead detail and actions."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("leads", __name__, url_prefix="/leads")


@bp.get("/home")
def home():
    """Show the coordinator's queues."""
    return render_template("leads/home.html")


@bp.get("/")
def index():
    """List leads."""
    return render_template("leads/home.html")
