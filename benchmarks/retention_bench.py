"""`flask retention run` against `flask rotate-keys` over the same leads, with the workspace in use.

Seeds N demo leads, makes about 10% of them due for retention (last activity 800 days ago;
ids below ``1a``), and leaves exactly those leads wrapped under the old master key. Then, on
each backend, in the same run:

1. times the lead list and a blind-index search at rest (no background work);
2. runs ``rotate-keys`` (re-wraps exactly the due leads' data keys) in a child process;
3. runs ``retention run`` (shreds exactly those leads) in a child process;

timing the same list and search requests while each child runs, and reading each child's peak
RSS. Targets: retention at least 0.5x the rotation rate, at most 200 MB peak RSS, list and
search p95 during the retention run at most 2x their p95 at rest.

    .venv/bin/python benchmarks/retention_bench.py --leads 100000 [--backends sqlite,postgresql]

Seeding a million leads takes the better part of an hour per backend: ``--seed-cache DIR``
seeds once into ``DIR/<backend>-<leads>/`` (the keyring, the SQLite file, or a PostgreSQL
database ``bench_retention_seed_<leads>``) and copies that for every later run. A cache
whose seeding was stopped part way holds fewer leads; every figure uses the count found.
``--pause`` sets ``RETENTION_PAUSE_SECONDS`` for the retention run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, func, select, text, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workspace_bench import fresh_database, percentile, sign_in  # noqa: E402  (same directory)

from crm import create_app, crypto, database  # noqa: E402
from crm.models import Lead, LeadKey, db, utcnow  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_retention"
DUE_BELOW = "1a"  # ids under this are due: 1/16 + 10/256 of random UUIDs, about 10.2%
TARGET_RATIO, TARGET_RSS_MB, TARGET_P95_RATIO = 0.5, 200, 2.0
#: Runs one command as this interpreter's only child; prints its wall time and peak RSS when it ends.
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"seconds": time.perf_counter() - started, "code": done.returncode, "stdout": done.stdout,
                  "stderr": done.stderr[-2000:], "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--rest-requests", type=int, default=80, help="timed requests per page at rest")
    parser.add_argument("--batch-size", type=int, default=None, help="retention batch (default RETENTION_BATCH_SIZE)")
    parser.add_argument("--pause", type=float, default=None, help="RETENTION_PAUSE_SECONDS for the retention run")
    parser.add_argument("--seed-cache", type=Path, default=None, help="seed once into this folder, then copy")
    return parser.parse_args()


def flask(env: dict[str, str], *args: str) -> str:
    """Run one ``flask --app crm`` command to completion, failing loudly."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "crm", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return done.stdout


def start_measured(env: dict[str, str], *args: str) -> subprocess.Popen:
    """Start a ``flask`` command under :data:`MEASURE`; its figures come when it ends."""
    return subprocess.Popen([sys.executable, "-c", MEASURE, sys.executable, "-m", "flask", "--app", "crm", *args],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def finish_measured(child: subprocess.Popen, name: str) -> dict[str, Any]:
    out, _ = child.communicate()
    result = json.loads(out)
    if result["code"]:
        sys.exit(f"{name} failed:\n{result['stdout']}\n{result['stderr']}")
    return result


# --- preparing the run ---------------------------------------------------------------


def make_due(app: Any) -> tuple[int, int]:
    """Make the leads under :data:`DUE_BELOW` due for retention and every other lead recent; return (due, leads)."""
    now = utcnow()
    with app.app_context():
        db.session.execute(update(Lead).where(Lead.id >= DUE_BELOW).values(updated_at=now, stage_changed_at=now)
                           .execution_options(synchronize_session=False))
        db.session.execute(update(Lead).where(Lead.id < DUE_BELOW).values(
            updated_at=now - dt.timedelta(days=800), stage="contacting", stage_reason=None)
            .execution_options(synchronize_session=False))
        due = db.session.scalar(select(func.count()).select_from(Lead).where(Lead.id < DUE_BELOW))
        leads = db.session.scalar(select(func.count()).select_from(Lead))
        db.session.commit()
    return due, leads


def move_others_to_new_key(app: Any, batch: int = 20_000) -> None:
    """Re-wrap every lead key that is not due under the new primary, so rotate-keys walks only the due leads."""
    ring: crypto.Keyring = app.extensions["crm_keyring"]
    table = LeadKey.__table__
    statement = (update(table).where(table.c.lead_id == bindparam("b_id"))
                 .values(kid=bindparam("b_kid"), nonce=bindparam("b_nonce"), wrapped=bindparam("b_wrapped")))
    with app.app_context():
        after = DUE_BELOW  # no id equals it, so "> 1a" starts with the first lead that is not due
        while rows := db.session.execute(select(table.c.lead_id, table.c.kid, table.c.nonce, table.c.wrapped)
                                         .where(table.c.lead_id > after).order_by(table.c.lead_id)
                                         .limit(batch)).all():
            params = []
            for lead_id, kid, nonce, wrapped in rows:
                new_kid, new_nonce, new_wrapped = crypto.rewrap_data_key(ring, lead_id, kid, nonce, wrapped)
                params.append({"b_id": lead_id, "b_kid": new_kid, "b_nonce": new_nonce, "b_wrapped": new_wrapped})
            db.session.execute(statement, params)
            db.session.commit()
            after = rows[-1][0]


def analyze(app: Any) -> None:
    with app.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"))


# --- the workspace under load ----------------------------------------------------------


def kept_phones(app: Any, how_many: int) -> list[str]:
    """Phones of leads retention keeps, written differently from how they were stored."""
    with app.app_context():
        rng, phones = random.Random(7), []
        ids = list(db.session.scalars(select(Lead.id).where(Lead.id >= DUE_BELOW).limit(5000)))
        for lead_id in rng.sample(ids, min(len(ids), how_many * 3)):
            phone = db.session.get(Lead, lead_id).phone
            if phone and len(phones) < how_many:
                digits = "".join(ch for ch in phone if ch.isdigit())[-10:]
                phones.append(f"+1 {digits[:3]}.{digits[3:6]}.{digits[6:]}")
        db.session.rollback()
    return phones


class TurnWaits:
    """Where a request's time goes: the part spent waiting for SQLite's write turn (every transaction takes it).

    Wraps :meth:`crm.database.WriterQueue.acquire` in this process; each timed request's wait
    is kept beside its duration, per page.
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.samples: dict[str, list[float]] = {}
        original = database.WriterQueue.acquire

        def timed(queue: database.WriterQueue) -> bool:
            started = time.perf_counter()
            try:
                return original(queue)
            finally:
                self.total += time.perf_counter() - started

        database.WriterQueue.acquire = timed

    def collect(self, into: str) -> None:
        """Start keeping each request's wait under ``into`` ("list at rest", "search during retention"…)."""
        self.current = self.samples.setdefault(into, [])


WAITS = TurnWaits()


def one_request(client: Any, page: str, phone: str, phase: str) -> float:
    WAITS.collect(f"{page} {phase}")
    waited = WAITS.total
    started = time.perf_counter()
    if page == "list":
        status, expected = client.get("/leads/").status_code, 200
    else:
        status, expected = client.post("/leads/search", data={"query": phone}).status_code, 302
    assert status == expected, (page, status)
    WAITS.current.append((WAITS.total - waited) * 1000)
    return (time.perf_counter() - started) * 1000


def time_at_rest(client: Any, phones: list[str], count: int) -> dict[str, list[float]]:
    for i in range(5):
        one_request(client, "list", phones[0], "warm-up")
        one_request(client, "search", phones[i % len(phones)], "warm-up")
    return {page: [one_request(client, page, phones[i % len(phones)], "at rest") for i in range(count)]
            for page in ("list", "search")}


def time_while(child: subprocess.Popen, client: Any, phones: list[str], phase: str) -> dict[str, list[float]]:
    """List and search alternately, one after the other, until ``child`` ends."""
    samples: dict[str, list[float]] = {"list": [], "search": []}
    i = 0
    while child.poll() is None:
        page = "list" if i % 2 == 0 else "search"
        samples[page].append(one_request(client, page, phones[i % len(phones)], phase))
        i += 1
    return samples


def p95(samples: list[float]) -> float:
    return percentile(samples, .95) if len(samples) >= 2 else float("nan")


# --- one backend ---------------------------------------------------------------------


def bench_env(url: str, instance: Path) -> dict[str, str]:
    """The environment of every ``flask`` command: one database, one instance folder (the keyring)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CRM_")}, "CRM_DATABASE_URL": url,
            "CRM_INSTANCE_PATH": str(instance), "CRM_MODE": "development"}


def seed(env: dict[str, str], backend: str, leads: int) -> None:
    started = time.perf_counter()
    flask(env, "seed-demo", "--leads", str(leads), "--seed", "3", "--batch-size", "10000")
    print(f"[{backend}] seeded {leads:,} leads in {time.perf_counter() - started:,.0f} s", flush=True)


def from_cache(backend: str, args: argparse.Namespace, workdir: Path) -> str:
    """Copy the cached seeded database and keyring into ``workdir`` (seeding the cache first if empty)."""
    cache = args.seed_cache / f"{backend}-{args.leads}"
    name = f"{PG_DATABASE}_seed_{args.leads}"
    cached_url = (f"sqlite:///{cache / f'{PG_DATABASE}.sqlite3'}" if backend == "sqlite"
                  else args.pg_url.rsplit("/", 1)[0] + f"/{name}")
    if not (cache / "seeded").exists():
        cache.mkdir(parents=True, exist_ok=True)
        if backend == "postgresql":
            fresh_database(backend, cache, args.pg_url, name)
        seed(bench_env(cached_url, cache / "instance"), backend, args.leads)
        (cache / "seeded").touch()
    shutil.copytree(cache / "instance", workdir / "instance")
    (workdir / "instance" / "shred-ledger.jsonl").unlink(missing_ok=True)
    started = time.perf_counter()
    if backend == "sqlite":
        file = f"{PG_DATABASE}.sqlite3"
        source, target = sqlite3.connect(cache / file), sqlite3.connect(workdir / file)
        source.backup(target)
        source.close(), target.close()
        url = f"sqlite:///{workdir / file}"
    else:
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{PG_DATABASE}" TEMPLATE "{name}"'))
        admin.dispose()
        url = args.pg_url.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
    print(f"[{backend}] copied the seeded database from {cache} in {time.perf_counter() - started:,.0f} s", flush=True)
    return url


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="crm-retention-") as tmp:
        workdir = Path(tmp)
        if args.seed_cache is not None:
            url = from_cache(backend, args, workdir)
            env = bench_env(url, workdir / "instance")
        else:
            url = fresh_database(backend, workdir, args.pg_url, PG_DATABASE)
            env = bench_env(url, workdir / "instance")
            seed(env, backend, args.leads)
        os.environ.update({k: env[k] for k in ("CRM_DATABASE_URL", "CRM_INSTANCE_PATH", "CRM_MODE")})
        flask(env, "keys", "add")
        flask(env, "keys", "promote", "2")
        app = create_app({"WTF_CSRF_ENABLED": False}, instance_path=env["CRM_INSTANCE_PATH"])
        due, leads = make_due(app)
        move_others_to_new_key(app)
        analyze(app)
        client, phones = sign_in(app), kept_phones(app, 20)
        print(f"[{backend}] {due:,} of {leads:,} leads due ({due / leads:.1%}), all of them on key 1", flush=True)
        rest = time_at_rest(client, phones, args.rest_requests)
        rotation = start_measured(env, "rotate-keys", "--batch-size", "5000")
        during_rotation = time_while(rotation, client, phones, "during rotation")
        rotated = finish_measured(rotation, "rotate-keys")
        batch = ["--batch-size", str(args.batch_size)] if args.batch_size else []
        if args.pause is not None:
            env = {**env, "CRM_RETENTION_PAUSE_SECONDS": str(args.pause)}
        retention = start_measured(env, "retention", "run", *batch)
        during_retention = time_while(retention, client, phones, "during retention")
        shredded = finish_measured(retention, "retention run")
        with app.app_context():
            erased = db.session.scalar(select(func.count()).select_from(Lead).where(Lead.erased_at.is_not(None)))
            db.session.rollback()
            db.engine.dispose()
        report(backend, leads, due, erased, rest, rotated, during_rotation, shredded, during_retention)


def report(backend: str, leads: int, due: int, erased: int, rest: dict[str, list[float]], rotated: dict[str, Any],
           during_rotation: dict[str, list[float]], shredded: dict[str, Any],
           during_retention: dict[str, list[float]]) -> None:
    rotate_rate, shred_rate = due / rotated["seconds"], due / shredded["seconds"]
    inner_rotate = re.findall(r"\(([\d,]+)/s\)", rotated["stdout"])
    inner_shred = re.findall(r"\(([\d,]+)/s\)", shredded["stdout"])
    print(f"[{backend}] inside the commands (no process start): rotate-keys {inner_rotate[-1] if inner_rotate else '?'}"
          f" leads/s, retention {inner_shred[-1] if inner_shred else '?'} leads/s")
    ratio = shred_rate / rotate_rate
    rss = shredded["max_rss_kb"] / 1024
    print(f"[{backend}] rotate-keys: {due:,} lead keys in {rotated['seconds']:.1f} s = {rotate_rate:,.0f} leads/s, "
          f"peak RSS {rotated['max_rss_kb'] / 1024:.0f} MB")
    print(f"[{backend}] retention run: {erased:,} leads shredded in {shredded['seconds']:.1f} s = "
          f"{shred_rate:,.0f} leads/s, peak RSS {rss:.0f} MB")
    print(f"[{backend}] retention / rotation rate: {ratio:.2f}x (target >= {TARGET_RATIO}x: "
          f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}); peak RSS target <= {TARGET_RSS_MB} MB: "
          f"{'met' if rss <= TARGET_RSS_MB else 'MISSED'}")
    for page in ("list", "search"):
        at_rest, during, under_rotation = p95(rest[page]), p95(during_retention[page]), p95(during_rotation[page])
        ratio = during / at_rest
        print(f"[{backend}] {page} p95: at rest {at_rest:.1f} ms (n={len(rest[page])}), during retention "
              f"{during:.1f} ms (n={len(during_retention[page])}), during rotation {under_rotation:.1f} ms; "
              f"retention/rest {ratio:.2f}x (target <= {TARGET_P95_RATIO}x: "
              f"{'met' if ratio <= TARGET_P95_RATIO else 'MISSED'})", flush=True)
    for phase, waits in WAITS.samples.items():
        if waits and phase.split(" ", 1)[1] != "warm-up" and backend == "sqlite":
            print(f"[{backend}] {phase}: waiting for the write turn p50 {percentile(waits, .5):.1f} ms, "
                  f"p95 {p95(waits):.1f} ms")
    WAITS.samples.clear()
    assert erased == due, f"retention shredded {erased} of {due} due leads"


def main() -> None:
    args = parse_args()
    for backend in args.backends.split(","):
        run_backend(backend, args)


if __name__ == "__main__":
    main()
