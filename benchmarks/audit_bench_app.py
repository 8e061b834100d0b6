"""The application plus two enquiry-like endpoints for ``audit_bench.py overhead`` (benchmark only).

``/bench/plain`` stores a lead with encrypted fields and commits; ``/bench/audited`` does
the same and appends the ``enquiry_received`` event in the same transaction, exactly as
the public form does, and reports the append's own duration in ``X-Append-Us``.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from flask import Blueprint, request

from crm import audit, create_app
from crm.auth import public
from crm.models import Lead, db

bp = Blueprint("bench", __name__, url_prefix="/bench")


def _store_lead() -> Lead:
    lead = Lead(
        first_name=request.form["first_name"], last_name=request.form["last_name"],
        phone=request.form["phone"], source=request.form["source"],
    )
    db.session.add(lead)
    db.session.flush()
    return lead


@bp.post("/plain")
@public
def plain():
    """Store an enquiry without auditing it."""
    _store_lead()
    db.session.commit()
    return "ok"


@bp.post("/audited")
@public
def audited():
    """Store an enquiry and audit it in the same transaction."""
    lead = _store_lead()
    began = time.perf_counter()
    audit.record("enquiry_received", actor_kind="public", object_type="lead", object_id=lead.id)
    appended = time.perf_counter() - began
    db.session.commit()
    return "ok", {"X-Append-Us": str(round(appended * 1e6))}


def _bench_app():
    directory = Path(os.environ["BENCH_DIR"])
    application = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": secrets.token_urlsafe(48),
            "KEYRING": os.environ["BENCH_KEYRING"],
            "DATABASE_URL": f"sqlite:///{directory / 'bench.sqlite3'}",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
        },
        instance_path=str(directory / "instance"),
    )
    application.register_blueprint(bp)
    return application


app = _bench_app()
