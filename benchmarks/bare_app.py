"""The baseline: a bare Flask + Flask-SQLAlchemy endpoint that inserts one row per POST."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from flask import Flask, redirect, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


class Row(db.Model):
    """One stored submission."""

    id: Mapped[int] = mapped_column(primary_key=True)
    payload: Mapped[str]


@event.listens_for(Engine, "connect")
def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The same durability as the CRM: WAL, synchronous=FULL, a busy timeout."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = FULL"):
            dbapi_connection.execute(f"PRAGMA {pragma}")


def create_app() -> Flask:
    """Build the baseline app on the SQLite file named by BARE_DATABASE_URL."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BARE_DATABASE_URL"]
    db.init_app(app)
    with app.app_context():
        db.create_all()

    @app.post("/insert")
    def insert():
        """Store the posted form as one row and redirect."""
        db.session.add(Row(payload=request.get_data(as_text=True)))
        db.session.commit()
        return redirect("/done", code=303)

    return app
