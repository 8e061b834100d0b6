"""Benchmark: full enquiry submissions under gunicorn (2 workers, SQLite) against a bare insert.

Run: ``.venv/bin/python benchmarks/enquiry_bench.py [--requests 2000] [--connections 16]
[--worker-class sync|gthread]``.

Both servers run gunicorn with 2 workers on a temporary SQLite file (WAL, synchronous=FULL).
The default ``sync`` workers (gunicorn's default, the deployment docs' choice behind a proxy)
take one request per connection, so the kernel spreads the clients' requests over both
workers; ``gthread`` workers keep each keep-alive connection on the worker that accepted it
(``BENCH_THREADS`` threads each, default 1). The CRM runs with CSRF on: every virtual client
first loads the form to get its session cookie, CSRF token and one single-use form token per
submission it will send (those GETs are not timed). The rate limit is raised to 1,000,000
per minute (the limiter still runs) and the minimum fill time is 0 s, both through ``CRM_*``
environment variables. Each client is one ``http.client`` connection, reopened whenever the
server closes it (after every response with ``sync`` workers).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", os.environ.get("BENCH_THREADS", "1"),
            "--keep-alive", "30", "--log-level", "warning"]
TOKEN = re.compile(r'name="(csrf_token|form_token)" type="hidden" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, path: str) -> None:
    for _ in range(200):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def start(app: str, env: dict[str, str], port: int, cwd: Path, worker_class: str) -> subprocess.Popen:
    command = [*GUNICORN, "--worker-class", worker_class, "--bind", f"127.0.0.1:{port}", app]
    return subprocess.Popen(command, env={**os.environ, **env}, cwd=cwd)


def crm_env(workdir: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from crm import crypto

    keyring = workdir / "keyring.json"
    crypto.write_keyring_file(keyring, crypto.Keyring.generate())
    return {
        "CRM_INSTANCE_PATH": str(workdir / "instance"),
        "CRM_DATABASE_URL": f"sqlite:///{workdir / 'crm.sqlite3'}",
        "CRM_SECRET_KEY": secrets.token_urlsafe(48),
        "CRM_KEYRING_FILE": str(keyring),
        "CRM_ENQUIRY_RATE_LIMIT": "1000000 per minute",
        "CRM_ENQUIRY_MIN_FILL_SECONDS": "0",
    }


def migrate(env: dict[str, str]) -> None:
    """Create the schema once, before the workers start (they then skip auto-migration)."""
    code = "from crm import create_app; create_app()"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT, check=True)
    env["CRM_AUTO_MIGRATE"] = "false"


def form_fields(n: int) -> dict[str, str]:
    """A valid submission from a distinct patient."""
    return {
        "first_name": "Bench", "last_name": f"Patient{n}", "dob": "1980-01-01",
        "phone": f"(949) 555-{n % 10000:04d}" if n < 10000 else "", "email": f"patient{n}@bench.example",
        "zip_code": "92618", "preferred_contact": "call", "need_help_now": "no", "coverage_type": "ppo",
        "carrier": "Aetna", "member_id": f"M{n:08d}", "is_policyholder": "yes", "interest": "spravato",
        "message": "Looking for information.", "contact_consent": "y", "privacy_ack": "y",
    }


class CrmClient:
    """One virtual patient browser: a cookie, a CSRF token and pre-fetched form tokens."""

    def __init__(self, port: int, count: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.cookie = ""
        self.csrf = ""
        self.form_tokens = [self._load_form() for _ in range(count)]
        self.conn.close()  # the timed phase starts on a fresh connection

    def _load_form(self) -> str:
        self.conn.request("GET", "/", headers={"Cookie": self.cookie} if self.cookie else {})
        response = self.conn.getresponse()
        body = response.read().decode()
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        tokens = dict(TOKEN.findall(body))
        self.csrf = tokens.get("csrf_token", self.csrf)
        return tokens["form_token"]

    def send(self, n: int) -> int:
        fields = {**form_fields(n), "csrf_token": self.csrf, "form_token": self.form_tokens.pop()}
        self.conn.request("POST", "/", body=urlencode(fields), headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie})
        response = self.conn.getresponse()
        response.read()
        self.last_headers = response.headers
        return response.status


class BareClient:
    """One connection posting the same form body to the bare endpoint."""

    def __init__(self, port: int, _count: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def send(self, n: int) -> int:
        self.conn.request("POST", "/insert", body=urlencode(form_fields(n)),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = self.conn.getresponse()
        response.read()
        return response.status


def drive(client_type: type, port: int, total: int, connections: int) -> dict:
    """Send ``total`` POSTs over ``connections`` threads; return rate, latencies and acks."""
    per_client = total // connections
    clients = [client_type(port, per_client) for _ in range(connections)]
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def work(index: int, client) -> None:
        mine, codes = [], []
        for i in range(per_client):
            began = time.perf_counter()
            try:
                codes.append(client.send(index * per_client + i))
            except OSError:
                codes.append(0)
                client.conn.close()
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)
            statuses.extend(codes)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    quantiles = statistics.quantiles(latencies, n=100)
    return {"rate": len(latencies) / elapsed, "p50": quantiles[49] * 1000, "p99": quantiles[98] * 1000,
            "acks": statuses.count(303), "other": len(statuses) - statuses.count(303)}


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608


def report(name: str, result: dict, stored: int) -> None:
    print(f"{name:>22}: {result['rate']:8.1f} req/s   p50 {result['p50']:6.1f} ms   p99 {result['p99']:6.1f} ms"
          f"   303 acks {result['acks']}   other {result['other']}   stored {stored}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = crm_env(workdir)
        migrate(env)
        bare_env = {"BARE_DATABASE_URL": f"sqlite:///{workdir / 'bare.sqlite3'}"}
        subprocess.run([sys.executable, "-c", "from bare_app import create_app; create_app()"],
                       env={**os.environ, **bare_env}, cwd=ROOT / "benchmarks", check=True)
        crm_port, bare_port = free_port(), free_port()
        servers = [start("crm:create_app()", env, crm_port, ROOT, args.worker_class),
                   start("bare_app:create_app()", bare_env, bare_port, ROOT / "benchmarks", args.worker_class)]
        try:
            wait_for(crm_port, "/health")
            wait_for(bare_port, "/")
            bare = drive(BareClient, bare_port, args.requests, args.connections)
            crm = drive(CrmClient, crm_port, args.requests, args.connections)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
        print(f"{args.requests} POSTs over {args.connections} connections, gunicorn 2 {args.worker_class} workers")
        report("bare Flask insert", bare, count_rows(workdir / "bare.sqlite3", "row"))
        report("full enquiry (CRM)", crm, count_rows(workdir / "crm.sqlite3", "enquiries"))
        ratio = crm["rate"] / bare["rate"]
        print(f"ratio CRM/bare: {ratio:.2f}x (target >= 0.5x); CRM p99 {crm['p99']:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
