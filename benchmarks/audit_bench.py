"""Audit benchmarks: chain verification throughput and the audit append's cost per request.

Run from the project root:

    .venv/bin/python benchmarks/audit_bench.py verify [--events 1000000]
    .venv/bin/python benchmarks/audit_bench.py overhead [--requests 12000] [--concurrency 16] [--rounds 30]

``verify`` builds a chained log in a temporary SQLite database (MACs precomputed, bulk
insert), then times :func:`crm.audit.verify_chain` in one process and as ``audit verify``
runs it (one process per CPU for a long log) against a plain one-process streaming read
of the same rows. ``overhead`` serves the real public enquiry form twice with gunicorn (2
workers each, one SQLite file each, set up as ``enquiry_bench.py`` does): once as shipped
and once with the audit append replaced by a no-op. Rounds of full form submissions over
concurrent connections alternate between the two servers (ABBA order); it prints the p95
latency added by the append, pooled over all rounds with a 95% interval from resampling
paired rounds, and the append's own server-side duration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import enquiry_bench  # noqa: E402  (beside this script)

from crm import audit, create_app, crypto  # noqa: E402
from crm.models import AuditEvent, db  # noqa: E402

ACTIONS = ("lead_viewed", "stage_changed", "note_added", "sign_in", "field_revealed", "enquiry_received")
INSERT_CHUNK = 20_000
USERS = [str(uuid.UUID(int=n)) for n in range(1, 13)]


def bench_app(directory: Path, ring: crypto.Keyring, **extra: object):
    """An application on a fresh SQLite file in ``directory``."""
    config = {
        "TESTING": True,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "KEYRING": ring.to_json(),
        "DATABASE_URL": f"sqlite:///{directory / 'bench.sqlite3'}",
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        **extra,
    }
    app = create_app(config, instance_path=str(directory / "instance"))
    with app.app_context():
        db.create_all()
    return app


def _rows(count: int, key: bytes):
    """Yield chained event rows as dicts, MACs computed as the writer would."""
    prev = audit.GENESIS_MAC
    start = dt.datetime(2026, 1, 1)
    for seq in range(1, count + 1):
        row = {
            "seq": seq,
            "action": ACTIONS[seq % len(ACTIONS)],
            "actor_email": f"staff{seq % len(USERS)}@clinic.test",
            "actor_id": USERS[seq % len(USERS)],
            "actor_kind": "user",
            "at": start + dt.timedelta(milliseconds=250 * seq),
            "details": '{"field":"phone"}' if seq % 3 else "{}",
            "ip": f"10.0.{seq % 250}.{seq % 200}",
            "object_id": str(uuid.UUID(int=seq % 40_000)),
            "object_type": "lead",
            "outcome": "success",
            "request_id": str(uuid.UUID(int=seq)),
        }
        fields = [row[c.key] for c in audit.CHAIN_COLUMNS[:-2]]
        row["prev_mac"] = prev
        row["mac"] = prev = hmac.digest(key, prev + audit.canonical_row(*fields), hashlib.sha256)
        yield row


def build_log(count: int, key: bytes) -> float:
    """Insert ``count`` chained events in chunks; returns seconds taken."""
    began = time.perf_counter()
    chunk: list[dict] = []
    for row in _rows(count, key):
        chunk.append(row)
        if len(chunk) == INSERT_CHUNK:
            _insert(chunk)
            chunk = []
    if chunk:
        _insert(chunk)
    return time.perf_counter() - began


def _insert(chunk: list[dict]) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(AuditEvent.__table__), chunk)


def _raw_read(events: int) -> int:
    """Stream the same rows through the same driver-cursor batches, checking nothing."""
    return sum(1 for _ in audit._chain_rows(audit.BEFORE_ANY_SEQ, events, audit.VERIFY_BATCH))


def timed(label: str, count: int, func) -> float:
    """Run ``func``, print its rate over ``count`` events and return the rate."""
    began = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - began
    rate = count / seconds
    print(f"{label:<40} {seconds:7.2f} s  {rate:>11,.0f} events/s   {result}")
    return rate


def run_verify(events: int) -> None:
    """Build ``events`` chained events and time verification against a raw read."""
    ring = crypto.Keyring.generate()
    with tempfile.TemporaryDirectory() as tmp:
        app = bench_app(Path(tmp), ring)
        with app.app_context():
            print(f"built {events:,} events in {build_log(events, ring.audit_key):.1f} s")
            raw = timed("raw read (same batches, no checks)", events, lambda: _raw_read(events))
            alone = timed("verify_chain, one process", events,
                          lambda: audit.verify_chain(ring.audit_key, workers=1).ok)
            rate = timed("verify_chain (as `audit verify` runs)", events,
                         lambda: audit.verify_chain(ring.audit_key).ok)
            print(f"verify / raw read: one process {alone / raw:.2f}, as run {rate / raw:.2f} "
                  f"({os.cpu_count()} CPUs)   target >= 100,000 events/s: "
                  f"{'met' if rate >= 100_000 else 'NOT met'}")
            time_viewer_queries(app)


def time_viewer_queries(app) -> None:
    """Time the admin viewer's page queries on the big log (newest page, filters, deep page)."""
    from crm.audit import AuditFilter, page_of_events

    lead = str(uuid.UUID(int=1234))
    cases = {
        "newest page, no filter": AuditFilter(),
        "action filter": AuditFilter(action="field_revealed"),
        "lead filter": AuditFilter(lead_id=lead),
        "date range (one day)": AuditFilter(since=dt.datetime(2026, 1, 2), until=dt.datetime(2026, 1, 3)),
        "user and date range (one day)": AuditFilter(actor_id=USERS[5], since=dt.datetime(2026, 1, 2),
                                                     until=dt.datetime(2026, 1, 3)),
        "deep keyset page (before=500000)": AuditFilter(before=500_000),
    }
    with app.test_request_context():
        for label, filters in cases.items():
            began = time.perf_counter()
            page = page_of_events(filters)
            print(f"viewer query: {label:<34} {1000 * (time.perf_counter() - began):7.1f} ms "
                  f"({len(page.rows)} rows)")


# --- overhead under concurrency -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One enquiry POST: latency at the client, time spent in the application, and the append's share."""

    latency: float
    service: float
    append: float | None


def _round(port: int, concurrency: int, requests: int, first: int) -> list[Sample]:
    """POST ``requests`` enquiries over ``concurrency`` connections; one :class:`Sample` each."""
    per_client = max(1, requests // concurrency)
    clients = [enquiry_bench.CrmClient(port, per_client) for _ in range(concurrency)]  # untimed form loads
    out: list[Sample] = []
    lock = threading.Lock()

    def work(index: int, client: enquiry_bench.CrmClient) -> None:
        mine = []
        for i in range(per_client):
            began = time.perf_counter()
            status = client.send(first + index * per_client + i)
            latency = time.perf_counter() - began
            if status != 303:
                raise RuntimeError(f"enquiry answered {status}")
            appended = client.last_headers.get("X-Append-Us")
            mine.append(Sample(latency, float(client.last_headers["X-Service-Us"]) / 1e6,
                               float(appended) / 1e6 if appended else None))
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def _ms(values: list[float], pct: int) -> float:
    return 1000 * statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def run_overhead(requests: int, concurrency: int, rounds: int, worker_class: str) -> None:
    """Serve the enquiry form twice (audited, and with the append stubbed out); alternate rounds; compare p95."""
    rounds_got: dict[str, list[list[Sample]]] = {"plain": [], "audited": []}
    with tempfile.TemporaryDirectory() as tmp:
        servers, ports = [], {}
        try:
            for kind in rounds_got:
                workdir = Path(tmp) / kind
                workdir.mkdir()
                env = enquiry_bench.crm_env(workdir)
                enquiry_bench.migrate(env)
                env["BENCH_AUDIT"] = "off" if kind == "plain" else "on"
                ports[kind] = enquiry_bench.free_port()
                servers.append(enquiry_bench.start("benchmarks.audit_bench_app:app", env, ports[kind],
                                                   enquiry_bench.ROOT, worker_class))
            for port in ports.values():
                enquiry_bench.wait_for(port, "/health")
                _round(port, concurrency, concurrency * 10, 0)  # warm-up
            per_round = requests // (2 * rounds)
            for number in range(rounds):
                order = list(ports.items()) if number % 2 == 0 else list(ports.items())[::-1]
                for kind, port in order:  # ABBA: neither server always runs first
                    rounds_got[kind].append(_round(port, concurrency, per_round, (number + 1) * per_round))
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    _report(rounds_got, concurrency, worker_class)


def _pooled_p95_added(rounds_got: dict, picks: list[int], measure: str) -> float:
    """p95 of ``measure`` on the audited server minus the plain one's, over the rounds in ``picks``."""
    p95 = {kind: _ms([getattr(sample, measure) for i in picks for sample in got[i]], 95)
           for kind, got in rounds_got.items()}
    return p95["audited"] - p95["plain"]


def _bootstrap_interval(rounds_got: dict, measure: str, resamples: int = 1000) -> tuple[float, float]:
    """95% interval of the pooled p95 added, resampling paired rounds (a slow spell hits both servers)."""
    count = len(rounds_got["plain"])
    draw = random.Random(0)
    estimates = sorted(_pooled_p95_added(rounds_got, [draw.randrange(count) for _ in range(count)], measure)
                       for _ in range(resamples))
    return estimates[int(0.025 * resamples)], estimates[int(0.975 * resamples) - 1]


MEASURES = {"latency": "at the client", "service": "in the application"}


def _report(rounds_got: dict, concurrency: int, worker_class: str) -> None:
    count = len(rounds_got["plain"])
    print(f"enquiry POSTs over {concurrency} connections, gunicorn 2 {worker_class} workers, SQLite (WAL, "
          f"synchronous=FULL), {count} alternating rounds per server")
    summary: dict[str, float] = {}
    for measure, where in MEASURES.items():
        print(f"  {where}:")
        for kind, got in rounds_got.items():
            values = [getattr(sample, measure) for one in got for sample in one]
            p50, p95 = summary[f"{measure}_{kind}_p50"], summary[f"{measure}_{kind}_p95"] = (
                _ms(values, 50), _ms(values, 95))
            print(f"    {kind:<8} n={len(values):5d}  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
        added = summary[f"{measure}_p95_added"] = _pooled_p95_added(rounds_got, list(range(count)), measure)
        low, high = summary[f"{measure}_p95_added_low"], summary[f"{measure}_p95_added_high"] = (
            _bootstrap_interval(rounds_got, measure))
        print(f"    p95 added {added:+.2f} ms, 95% interval {low:+.2f} to {high:+.2f} ms "
              f"(resampled rounds; target <= 2 ms)")
    appends = [sample.append for one in rounds_got["audited"] for sample in one if sample.append is not None]
    summary["append_p50"], summary["append_p95"] = _ms(appends, 50), _ms(appends, 95)
    print(f"  the append itself: p50 {summary['append_p50']:.3f} ms, p95 {summary['append_p95']:.3f} ms")
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))


def main() -> None:
    """Parse the command line and run one benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="which", required=True)
    verify = sub.add_parser("verify")
    verify.add_argument("--events", type=int, default=1_000_000)
    overhead = sub.add_parser("overhead")
    overhead.add_argument("--requests", type=int, default=12000)
    overhead.add_argument("--concurrency", type=int, default=16)
    overhead.add_argument("--rounds", type=int, default=30)
    overhead.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    args = parser.parse_args()
    if args.which == "verify":
        run_verify(args.events)
    else:
        run_overhead(args.requests, args.concurrency, args.rounds, args.worker_class)


if __name__ == "__main__":
    main()
