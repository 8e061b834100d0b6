"""Faults the load-and-fault harness (benchmarks/fault_harness.py) found, each pinned by a test."""

from __future__ import annotations

import socket
import sqlite3
import uuid

import pytest

from crm import create_app, database
from crm.models import db
from tests.test_public_form import row_counts, submit


def closed_port() -> int:
    """A loopback port with nothing listening, standing in for a Redis that went away."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_enquiries_are_accepted_and_still_limited_while_redis_is_away(config, request):
    """With Redis down the limiter counts in the worker's memory: patients get through, floods still stop."""
    config.update(RATELIMIT_ENABLED=True, ENQUIRY_RATE_LIMIT="2 per minute",
                  RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{closed_port()}",
                  RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}")
    app = request.getfixturevalue("app")
    client = app.test_client()
    assert submit(client, app).status_code == 303
    assert submit(client, app, phone="(714) 555-0199", email="b@example.net").status_code == 303
    third = submit(client, app, phone="(714) 555-0198", email="c@example.net")
    assert third.status_code == 429
    assert "Traceback" not in third.get_data(as_text=True)
    assert row_counts(app)["enquiries"] == 2


def test_a_commit_the_disk_refuses_shows_the_503_page_and_keeps_nothing(client, app, monkeypatch):
    """SQLite commits on the driver connection; a full or read-only disk there is a 503, not a 500."""
    if app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("SQLite's hand-over COMMIT runs on the driver connection")
    hand_over = database._end_and_hand_over

    def refused_commit(conn, statement):
        """What SQLite does when the disk refuses a COMMIT: the transaction is undone and the driver raises."""
        hand_over(conn, "ROLLBACK")
        if statement == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(database, "_end_and_hand_over", refused_commit)
    refused = submit(client, app)
    monkeypatch.setattr(database, "_end_and_hand_over", hand_over)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 503
    assert app.config["CLINIC_PHONE"] in page and "Traceback" not in page
    assert row_counts(app)["enquiries"] == 0
    assert submit(client, app).status_code == 303


def test_start_up_leaves_no_connection_for_forked_workers_to_share(app, config, tmp_path):
    """``gunicorn --preload`` forks after create_app: an inherited pooled connection, used by two workers at
    once, left transactions open and gave a 500 under load (found by the harness on PostgreSQL)."""
    with app.app_context():
        db.create_all()  # a schema, so every start-up check really queries
    second = create_app(config, instance_path=str(tmp_path / "instance"))
    with second.app_context():
        pool = db.engine.pool
        assert pool.checkedin() == 0 and pool.checkedout() == 0
