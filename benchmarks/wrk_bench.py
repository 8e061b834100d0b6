"""Benchmark: the public intake against a bare insert with wrk, on SQLite and PostgreSQL, 2 and 4 workers.

Run: ``.venv/bin/python benchmarks/wrk_bench.py [--db sqlite|postgresql|both] [--workers 2,4]
[--seconds 5] [--rounds 3] [--connections 16] [--leads 0] [--scale SMALL,LARGE] [--pg URL]
[--limits URL]``.

wrk (``apt-get install wrk``) is a C client: it takes a sliver of the CPU the servers share,
where a Python client takes as much as a worker. Each server is gunicorn with ``--workers``
sync workers (gunicorn's defaults for both: the project's ``gunicorn.conf.py`` is not read);
the CRM runs with CSRF on, its rate limit raised (the limiter still runs) and no minimum
fill time. Every CRM request carries a distinct patient and its own single-use
form token (minted with the run's secret key, as the form would); the session cookie and CSRF
token come from one real GET; the rate limiter counts in Redis (``--limits``), shared by the
workers as a clinic's are once it runs more than one (in memory, each worker would count
alone). The bare server (``bare_app.py``) stores the posted body as one row with the same
durability. Rounds alternate between the two servers, so a slow spell of
this shared machine hits both; each line prints both rates and their ratio, and the summary
pools the rounds. ``--leads N`` seeds N demo leads (without form digests, analysed) first, to
measure intake on a large database; ``--scale 10000,1000000`` instead serves two CRMs, on
databases of SMALL and LARGE demo leads, and alternates rounds between them (intake at
scale as a same-run ratio). Stored rows are counted after the run.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from enquiry_bench import ROOT, crm_env, form_fields, free_port, wait_for
from sqlalchemy import create_engine, text

LUA = Path(__file__).with_name("wrk_intake.lua")
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
LATENCY = re.compile(r"Latency\s+([\d.]+)(us|ms|s)")
BAD = re.compile(r"Non-2xx or 3xx responses: (\d+)")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def gunicorn(app: str, env: dict[str, str], port: int, app_dir: Path, workers: int) -> subprocess.Popen:
    """Serve ``app`` from ``app_dir`` with gunicorn's defaults (sync workers) and ``workers`` of them.

    Started in this directory, where no ``gunicorn.conf.py`` is: the project's own (threaded
    workers, keep-alive) would otherwise apply to the CRM alone, from the project's root.
    """
    command = [sys.executable, "-m", "gunicorn", "--chdir", str(app_dir), "--workers", str(workers),
               "--bind", f"127.0.0.1:{port}", "--log-level", "warning", app]
    return subprocess.Popen(command, env={**os.environ, **env}, cwd=Path(__file__).parent, stderr=subprocess.DEVNULL)


def databases(kind: str, workdir: Path, pg: str) -> tuple[str, str, list[str]]:
    """URLs for the CRM and the bare server (a fresh file each, or a fresh schema each), and schemas to drop."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'crm.sqlite3'}", f"sqlite:///{workdir / 'bare.sqlite3'}", []
    schemas = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    admin(pg, *(f'CREATE SCHEMA "{schema}"' for schema in schemas))
    urls = [f"{pg}?options=-csearch_path%3D{schema}" for schema in schemas]
    return urls[0], urls[1], schemas


def admin(pg: str, *statements: str) -> None:
    engine = create_engine(pg, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def count(url: str, table: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608 - fixed names
    engine.dispose()
    return found


def prepare_crm(env: dict[str, str], leads: int) -> None:
    """Migrate, optionally seed demo leads and analyse, before the workers start."""
    run = {**os.environ, **env}
    subprocess.run([sys.executable, "-c", "from crm import create_app; create_app()"], env=run, cwd=ROOT, check=True)
    if leads:
        subprocess.run([sys.executable, "-m", "flask", "--app", "crm", "seed-demo", "--leads", str(leads),
                        "--batch-size", "10000"], env=run, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        code = ("from crm import create_app; from crm.models import db; app = create_app()\n"
                "with app.app_context(), db.engine.connect() as c:\n"  # PostgreSQL: this schema's tables only
                "    names = ', '.join(t.name for t in db.metadata.sorted_tables)\n"
                "    tables = '' if c.dialect.name == 'sqlite' else names\n"
                "    c.exec_driver_sql(f'ANALYZE {tables}'); c.commit()")
        subprocess.run([sys.executable, "-c", code], env=run, cwd=ROOT, check=True)
    env["CRM_AUTO_MIGRATE"] = "false"


def session_and_csrf(port: int) -> tuple[str, str]:
    """One real form load: the session cookie and the CSRF token bound to it."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return (response.getheader("Set-Cookie") or "").split(";", 1)[0], CSRF.search(body)[1]


def crm_bodies(path: Path, secret: str, csrf: str, first: int, total: int) -> None:
    """Write ``total`` distinct patients' submissions, each with a fresh form token."""
    from itsdangerous import URLSafeTimedSerializer

    sys.path.insert(0, str(ROOT))
    from crm.public import TOKEN_SALT

    signer = URLSafeTimedSerializer(secret, salt=TOKEN_SALT)
    with path.open("w") as out:
        for n in range(first, first + total):
            fields = {**form_fields(n), "phone": f"(949) 555-{n % 10000:04d}", "email": f"p{n}@bench.example",
                      "csrf_token": csrf, "form_token": signer.dumps(secrets.token_urlsafe(16))}
            out.write(urlencode(fields) + "\n")


def wrk(port: int, target: str, bodies: Path, cookie: str, seconds: float, connections: int) -> dict:
    """One timed wrk run; rate, mean latency and non-3xx answers."""
    threads = 2
    env = {**os.environ, "BODIES": str(bodies), "COOKIE": cookie, "TARGET": target, "THREADS": str(threads)}
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
               "-s", str(LUA), f"http://127.0.0.1:{port}{target}"]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    value, unit = LATENCY.search(output).groups()
    latency_ms = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    bad = BAD.search(output)
    return {"rate": float(RATE.search(output)[1]), "latency_ms": latency_ms, "bad": int(bad[1]) if bad else 0}


@dataclass
class Crm:
    """One CRM server under test: its port, environment, database and session."""

    port: int
    env: dict[str, str]
    url: str
    schemas: list[str]
    server: subprocess.Popen
    leads: int
    cookie: str = ""
    csrf: str = ""


def start_crm(kind: str, workdir: Path, leads: int, workers: int, args: argparse.Namespace) -> Crm:
    """Migrate (and seed) a fresh database, then serve the CRM on it."""
    workdir.mkdir()
    url, _bare, schemas = databases(kind, workdir, args.pg)
    env = {**crm_env(workdir), "CRM_DATABASE_URL": url, "CRM_RATELIMIT_STORAGE_URI": args.limits}
    prepare_crm(env, leads)
    port = free_port()
    return Crm(port, env, url, schemas, gunicorn("crm:create_app()", env, port, ROOT, workers), leads)


def stop(crm: Crm, args: argparse.Namespace) -> int:
    """Stop the server, count the enquiries it stored and drop its schema."""
    crm.server.terminate()
    crm.server.wait(timeout=10)
    stored = count(crm.url, "enquiries") - crm.leads
    for schema in crm.schemas:
        admin(args.pg, f'DROP SCHEMA "{schema}" CASCADE')
    return stored


def intake_round(crm: Crm, workdir: Path, number: int, seconds: float, args: argparse.Namespace) -> dict:
    """One wrk run of distinct patients' enquiries against ``crm``."""
    per_round = int(args.capacity * args.seconds)
    bodies = workdir / f"crm{crm.port}-{number}.txt"
    crm_bodies(bodies, crm.env["CRM_SECRET_KEY"], crm.csrf, (number + 1) * per_round, per_round)
    return wrk(crm.port, "/", bodies, crm.cookie, seconds, args.connections)


def alternate(rounds: int, seconds: float, runs: dict[str, Any]) -> dict[str, list[dict]]:
    """Warm up, then ``rounds`` rounds of every run in turn (a slow spell of the machine hits all)."""
    results: dict[str, list[dict]] = {name: [] for name in runs}
    for number in range(-1, rounds):  # round -1 warms the servers up and is not reported
        got = {name: run(number, 2 if number < 0 else seconds) for name, run in runs.items()}
        if number < 0:
            continue
        for name, result in got.items():
            results[name].append(result)
        first, second = list(got)
        print(f"  round {number + 1}: {first} {got[first]['rate']:7.1f} req/s, {second} {got[second]['rate']:7.1f} "
              f"req/s ({got[second]['latency_ms']:.0f} ms mean) = {got[second]['rate'] / got[first]['rate']:.2f}x",
              flush=True)
    return results


def ratios(results: dict[str, list[dict]]) -> dict:
    """Mean rates, the pooled ratio of the second run to the first and the median per-round ratio."""
    (first, a), (second, b) = results.items()
    per_round = [y["rate"] / x["rate"] for x, y in zip(a, b, strict=True)]
    return {first: statistics.mean(r["rate"] for r in a), second: statistics.mean(r["rate"] for r in b),
            "pooled": sum(r["rate"] for r in b) / sum(r["rate"] for r in a), "median": statistics.median(per_round),
            "bad": sum(r["bad"] for r in b)}


def bench(kind: str, workers: int, args: argparse.Namespace) -> dict:
    """Alternating rounds of the bare insert and the intake on one database kind with ``workers`` workers."""
    print(f"{kind}, {workers} workers, {args.leads} demo leads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        crm = start_crm(kind, workdir / "crm", args.leads, workers, args)
        _url, bare_url, bare_schemas = databases(kind, workdir, args.pg)
        bare_env = {"BARE_DATABASE_URL": bare_url}
        subprocess.run([sys.executable, "-c", "from bare_app import create_app; create_app()"],
                       env={**os.environ, **bare_env}, cwd=ROOT / "benchmarks", check=True)
        bare_port = free_port()
        bare_server = gunicorn("bare_app:create_app()", bare_env, bare_port, ROOT / "benchmarks", workers)
        try:
            wait_for(crm.port, "/health")
            wait_for(bare_port, "/")
            crm.cookie, crm.csrf = session_and_csrf(crm.port)
            bare_bodies = workdir / "bare.txt"
            bare_bodies.write_text("".join(urlencode(form_fields(n)) + "\n" for n in range(1000)))
            results = alternate(args.rounds, args.seconds, {
                "bare": lambda n, sec: wrk(bare_port, "/insert", bare_bodies, "", sec, args.connections),
                "intake": lambda n, sec: intake_round(crm, workdir, n, sec, args)})
        finally:
            bare_server.terminate()
            bare_server.wait(timeout=10)
            stored = stop(crm, args)
            for schema in bare_schemas:
                admin(args.pg, f'DROP SCHEMA "{schema}" CASCADE')
    return {"kind": kind, "workers": workers, **ratios(results), "stored": stored}


def scale(kind: str, workers: int, small: int, large: int, args: argparse.Namespace) -> dict:
    """Alternating rounds of intake on a database of ``small`` leads and one of ``large`` leads."""
    print(f"{kind}, {workers} workers, intake at {small} against {large} demo leads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        crms = [start_crm(kind, workdir / name, leads, workers, args)
                for name, leads in (("small", small), ("large", large))]
        try:
            for crm in crms:
                wait_for(crm.port, "/health")
                crm.cookie, crm.csrf = session_and_csrf(crm.port)
            results = alternate(args.rounds, args.seconds, {
                f"at {small}": lambda n, sec: intake_round(crms[0], workdir, n, sec, args),
                f"at {large}": lambda n, sec: intake_round(crms[1], workdir, n, sec, args)})
        finally:
            stored = [stop(crm, args) for crm in crms]
    return {"kind": kind, "workers": workers, **ratios(results), "stored": sum(stored)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--workers", default="2,4")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--leads", type=int, default=0, help="demo leads seeded (and analysed) before the run")
    parser.add_argument("--scale", help="SMALL,LARGE: intake on SMALL demo leads against intake on LARGE")
    parser.add_argument("--capacity", type=float, default=1500, help="distinct forms per second of a round")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--limits", default="redis://127.0.0.1:6379/15",
                        help="the rate limiter's storage: shared by the workers, as a scaled-out clinic runs it")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    workers = [int(w) for w in args.workers.split(",")]
    if args.scale:
        small, large = (int(n) for n in args.scale.split(","))
        summary = [scale(kind, w, small, large, args) for kind in kinds for w in workers]
        label = f"intake at {large} leads against intake at {small} (target >= 0.9x)"
    else:
        summary = [bench(kind, w, args) for kind in kinds for w in workers]
        label = "intake against the bare insert (targets: PostgreSQL >= 0.35x at 2 workers, SQLite >= 0.4x)"
    print(f"\nwrk, {args.connections} connections, {args.rounds} alternating rounds of {args.seconds:g} s; "
          f"same-run ratios (the machine is shared); {label}")
    for row in summary:
        first, second = [key for key in row if key not in ("kind", "workers", "pooled", "median", "bad", "stored")]
        print(f"{row['kind']:10} {row['workers']} workers: {first} {row[first]:7.1f} req/s, {second} "
              f"{row[second]:6.1f} req/s, ratio {row['pooled']:.2f}x pooled ({row['median']:.2f}x median of rounds); "
              f"stored {row['stored']} enquiries, {row['bad']} answers other than 2xx/3xx")


if __name__ == "__main__":
    main()
