"""Audit benchmarks: chain verification throughput and the audit append's cost per request.

Run from the project root:

    .venv/bin/python benchmarks/audit_bench.py verify [--events 1000000]
    .venv/bin/python benchmarks/audit_bench.py overhead [--requests 8000] [--concurrency 16] [--rounds 8]

``verify`` builds a chained log in a temporary SQLite database (MACs precomputed, bulk
insert), then times :func:`crm.audit.verify_chain` against a plain streaming read of
the same rows. ``overhead`` serves the real public enquiry form twice with gunicorn (2
workers each, one SQLite file each, set up as ``enquiry_bench.py`` does): once as shipped
and once with the audit append replaced by a no-op. Rounds of full form submissions over
concurrent connections alternate between the two servers; it prints the p95 latency added
by the append (pooled, and the median of the per-round differences) and the append's own
server-side duration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import enquiry_bench  # noqa: E402  (beside this script)

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


def _round(port: int, concurrency: int, requests: int, first: int) -> list[tuple[float, float | None]]:
    """POST ``requests`` enquiries over ``concurrency`` connections; (latency, append) per request."""
    per_client = max(1, requests // concurrency)
    clients = [enquiry_bench.CrmClient(port, per_client) for _ in range(concurrency)]  # untimed form loads
    out: list[tuple[float, float | None]] = []
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
            mine.append((latency, float(appended) / 1e6 if appended else None))
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
    samples: dict[str, list[tuple[float, float | None]]] = {"plain": [], "audited": []}
    round_p95: dict[str, list[float]] = {"plain": [], "audited": []}
    with tempfile.TemporaryDirectory() as tmp:
        servers, ports = [], {}
        try:
            for kind in samples:
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
                for kind, port in ports.items():
                    got = _round(port, concurrency, per_round, (number + 1) * per_round)
                    samples[kind] += got
                    round_p95[kind].append(_ms([latency for latency, _ in got], 95))
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    _report(samples, round_p95, concurrency, worker_class)


def _report(samples: dict, round_p95: dict, concurrency: int, worker_class: str) -> None:
    print(f"enquiry POSTs over {concurrency} connections, gunicorn 2 {worker_class} workers, SQLite (WAL, "
          f"synchronous=FULL), {len(round_p95['plain'])} alternating rounds per server")
    summary: dict[str, float] = {}
    for kind, got in samples.items():
        latencies = [latency for latency, _ in got]
        summary[f"{kind}_p50"], summary[f"{kind}_p95"] = _ms(latencies, 50), _ms(latencies, 95)
        per_round = ", ".join(f"{v:.1f}" for v in round_p95[kind])
        print(f"  {kind:<8} n={len(latencies):5d}  p50 {summary[f'{kind}_p50']:7.2f} ms  "
              f"p95 {summary[f'{kind}_p95']:7.2f} ms  (p95 per round: {per_round})")
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
    overhead.add_argument("--rounds", type=int, default=8)
    overhead.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    args = parser.parse_args()
    if args.which == "verify":
        run_verify(args.events)
    else:
        run_overhead(args.requests, args.concurrency, args.rounds, args.worker_class)


if __name__ == "__main__":
    main()
