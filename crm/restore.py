"""On start, re-apply the shred ledger when the database was restored from an older backup.

A database that has erased fewer leads than the ledger names was restored from a copy made
before some erasures; those leads are shredded again before the app serves a request.
The check costs one count and one read of the ledger file.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy import inspect

from .models import db
from .operations import privacy


def init_app(app: Flask) -> None:
    """Shred again any lead the ledger names but the database still holds (after a restore)."""
    with app.app_context():
        columns = {c["name"] for c in inspect(db.engine).get_columns("leads")} if _has_leads() else set()
        if "erased_at" not in columns or not privacy.ledger_behind_database():
            db.session.rollback()
            return
        total = 0
        for batch in privacy.unshredded_from_ledger():
            privacy.reapply_ledger(batch)
            db.session.commit()
            total += len(batch)
        db.session.rollback()
        if total:
            app.logger.warning("restore check: %d erased lead(s) from the shred ledger were shredded again", total)


def _has_leads() -> bool:
    return "leads" in inspect(db.engine).get_table_names()
