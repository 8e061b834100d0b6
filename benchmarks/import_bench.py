"""`flask leads import` against `flask seed-demo` in the same run, and the duplicate-match lookup as leads grow.

For each backend: a fresh database is seeded with 10,000 demo leads, and the match lookup
(blind-index candidates for a phone, e-mail and last name + date of birth, then decrypt and
compare: what the new-lead screen and the import do per person) is timed. Then, each in its
own child process whose peak RSS is read with ``resource.getrusage(RUSAGE_CHILDREN)``:
``seed-demo`` writes N encrypted leads (the baseline), and ``leads import`` imports a CSV of N
other people into the same database (the same kind of writes plus validation, fingerprinting
and matching). The lookup is timed again at the size reached, and optionally after growing
the database to ``--grow-to`` leads.

    .venv/bin/python benchmarks/import_bench.py                                   # N = 100,000, both backends
    .venv/bin/python benchmarks/import_bench.py --rows 20000 --backends sqlite    # quick

Targets: import at least 0.3x the seed-demo rate; at most 300 MB peak RSS; the match lookup at
the largest size no slower than 1.5x at 10,000.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workspace_bench import fresh_database  # noqa: E402  (this folder is on the path when run)

from crm import create_app  # noqa: E402
from crm.models import Lead, db  # noqa: E402
from crm.operations.intake import Identity, possible_matches  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_import"
TARGET_RATIO, TARGET_RSS_MB, TARGET_LOOKUP = 0.3, 300, 1.5
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"seconds": time.perf_counter() - started, "code": done.returncode, "stdout": done.stdout[-2000:],
                  "stderr": done.stderr[-2000:], "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="leads seeded and rows imported (N)")
    parser.add_argument("--grow-to", type=int, default=0, help="then seed up to this many leads and time lookups")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--lookups", type=int, default=300)
    return parser.parse_args()


def drop_database(backend: str, pg_url: str) -> None:
    if backend == "postgresql":
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
        admin.dispose()


def measured(env: dict[str, str], *args: str) -> dict:
    """Run one ``flask --app crm`` command as the only child of a helper; its wall time and peak RSS."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "flask", "--app", "crm", *args]
    result = json.loads(subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout)
    if result["code"]:
        sys.exit(f"flask {' '.join(args)} failed:\n{result['stdout']}\n{result['stderr']}")
    return result


def write_csv(path: Path, rows: int, seed: int) -> None:
    """N people who are not among the demo leads (their own phone range), in mixed common formats."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["First Name", "Last Name", "DOB", "Phone", "Email", "ZIP", "Coverage", "Insurance Company",
                      "Member ID", "Referring Provider", "NPI"])
        for n in range(rows):
            dob = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20_000))
            phone = f"(213) {200 + n // 10_000:03d}-{n % 10_000:04d}"
            commercial = n % 2 == 0
            out.writerow([f"Import{n}", rng.choice(("Garcia", "Nguyen", "Smith", "Tran", "Lopez")) + str(n % 97),
                          dob.strftime("%m/%d/%Y" if n % 2 else "%Y-%m-%d"), phone, f"import.{n}@example.net",
                          "92618", "PPO" if commercial else "self pay", "Aetna" if commercial else "",
                          f"W{n:09d}" if commercial else "", "Dr Ames", "1245319599"])


def lookup_ms(env: dict[str, str], count: int) -> tuple[float, float, int]:
    """p50 and p95 (ms) of the match lookup for stored people's phone (another format), e-mail and name + DOB."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("CRM_")})
    app = create_app()
    with app.app_context():
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"))
        total = db.session.scalar(select(func.count()).select_from(Lead))
        rng, people = random.Random(11), []
        while len(people) < count:
            lead = db.session.scalars(select(Lead).offset(rng.randrange(total)).limit(1)).one()
            if lead.phone and lead.email:
                digits = "".join(ch for ch in lead.phone if ch.isdigit())[-10:]
                people.append(Identity(lead.last_name, lead.dob, f"+1 {digits[:3]}.{digits[3:6]}.{digits[6:]}",
                                       lead.email.upper()))
        db.session.rollback()
        for who in people[:10]:  # warm-up
            possible_matches(who)
        samples = []
        for who in people:
            started = time.perf_counter()
            found = possible_matches(who)
            samples.append((time.perf_counter() - started) * 1000)
            assert found, "a stored person must match"
            db.session.rollback()
        db.engine.dispose()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], total


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh_database(backend, workdir, args.pg_url, PG_DATABASE)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRM_")}, "CRM_DATABASE_URL": url,
               "CRM_INSTANCE_PATH": str(workdir / "instance"), "CRM_MODE": "development"}
        try:
            measured(env, "db", "upgrade")
            measured(env, "seed-demo", "--leads", "10000", "--seed", "1", "--batch-size", "5000")
            small = lookup_ms(env, args.lookups)
            print(f"[{backend}] match lookup at {small[2]:,} leads: p50 {small[0]:.2f} ms, p95 {small[1]:.2f} ms")
            write_csv(workdir / "import.csv", args.rows, seed=5)
            seeded = measured(env, "seed-demo", "--leads", str(args.rows), "--seed", "2", "--batch-size", "5000")
            imported = measured(env, "leads", "import", str(workdir / "import.csv"), "--source", "referral",
                                "--batch-size", "1000")
            summary = imported["stdout"].strip().splitlines()[-1] if imported["stdout"].strip() else "?"
            seed_rate, import_rate = args.rows / seeded["seconds"], args.rows / imported["seconds"]
            rss = imported["max_rss_kb"] / 1024
            print(f"[{backend}] seed-demo {args.rows:,} leads: {seeded['seconds']:.1f} s = {seed_rate:,.0f} leads/s, "
                  f"peak RSS {seeded['max_rss_kb'] / 1024:.0f} MB")
            print(f"[{backend}] leads import {args.rows:,} rows: {imported['seconds']:.1f} s = "
                  f"{import_rate:,.0f} rows/s, peak RSS {rss:.0f} MB ({summary})")
            ratio = import_rate / seed_rate
            print(f"[{backend}] import/seed rate {ratio:.2f}x (target >= {TARGET_RATIO}x: "
                  f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}); RSS target <= {TARGET_RSS_MB} MB: "
                  f"{'met' if rss <= TARGET_RSS_MB else 'MISSED'}")
            large = lookup_ms(env, args.lookups)
            if args.grow_to > large[2]:
                measured(env, "seed-demo", "--leads", str(args.grow_to - large[2]), "--seed", "3",
                         "--batch-size", "10000")
                large = lookup_ms(env, args.lookups)
            growth = large[0] / small[0]
            print(f"[{backend}] match lookup at {large[2]:,} leads: p50 {large[0]:.2f} ms, p95 {large[1]:.2f} ms; "
                  f"{growth:.2f}x the p50 at {small[2]:,} (target <= {TARGET_LOOKUP}x: "
                  f"{'met' if growth <= TARGET_LOOKUP else 'MISSED'})")
        finally:
            drop_database(backend, args.pg_url)


def main() -> None:
    args = parse_args()
    for backend in args.backends.split(","):
        run_backend(backend, args)


if __name__ == "__main__":
    main()
