"""The worker as deployed: ``flask --app crm jobs run`` in its own process against the test database.

A worker killed between sending and marking sent leaves the message to be sent again, with the
same idempotency key; two workers never send the same row; SIGTERM lets the message in flight
finish. Run on SQLite and on PostgreSQL (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from crm.models import OutboxMessage, Role, User, db, utcnow
from crm.operations import alerts
from tests.outgoing import SmtpSink, hold

ROOT = Path(__file__).resolve().parent.parent


def worker_env(config: dict, tmp_path: Path, sink: SmtpSink, **settings: object) -> dict[str, str]:
    """The environment of a worker process that shares this test's database and keyring."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CRM_DATABASE_URL": config["DATABASE_URL"],
           "CRM_KEYRING": config["KEYRING"], "CRM_SECRET_KEY": config["SECRET_KEY"], "CRM_AUTO_MIGRATE": "false",
           "CRM_INSTANCE_PATH": str(tmp_path / "worker-instance"), "CRM_BLIND_INDEX_ROWS": "100000",
           "CRM_SMTP_URL": sink.url, "CRM_MAIL_FROM": "alerts@clinic.test", "CRM_JOBS_POLL_SECONDS": "0.1"}
    if "SQLALCHEMY_ENGINE_OPTIONS" in config:
        env["CRM_SQLALCHEMY_ENGINE_OPTIONS"] = json.dumps(config["SQLALCHEMY_ENGINE_OPTIONS"])
    env.update({f"CRM_{name}": str(value) for name, value in settings.items()})
    return env


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "crm", "jobs", "run", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def queue_messages(app, user_id: str, count: int) -> None:
    with app.app_context():
        user, now = db.session.get(User, user_id), utcnow()
        for n in range(count):
            alerts.queue(f"test:{n}|{user_id}|email", "email", alerts.URGENT, user, f"Test {n}", "No PHI here.", now)
        db.session.commit()


def outbox_rows(app) -> list[OutboxMessage]:
    with app.app_context():
        return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.subject)))


def test_worker_killed_between_send_and_mark_sent_resends_with_the_same_key(app, config, tmp_path, sink,
                                                                               make_user):
    queue_messages(app, make_user(role=Role.ADMIN).id, 1)
    env = worker_env(config, tmp_path, sink, OUTBOX_LEASE_SECONDS=1)
    sink.on_data = lambda: hold(5)  # the sink has the message; the worker waits for its 250
    worker = start_worker(env)
    try:
        assert sink.received.wait(30), "the worker never connected"
        worker.kill()
    finally:
        worker.wait(10)
    sink.on_data = None
    [row] = outbox_rows(app)
    assert (row.status, row.attempts) == ("pending", 1)  # sent, never marked
    time.sleep(1.5)  # the dead worker's lease runs out
    again = subprocess.run([sys.executable, "-m", "flask", "--app", "crm", "jobs", "run", "--once"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    keys, ids = sink.keys(), [m["Message-ID"] for m in sink.messages]
    assert len(keys) == 2 and len(set(keys)) == 1 and len(set(ids)) == 1  # two deliveries, one message
    [row] = outbox_rows(app)
    assert (row.status, row.attempts) == ("sent", 2)


def test_two_workers_never_send_the_same_row_twice(app, config, tmp_path, sink, make_user):
    queue_messages(app, make_user(role=Role.ADMIN).id, 300)
    env = worker_env(config, tmp_path, sink)
    workers = [start_worker(env, "--once") for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    keys = sink.keys()
    assert len(keys) == 300 and len(set(keys)) == 300
    assert {row.status for row in outbox_rows(app)} == {"sent"}
    assert {row.attempts for row in outbox_rows(app)} == {1}


def test_sigterm_finishes_the_message_in_flight_and_exits_cleanly(app, config, tmp_path, sink, make_user):
    queue_messages(app, make_user(role=Role.ADMIN).id, 3)
    sink.on_data = lambda: hold(1)
    worker = start_worker(worker_env(config, tmp_path, sink))
    assert sink.received.wait(30)
    worker.send_signal(signal.SIGTERM)
    output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert "jobs: stopped" in output and "Traceback" not in output
    rows = outbox_rows(app)
    assert len(sink.raw) == 1
    assert sorted((row.status, row.attempts) for row in rows) == [("pending", 0), ("pending", 0), ("sent", 1)]
