"""`flask leads import` against `flask seed-demo` in the same run, and the duplicate-match lookup as leads grow.

For each backend, two databases. In the first, ``seed-demo`` writes N encrypted leads (the
baseline) and ``leads import`` imports a CSV of N other people (the same kind of writes plus
validation, fingerprinting, matching and the do-not-contact check), each in its own child
process whose peak RSS is read with ``resource.getrusage(RUSAGE_CHILDREN)``.

In the second, the match lookup (blind-index candidates for a phone, e-mail and last name +
date of birth, then decrypt and compare: what the new-lead screen does per person, through
:func:`crm.operations.intake.possible_matches` itself) is timed at 10,000 leads and again
after growing the table to ``--grow-to`` leads. Those leads are realistic people (unique
phones and e-mails, thousands of surnames, each lead with its own data key and encrypted
fields, blind indexes computed with the real keys), bulk-inserted with Core so a million
take minutes, not hours. (Demo leads share 30,000 phone numbers between them, so at a
million every lookup would rightly return dozens of leads: a measure of the data, not the
lookup.)

    .venv/bin/python benchmarks/import_bench.py                                   # N = 100,000, both backends
    .venv/bin/python benchmarks/import_bench.py --rows 20000 --grow-to 200000 --backends sqlite    # quick

Targets: import at least 0.3x the seed-demo rate; at most 300 MB peak RSS; the match lookup at
the largest size no slower than 1.5x at 10,000.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workspace_bench import fresh_database  # noqa: E402  (this folder is on the path when run)

from crm import create_app, crypto  # noqa: E402
from crm.models import (  # noqa: E402
    Lead,
    LeadKey,
    db,
    email_index,
    encrypted_columns,
    indexer,
    name_dob_index,
    new_lead_key,
    phone_index,
    utcnow,
)
from crm.operations.intake import Identity, possible_matches  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_import"
PG_LOOKUP_DATABASE = "bench_import_lookup"
SMALL, SEED_BATCH = 10_000, 5_000
AREA_CODES = ("213", "310", "323", "408", "415", "510", "559", "562", "619", "626", "650", "657", "661", "714",
              "760", "805", "818", "831", "858", "909", "916", "925", "949", "951")
SYLLABLES = ("an", "bel", "cor", "dan", "el", "fer", "gar", "hol", "is", "jon", "kar", "lo", "mar", "nel", "or",
             "pa", "quin", "ros", "san", "tor", "ul", "ven", "wil", "xa", "yor", "zan")
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
    parser.add_argument("--rows", type=int, default=100_000, help="leads seeded and rows imported (N; 0: skip)")
    parser.add_argument("--grow-to", type=int, default=1_000_000, help="time the match lookup at 10,000 leads "
                        "and at this many (0: skip)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--lookups", type=int, default=300)
    return parser.parse_args()


def drop_database(backend: str, pg_url: str, name: str) -> None:
    if backend == "postgresql":
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
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


def person(n: int) -> dict:
    """The n-th realistic person: a phone and e-mail of their own, one of 17,576 surnames, any birthday."""
    rng = random.Random(n)
    last = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()
    area, local = AREA_CODES[n % len(AREA_CODES)], 2_000_000 + n // len(AREA_CODES)
    return {"first_name": rng.choice(("Ana", "Ben", "Chi", "Dara", "Eli", "Fay", "Gus", "Hana")) + str(n % 89),
            "last_name": last, "dob": dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(24_000)),
            "phone": f"({area}) {local // 10_000:03d}-{local % 10_000:04d}", "e164": f"+1{area}{local:07d}",
            "email": f"{last.lower()}.{n}@example.net", "zip_code": f"9{rng.randrange(10_000):04d}"}


def lead_rows(n: int, now: dt.datetime) -> tuple[dict, dict]:
    """The ``leads`` and ``lead_keys`` rows of person ``n``: own data key, encrypted fields, real blind indexes."""
    who, lead_id = person(n), str(uuid.UUID(int=random.Random(-n).getrandbits(128), version=4))
    cipher, key_row = new_lead_key(lead_id)
    phone_bidx = indexer().compute("leads|phone", who["e164"])  # phone_index without re-parsing a known number
    if n % 1000 == 0:
        assert phone_bidx == phone_index(who["phone"])
    created = now - dt.timedelta(minutes=n)
    lead = {"id": lead_id, "reference": f"{n:08d}"[:4] + "-" + f"{n:08d}"[4:], "stage": "new", "source": "web_form",
            "created_at": created, "updated_at": created, "stage_changed_at": created,
            "phone_bidx": phone_bidx, "email_bidx": email_index(who["email"]),
            "name_dob_bidx": name_dob_index(who["last_name"], who["dob"]),
            **encrypted_columns(Lead, lead_id, cipher, **{k: who[k] for k in (
                "first_name", "last_name", "dob", "phone", "email", "zip_code")})}
    return lead, {**key_row, "wrapped_at": created}


_APP = None  # the app the seeding workers build rows with (inherited when they fork)


def _build(span: tuple[int, int]) -> list[tuple[dict, dict]]:
    """Rows of people ``span[0]..span[1]-1``, built in a worker process."""
    with _APP.app_context():
        now = utcnow()
        return [lead_rows(n, now) for n in range(*span)]


def seed_people(apps: dict[str, Any], size: int) -> None:
    """Bulk-insert ``size`` people with Core into the big database, the first 10,000 into the small one too.

    Two worker processes build and encrypt the rows while this one inserts them, a batch per transaction.
    """
    global _APP
    _APP = apps["big"]
    spans = [(first, min(first + SEED_BATCH, size)) for first in range(0, size, SEED_BATCH)]
    conns = {}
    for name, app in apps.items():
        with app.app_context():
            conns[name] = db.engine.connect()
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        for (first, stop), rows in zip(spans, pool.imap(_build, spans), strict=True):
            for name in ("small", "big") if first < SMALL else ("big",):
                conns[name].execute(Lead.__table__.insert(), [lead for lead, _key in rows])
                conns[name].execute(LeadKey.__table__.insert(), [key for _lead, key in rows])
                conns[name].commit()
            if len(spans) > 20 and (first // SEED_BATCH) % (len(spans) // 10) == 0:
                print(f"  seeded {stop:,} leads ({stop / (time.perf_counter() - started):,.0f}/s)", flush=True)
    for conn in conns.values():
        conn.close()


def identities(size: int, count: int, seed: int) -> list[Identity]:
    """Stored people as a coordinator types them: the phone in another format, the e-mail and surname in capitals."""
    rng = random.Random(seed)
    people = [person(rng.randrange(size)) for _ in range(count)]
    return [Identity(p["last_name"].upper(), p["dob"], f"+1 {p['e164'][2:5]}.{p['e164'][5:8]}.{p['e164'][8:]}",
                     p["email"].upper()) for p in people]


def lookup_samples(apps: dict[str, Any], people: dict[str, list[Identity]]) -> dict[str, list[float]]:
    """Milliseconds of each match lookup (the real code path), alternating between the databases lookup by lookup."""
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for number in range(len(people["small"])):
        for name, app in apps.items():
            who = people[name][number]
            with app.app_context():
                started = time.perf_counter()
                found = possible_matches(who)
                elapsed = (time.perf_counter() - started) * 1000
                assert 1 <= len(found) <= 3, "a stored person must match (a namesake born the same day may too)"
                db.session.rollback()
            if number >= 10:  # the first ones warm the caches
                samples[name].append(elapsed)
    return samples


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95."""
    samples = sorted(samples)
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def lookup_growth(backend: str, workdir: Path, args: argparse.Namespace) -> None:
    """The match lookup at 10,000 realistic leads and at ``--grow-to``, measured in alternating rounds.

    Two databases of the same people (the small one holds the first 10,000), so both sizes
    are timed under the same load from whatever else the machine is doing.
    """
    ring, apps = crypto.Keyring.generate().to_json(), {}
    for name in ("small", "big"):
        url = fresh_database(backend, workdir, args.pg_url, f"{PG_LOOKUP_DATABASE}_{name}")
        apps[name] = create_app({"DATABASE_URL": url, "KEYRING": ring, "AUTO_MIGRATE": False,
                                 "SECRET_KEY": "bench-" + "k" * 40 + uuid.uuid4().hex},
                                instance_path=str(workdir / f"lookup_{name}"))
    try:
        for app in apps.values():
            with app.app_context():
                db.create_all()
        started = time.perf_counter()
        seed_people(apps, args.grow_to)
        print(f"[{backend}] seeded {args.grow_to:,} realistic leads in {time.perf_counter() - started:.0f} s")
        for app in apps.values():
            with app.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"))
        samples = lookup_samples(apps, {"small": identities(SMALL, args.lookups + 10, 11),
                                        "big": identities(args.grow_to, args.lookups + 10, 12)})
        small, large = percentiles(samples["small"]), percentiles(samples["big"])
        growth = large[0] / small[0]
        print(f"[{backend}] match lookup at {SMALL:,} leads: p50 {small[0]:.2f} ms, p95 {small[1]:.2f} ms")
        print(f"[{backend}] match lookup at {args.grow_to:,} leads: p50 {large[0]:.2f} ms, p95 {large[1]:.2f} ms; "
              f"{growth:.2f}x the p50 at {SMALL:,} (target <= {TARGET_LOOKUP}x: "
              f"{'met' if growth <= TARGET_LOOKUP else 'MISSED'})")
    finally:
        for name, app in apps.items():
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
            drop_database(backend, args.pg_url, f"{PG_LOOKUP_DATABASE}_{name}")


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.rows:
            import_against_seed(backend, workdir, args)
        if args.grow_to:
            lookup_growth(backend, workdir, args)


def import_against_seed(backend: str, workdir: Path, args: argparse.Namespace) -> None:
    """``seed-demo`` and ``leads import`` of N rows each into one database, each in a measured child process."""
    url = fresh_database(backend, workdir, args.pg_url, PG_DATABASE)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRM_")}, "CRM_DATABASE_URL": url,
           "CRM_INSTANCE_PATH": str(workdir / "instance"), "CRM_MODE": "development"}
    try:
        measured(env, "db", "upgrade")
        measured(env, "seed-demo", "--leads", str(SMALL), "--seed", "1", "--batch-size", "5000")
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
    finally:
        drop_database(backend, args.pg_url, PG_DATABASE)


def main() -> None:
    args = parse_args()
    for backend in args.backends.split(","):
        run_backend(backend, args)


if __name__ == "__main__":
    main()
