"""Benchmark: outbox delivery to a local SMTP sink against a bare smtplib loop, and alert latency.

Run: ``.venv/bin/python benchmarks/alerts_bench.py [--messages 10000] [--samples 40]
[--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]``.

Throughput: an aiosmtpd sink (``aiosmtpd.handlers.Sink``, its own process) on a loopback port.
The baseline is a bare loop of ``smtplib.SMTP.send_message`` calls over one connection, the
same message size, built with the same ``compat32`` ``MIMEText`` as the worker's. Then
``--messages`` outbox rows are queued in a fresh PostgreSQL schema and delivered by one worker
process, then (queued again) by four; each worker is the real ``crm.jobs.worker.Worker`` in
``once`` mode, started in a forked child that builds its own app, and timed from a common start
signal until the last child exits. The baseline runs before and after the workers; the ratio
uses their mean. Target: each worker figure at least 0.5x.

Latency: with one worker idle in its normal loop (default 0.5 s poll), urgent enquiries are
committed one at a time at random gaps (0.2-1.2 s) and the time from each commit to the
message's arrival at an in-process sink is recorded; p50 and p95 printed. Target: p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import random
import secrets
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from email.mime.text import MIMEText
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crm import create_app, crypto  # noqa: E402
from crm.jobs.worker import Worker  # noqa: E402
from crm.models import OnCallMember, OutboxMessage, Role, User, db, utcnow  # noqa: E402
from crm.operations import alerts  # noqa: E402
from crm.operations import enquiries as intake  # noqa: E402

BODY = ("Urgent enquiry ABCD-EFGH: the patient asked for help now. Call them as soon as you can.\n\n"
        "Reference: ABCD-EFGH\nWhen: Tue Dec 1, 2:04 AM PST\nSign in: https://crm.clinic.example/leads/"
        f"{uuid.uuid4()}\n\n{alerts.FOOTER}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink(port: int) -> subprocess.Popen:
    """The throughput sink in its own process, so it never competes with the measured side for the GIL."""
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Sink"])
    for _ in range(200):
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
            return sink
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the SMTP sink did not start")


def bare_loop(port: int, count: int) -> float:
    """Messages per second of a bare smtplib loop over one connection."""
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for n in range(count):
        message = MIMEText(BODY, "plain", "utf-8")  # built as the worker builds its messages
        message["From"], message["To"], message["Subject"] = "alerts@clinic.test", "staff@clinic.test", f"Test {n}"
        message["Message-ID"] = f"<{n}@clinic.test>"
        smtp.send_message(message)
    elapsed = time.perf_counter() - started
    smtp.quit()
    return count / elapsed


def app_config(database_url: str, schema: str, keyring: str, smtp_port: int, instance: str) -> dict:
    return {"DATABASE_URL": database_url, "KEYRING": keyring, "SECRET_KEY": secrets.token_urlsafe(48),
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-csearch_path={schema}"}},
            "AUTO_MIGRATE": False, "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "MAIL_FROM": "alerts@clinic.test",
            "BASE_URL": "https://crm.clinic.example", "JOBS_PERIODIC_SECONDS": 3600, "BLIND_INDEX_ROWS": 100_000}


def queue_rows(app, count: int, user_id: str) -> None:
    """Queue ``count`` e-mail rows with one multi-row insert per thousand."""
    now = utcnow()
    with app.app_context():
        for start in range(0, count, 1000):
            db.session.execute(insert(OutboxMessage), [
                {"id": str(uuid.uuid4()), "idempotency_key": f"bench:{uuid.uuid4()}", "channel": "email",
                 "kind": alerts.URGENT, "recipient": "staff@clinic.test", "user_id": user_id,
                 "subject": f"Urgent enquiry {n}", "body": BODY, "status": "pending", "attempts": 0,
                 "next_attempt_at": now, "created_at": now} for n in range(start, min(start + 1000, count))])
        db.session.commit()


def _child(config: dict, instance: str, ready, go, idle: bool) -> None:
    app = create_app(config, instance_path=instance)
    with app.app_context():
        worker = Worker(app)
        ready.set()
        go.wait()
        if idle:
            threading.Thread(target=lambda: (time.sleep(3600), worker.stop.set()), daemon=True).start()
        worker.run(once=not idle)


def timed_workers(config: dict, instance: str, workers: int) -> float:
    """Seconds from a common start until ``workers`` forked workers have drained the outbox."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    readies = [context.Event() for _ in range(workers)]
    children = [context.Process(target=_child, args=(config, instance, ready, go, False)) for ready in readies]
    for child in children:
        child.start()
    for ready in readies:
        ready.wait(60)
    started = time.perf_counter()
    go.set()
    for child in children:
        child.join()
    return time.perf_counter() - started


def sent_count(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.status == "sent")) or 0
        db.session.execute(text("DELETE FROM outbox_messages"))
        db.session.commit()
        return count


class ArrivalSink:
    """An in-process aiosmtpd sink recording each message's subject and arrival wall time."""

    def __init__(self, port: int):
        from aiosmtpd.controller import Controller

        self.arrivals: dict[str, float] = {}
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        subject = next((line for line in envelope.content.decode(errors="replace").splitlines()
                        if line.startswith("Subject: ")), "")
        self.arrivals[subject.removeprefix("Subject: ")] = time.time()
        await asyncio.sleep(0)
        return "250 OK"


def submission(n: int) -> intake.Submission:
    return intake.Submission(
        contact=intake.Contact(first_name="Bench", last_name=f"Patient{n}", dob=dt.date(1980, 1, 1),
                               phone=f"+1949555{n:04d}"),
        coverage=intake.Coverage(coverage_type="ppo"),
        consent=intake.Consent(version="2026-01", ip=None, privacy_ack=True, marketing=False),
        idempotency_digest=secrets.token_hex(32), crisis=True)


def latency(config: dict, instance: str, samples: int) -> list[float]:
    """Commit-to-sink delays of urgent enquiries with one idle worker in its normal loop."""
    port = free_port()
    config = {**config, "SMTP_URL": f"smtp://127.0.0.1:{port}"}
    sink = ArrivalSink(port)
    sink.controller.start()
    context = multiprocessing.get_context("fork")
    ready, go = context.Event(), context.Event()
    child = context.Process(target=_child, args=(config, instance, ready, go, True))
    child.start()
    ready.wait(60)
    go.set()
    app = create_app(config, instance_path=instance)
    committed: dict[str, float] = {}
    rng = random.Random(16)  # noqa: S311 - gaps, not secrets
    try:
        for n in range(samples):
            time.sleep(rng.uniform(0.2, 1.2))
            with app.test_request_context():
                receipt = intake.receive_enquiry(intake.prepare_enquiry(submission(n)))
                db.session.commit()
                committed[f"Urgent enquiry {receipt.reference}"] = time.time()
        deadline = time.time() + 10
        while len(sink.arrivals) < samples and time.time() < deadline:
            time.sleep(0.05)
    finally:
        child.terminate()
        child.join()
        sink.controller.stop()
    return [sink.arrivals[subject] - at for subject, at in committed.items() if subject in sink.arrivals]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    schema = f"bench_alerts_{uuid.uuid4().hex[:8]}"
    admin_engine = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    port = free_port()
    sink = start_sink(port)
    instance = f"/tmp/{schema}"
    config = app_config(args.database_url, schema, crypto.Keyring.generate().to_json(), port, instance)
    try:
        app = create_app(config, instance_path=instance)
        with app.app_context():
            db.create_all()
            user = User(email="staff@clinic.test", role=Role.ADMIN)
            db.session.add(user)
            db.session.commit()
            db.session.add(OnCallMember(user_id=user.id))
            db.session.commit()
            user_id = user.id
        bare = [bare_loop(port, args.messages)]
        rates = {}
        for workers in (1, 4):
            queue_rows(app, args.messages, user_id)
            seconds = timed_workers(config, instance, workers)
            assert sent_count(app) == args.messages, "not every message was sent"
            rates[workers] = args.messages / seconds
        bare.append(bare_loop(port, args.messages))
        baseline = statistics.mean(bare)
        print(f"messages: {args.messages} per run, PostgreSQL, aiosmtpd sink in its own process")
        print(f"bare smtplib loop: {bare[0]:.0f} and {bare[1]:.0f} msg/s (mean {baseline:.0f})")
        for workers, rate in rates.items():
            print(f"outbox, {workers} worker{'s' if workers > 1 else ''}: {rate:.0f} msg/s = {rate / baseline:.2f}x"
                  " the bare loop (target >= 0.5x)")
        delays = latency(config, instance, args.samples)
        print(f"urgent enquiry commit -> sink, idle worker, {len(delays)}/{args.samples} samples: "
              f"p50 {percentile(delays, 0.5):.3f} s, p95 {percentile(delays, 0.95):.3f} s, "
              f"max {max(delays):.3f} s (target p95 <= 2 s)")
    finally:
        sink.terminate()
        sink.wait()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin_engine.dispose()


if __name__ == "__main__":
    main()
