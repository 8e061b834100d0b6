"""Audit benchmarks: chain verification throughput and the audit append's cost per request.

Run from the project root:

    .venv/bin/python benchmarks/audit_bench.py verify [--events 1000000]
    .venv/bin/python benchmarks/audit_bench.py overhead [--requests 8000] [--concurrency 16]

``verify`` builds a chained log in a temporary SQLite database (MACs precomputed, bulk
insert), then times :func:`crm.audit.verify_chain` against a plain streaming read of
the same rows. ``overhead`` serves the application with gunicorn (threads) on a
temporary SQLite database and compares the latency of an enquiry-like write with and
without the audit append, in alternating phases of concurrent keep-alive connections,
and reports the append's own server-side duration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm import audit, create_app, crypto  # noqa: E402
from crm.models import AuditEvent, db  # noqa: E402

ACTIONS = ("lead_viewed", "stage_changed", "note_added", "sign_in", "field_revealed", "enquiry_received")
INSERT_CHUNK = 20_000


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
    users = [str(uuid.uuid4()) for _ in range(12)]
    for seq in range(1, count + 1):
        row = {
            "seq": seq,
            "action": ACTIONS[seq % len(ACTIONS)],
            "actor_id": users[seq % len(users)],
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
    return sum(1 for _ in audit._chain_rows(events, audit.VERIFY_BATCH))


def timed(label: str, count: int, func) -> float:
    """Run ``func``, print its rate over ``count`` events and return the rate."""
    began = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - began
    rate = count / seconds
    print(f"{label:<34} {seconds:7.2f} s  {rate:>11,.0f} events/s   {result}")
    return rate


def run_verify(events: int) -> None:
    """Build ``events`` chained events and time verification against a raw read."""
    ring = crypto.Keyring.generate()
    with tempfile.TemporaryDirectory() as tmp:
        app = bench_app(Path(tmp), ring)
        with app.app_context():
            print(f"built {events:,} events in {build_log(events, ring.audit_key):.1f} s")
            raw = timed("raw read (same batches, no checks)", events, lambda: _raw_read(events))
            rate = timed("verify_chain", events, lambda: audit.verify_chain(ring.audit_key).ok)
            print(f"verify / raw read: {rate / raw:.2f}   target >= 100,000 events/s: "
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
        "deep keyset page (before=500000)": AuditFilter(before=500_000),
    }
    with app.test_request_context():
        for label, filters in cases.items():
            began = time.perf_counter()
            page = page_of_events(filters)
            print(f"viewer query: {label:<34} {1000 * (time.perf_counter() - began):7.1f} ms "
                  f"({len(page.rows)} rows)")


# --- overhead under concurrency -----------------------------------------------------------


def _request(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[float, float | None]:
    """POST once; return the latency and, for the audited endpoint, the append's own time."""
    began = time.perf_counter()
    conn.request("POST", path, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}")
    appended = response.getheader("X-Append-Us")
    return time.perf_counter() - began, float(appended) / 1e6 if appended else None


def _client(port: int, path: str, count: int, out: list[tuple[float, float | None]], lock: threading.Lock) -> None:
    """Send ``count`` requests on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = b"source=web_form&first_name=Bench&last_name=Mark&phone=9495550100"
    mine = [_request(conn, path, body) for _ in range(count)]
    conn.close()
    with lock:
        out.extend(mine)


def _phase(port: int, kind: str, concurrency: int, requests: int) -> list[tuple[float, float | None]]:
    """All ``concurrency`` connections hammer one endpoint; returns (latency, append) samples."""
    out: list[tuple[float, float | None]] = []
    lock = threading.Lock()
    per_client = max(1, requests // concurrency)
    clients = [threading.Thread(target=_client, args=(port, f"/bench/{kind}", per_client, out, lock))
               for _ in range(concurrency)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    return out


def _wait_for(port: int, process: subprocess.Popen) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError("the benchmark server exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the benchmark server did not start")


def _ms(values: list[float], pct: int) -> float:
    return 1000 * statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def run_overhead(requests: int, concurrency: int, workers: int, port: int, rounds: int) -> None:
    """Serve the bench app with gunicorn; alternate plain and audited phases and compare p95."""
    ring = crypto.Keyring.generate()
    threads = max(1, concurrency // workers)
    samples: dict[str, list[tuple[float, float | None]]] = {"plain": [], "audited": []}
    round_p95: dict[str, list[float]] = {"plain": [], "audited": []}
    with tempfile.TemporaryDirectory() as tmp:
        bench_app(Path(tmp), ring)  # creates the schema
        env = {**os.environ, "BENCH_DIR": tmp, "BENCH_KEYRING": ring.to_json()}
        command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads),
                   "--worker-class", "gthread", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                   "benchmarks.audit_bench_app:app"]
        server = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
        try:
            _wait_for(port, server)
            for kind in samples:  # warm-up
                _phase(port, kind, concurrency, concurrency * 10)
            per_phase = requests // (2 * rounds)
            for _ in range(rounds):
                for kind in samples:
                    got = _phase(port, kind, concurrency, per_phase)
                    samples[kind] += got
                    round_p95[kind].append(_ms([latency for latency, _ in got], 95))
        finally:
            server.terminate()
            server.wait(timeout=30)
    _report(samples, round_p95, concurrency, workers, threads)


def _report(samples: dict, round_p95: dict, concurrency: int, workers: int, threads: int) -> None:
    print(f"{concurrency} keep-alive connections, gunicorn {workers} workers x {threads} threads, SQLite (WAL, "
          f"synchronous=FULL), {len(round_p95['plain'])} alternating rounds per endpoint")
    summary: dict[str, float] = {}
    for kind, got in samples.items():
        latencies = [latency for latency, _ in got]
        summary[f"{kind}_p50"], summary[f"{kind}_p95"] = _ms(latencies, 50), _ms(latencies, 95)
        rounds = ", ".join(f"{v:.1f}" for v in round_p95[kind])
        print(f"  {kind:<8} n={len(latencies):5d}  p50 {summary[f'{kind}_p50']:7.2f} ms  "
              f"p95 {summary[f'{kind}_p95']:7.2f} ms  (p95 per round: {rounds})")
    appends = [appended for _, appended in samples["audited"] if appended is not None]
    summary["append_p50"], summary["append_p95"] = _ms(appends, 50), _ms(appends, 95)
    summary["p95_added"] = summary["audited_p95"] - summary["plain_p95"]
    summary["median_round_p95_added"] = statistics.median(
        a - p for a, p in zip(round_p95["audited"], round_p95["plain"], strict=True))
    print(f"  the append itself (server side): p50 {summary['append_p50']:.3f} ms, p95 {summary['append_p95']:.3f} ms")
    print(f"  p95 added (all samples): {summary['p95_added']:+.2f} ms; median over rounds: "
          f"{summary['median_round_p95_added']:+.2f} ms (target <= 2 ms)")
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))


def main() -> None:
    """Parse the command line and run one benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="which", required=True)
    verify = sub.add_parser("verify")
    verify.add_argument("--events", type=int, default=1_000_000)
    overhead = sub.add_parser("overhead")
    overhead.add_argument("--requests", type=int, default=8000)
    overhead.add_argument("--concurrency", type=int, default=16)
    overhead.add_argument("--workers", type=int, default=2)
    overhead.add_argument("--port", type=int, default=8765)
    overhead.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.which == "verify":
        run_verify(args.events)
    else:
        run_overhead(args.requests, args.concurrency, args.workers, args.port, args.rounds)


if __name__ == "__main__":
    main()
