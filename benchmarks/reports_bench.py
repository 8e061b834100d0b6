"""Reports and the lead list's count at scale: does the cost follow the date range, not the table?

Seeds, in one pass and with bulk Core inserts, two databases per backend: a *big* one with
``--size`` leads spread evenly over three years, and a *small* one holding only the leads of
the last 90 days — the very same rows. Every lead has a real wrapped data key and encrypted
name and phone; about 85% have an insurance (coverage type, payer code, verification and
prior-authorisation times); open leads of the last two weeks have a callback. Most referrals name
one of 40 referring practices (the per-practice table of the Sources report). Attempts and
timelines are not seeded (no report reads them: the lead row carries the first-attempt and
first-contact times and the attempt count).

Then, through the Flask test client, in alternating rounds after a warm-up:

* the whole Reports page for the last 90 days as a manager, on the big and on the small
  database — target: big p50 at most 2x small p50;
* the lead list (first page, newest first; and a filtered list) as a coordinator on the big
  database, with its total count and with the count switched off — target: at most 1.5x.

    .venv/bin/python benchmarks/reports_bench.py                                  # 1,000,000 leads
    .venv/bin/python benchmarks/reports_bench.py --size 200000 --backends sqlite  # quicker
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workspace_bench import PG_DEFAULT, fresh_database, percentile, refresh_statistics, sign_in  # noqa: E402

from crm import create_app, crypto, payers  # noqa: E402
from crm.leads import queries  # noqa: E402
from crm.models import (  # noqa: E402
    EXIT_REASONS,
    STEP_OF,
    Callback,
    Insurance,
    Lead,
    LeadKey,
    ReferringPractice,
    Role,
    Stage,
    User,
    db,
    encrypted_columns,
    keyring,
    new_lead_key,
    utcnow,
)
from crm.operations.practices import PURPOSE as practice_purpose  # noqa: E402
from crm.operations.practices import practice_key  # noqa: E402

SPAN_DAYS = 3 * 365
RECENT_DAYS = 90
BATCH = 5_000
PRACTICES = 40
STAGES = {Stage.NEW: 6, Stage.CONTACTING: 14, Stage.CONTACTED: 8, Stage.SCREENING: 5, Stage.INSURANCE_REVIEW: 5,
          Stage.ELIGIBLE: 4, Stage.SCHEDULED: 4, Stage.CONVERTED: 12, Stage.INELIGIBLE: 14, Stage.UNREACHABLE: 18,
          Stage.CLOSED: 10}
SOURCES = {"web_form": 55, "phone": 14, "referral": 15, "find_a_center": 6, "payer_directory": 4, "other": 6}
COVERAGE = {"ppo": 55, "hmo": 10, "epo": 5, "medicare": 9, "medi_cal": 5, "va_tricare": 5, "self_pay": 11}
CARRIERS = ("Aetna", "Cigna", "Blue Shield of California", "Anthem Blue Cross", "UnitedHealthcare", "Health Net")
REPORTS_URL = "/reports/?period=last_90"
LIST_URLS = {"list": "/leads/", "filtered list": "/leads/?stage=contacting&source=web_form"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="leads in the big database (3 years)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_DEFAULT),
                        help="a PostgreSQL URL whose user may create the benchmark databases")
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds (each times every page once)")
    parser.add_argument("--workdir", type=Path, help="keep the SQLite databases here (for EXPLAIN afterwards)")
    return parser.parse_args()


# --- databases -----------------------------------------------------------------------------


def make_app(url: str, keyring_json: str, instance: Path) -> Any:
    """An app on ``url`` sharing one keyring, with its schema created."""
    app = create_app({"DATABASE_URL": url, "KEYRING": keyring_json, "WTF_CSRF_ENABLED": False,
                      "SECRET_KEY": "bench-" + "k" * 40 + uuid.uuid4().hex, "AUTO_MIGRATE": False},
                     instance_path=str(instance))
    with app.app_context():
        db.create_all()
    return app


class Seeder:
    """Builds the rows of one lead at a time from one seeded generator."""

    def __init__(self, staff: list[str], practices: list[str], now: dt.datetime, seed: int = 17):
        self.rng = random.Random(seed)  # noqa: S311  (fake leads, not secrets)
        self.staff, self.practices, self.now = staff, practices, now

    def pick(self, weights: dict[Any, int]) -> Any:
        return self.rng.choices(tuple(weights), weights=tuple(weights.values()))[0]

    def lead(self, number: int, created: dt.datetime) -> dict[Any, list[dict[str, Any]]]:
        """The lead, its key, its insurance and an open callback where one is due."""
        rng, lead_id = self.rng, str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        stage = self.pick(STAGES)
        reached = STEP_OF.get(stage, rng.randint(0, 3))
        attempted = reached >= 1 or stage == Stage.UNREACHABLE or rng.random() < 0.5
        first_attempt = created + dt.timedelta(minutes=rng.expovariate(1 / 90)) if attempted else None
        contacted = reached >= 2
        cipher, key_row = new_lead_key(lead_id)
        assignee = rng.choice(self.staff) if stage != Stage.NEW or rng.random() < 0.3 else None
        lead = {
            "id": lead_id, "reference": f"{number // 10**4:04d}-{number % 10**4:04d}",
            "stage": stage, "stage_reason": rng.choice(EXIT_REASONS[stage]) if stage in EXIT_REASONS else None,
            "reached_step": reached, "source": self.pick(SOURCES), "urgent": rng.random() < 0.03,
            "assignee_id": assignee, "created_at": created, "updated_at": created, "stage_changed_at": created,
            "first_attempt_at": first_attempt,
            "first_contact_at": first_attempt + dt.timedelta(hours=rng.uniform(0, 30)) if contacted else None,
            "attempt_count": rng.randint(1, 6) if attempted else 0, "marketing_consent": False,
            "referring_practice_id": None,
            **encrypted_columns(Lead, lead_id, cipher, first_name=f"Bench{rng.randrange(10**6)}",
                                last_name=f"Lead{rng.randrange(10**6)}",
                                phone=f"(949) 555-{rng.randrange(10**4):04d}"),
        }
        if lead["source"] == "referral" and rng.random() < 0.875:
            lead["referring_practice_id"] = rng.choice(self.practices)
        rows: dict[Any, list[dict[str, Any]]] = {Lead.__table__: [lead], LeadKey.__table__: [key_row],
                                                 Insurance.__table__: [], Callback.__table__: []}
        coverage = self.pick(COVERAGE)
        if coverage != "self_pay":
            rows[Insurance.__table__].append(self.insurance(lead, coverage, cipher))
        if stage in (Stage.NEW, Stage.CONTACTING) and created > self.now - dt.timedelta(days=14):
            rows[Callback.__table__].append({
                "id": str(uuid.uuid4()), "lead_id": lead_id, "assignee_id": assignee,
                "due_at": self.now + dt.timedelta(hours=rng.uniform(-24, 48)), "created_at": created,
                "done_at": None})
        return rows

    def insurance(self, lead: dict[str, Any], coverage: str, cipher: crypto.FieldCipher) -> dict[str, Any]:
        """Coverage, the payer code, and verification / authorisation times for leads that got that far."""
        rng, created = self.rng, lead["created_at"]
        carrier = rng.choice(CARRIERS)
        verified = created + dt.timedelta(hours=rng.uniform(2, 96)) if lead["reached_step"] >= 3 else None
        pa = verified is not None and rng.random() < 0.6
        insurance_id = str(uuid.uuid4())
        return {
            "id": insurance_id, "lead_id": lead["id"], "created_at": created, "coverage_type": coverage,
            "vob_status": "verified" if verified else "not_started", "verified_at": verified,
            "payer": payers.classify(carrier),
            "pa_status": rng.choice(("approved", "approved", "denied")) if pa else None,
            "pa_submitted_at": verified if pa else None,
            "pa_decided_at": verified + dt.timedelta(days=rng.uniform(1, 15)) if pa else None,
            **encrypted_columns(Insurance, insurance_id, cipher, carrier=carrier,
                                member_id=f"W{rng.randrange(10**8, 10**9)}"),
        }


def practices_rows(now: dt.datetime) -> list[dict[str, Any]]:
    """40 referring practices with fixed ids (the same in both databases), names sealed as the app seals them."""
    rows = []
    for number in range(PRACTICES):
        row_id, name = str(uuid.UUID(int=10**6 + number, version=4)), f"Bench Referring Practice {number}"
        rows.append({"id": row_id, "practice_key": practice_key(name), "created_at": now,
                     "name_sealed": crypto.seal(keyring(), practice_purpose, row_id, name.encode())})
    return rows


def created_times(size: int, now: dt.datetime, seed: int = 5) -> Iterator[dt.datetime]:
    """``size`` creation times spread evenly over three years, oldest first (as a clinic's table fills)."""
    rng = random.Random(seed)  # noqa: S311
    offsets = sorted((rng.uniform(0, SPAN_DAYS) for _ in range(size)), reverse=True)
    for days in offsets:
        yield (now - dt.timedelta(days=days)).replace(microsecond=0)


def seed(apps: dict[str, Any], size: int) -> dict[str, int]:
    """Fill the big database with ``size`` leads and the small one with the last 90 days' of the same."""
    now = utcnow()
    staff = [str(uuid.UUID(int=n + 1, version=4)) for n in range(8)]
    users = [{"id": uid, "email": f"coordinator{n}@clinic.test", "display_name": f"Coordinator {n}",
              "role": Role.COORDINATOR} for n, uid in enumerate(staff)]
    counts = {"big": 0, "small": 0}
    recent = now - dt.timedelta(days=RECENT_DAYS)
    conns, practices = {}, []
    for name, app in apps.items():
        with app.app_context():
            practice_rows = practices_rows(now)
            practices = [row["id"] for row in practice_rows]
            conns[name] = db.engine.connect()
            conns[name].execute(User.__table__.insert(), users)
            conns[name].execute(ReferringPractice.__table__.insert(), practice_rows)
            conns[name].commit()
    seeder = Seeder(staff, practices, now)
    started = time.perf_counter()
    with apps["big"].app_context():
        batches: dict[str, dict[Any, list]] = {name: {} for name in apps}
        for number, created in enumerate(created_times(size, now), start=1):
            for table, rows in seeder.lead(number, created).items():
                for name in ("big", "small") if created >= recent else ("big",):
                    batches[name].setdefault(table, []).extend(rows)
                    counts[name] += table is Lead.__table__
            if number % BATCH == 0 or number == size:
                _flush(conns, batches)
                if number % (BATCH * 20) == 0:
                    print(f"  seeded {number:,}/{size:,} ({number / (time.perf_counter() - started):,.0f}/s)",
                          flush=True)
    for conn in conns.values():
        conn.close()
    return counts


TABLE_ORDER = (Lead.__table__, LeadKey.__table__, Insurance.__table__, Callback.__table__)


def _flush(conns: dict[str, Any], batches: dict[str, dict[Any, list]]) -> None:
    for name, conn in conns.items():
        for table in TABLE_ORDER:
            rows = batches[name].pop(table, [])
            if rows:
                conn.execute(table.insert(), rows)
        conn.commit()


# --- measuring -------------------------------------------------------------------------------


def timed(get: Callable[[], int]) -> float:
    """Milliseconds of one request (which must answer 200)."""
    started = time.perf_counter()
    status = get()
    elapsed = (time.perf_counter() - started) * 1000
    assert status == 200, status
    return elapsed


def without_count(get: Callable[[], int]) -> Callable[[], int]:
    """The same request with the list's total count switched off (the baseline)."""
    def run() -> int:
        original, queries.count_of = queries.count_of, lambda query: 0
        try:
            return get()
        finally:
            queries.count_of = original
    return run


def measure(apps: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Alternate every measured request per round, after two warm-up rounds."""
    managers = {name: sign_in(app, Role.MANAGER) for name, app in apps.items()}
    coordinator = sign_in(apps["big"])
    probes: dict[str, Callable[[], int]] = {
        "reports, big": lambda: managers["big"].get(REPORTS_URL).status_code,
        "reports, small": lambda: managers["small"].get(REPORTS_URL).status_code,
    }
    for label, url in LIST_URLS.items():
        probes[f"{label} with count"] = lambda url=url: coordinator.get(url).status_code
        probes[f"{label} without count"] = without_count(lambda url=url: coordinator.get(url).status_code)
    samples: dict[str, list[float]] = {label: [] for label in probes}
    for round_number in range(rounds + 2):
        for label, probe in probes.items():
            elapsed = timed(probe)
            if round_number >= 2:
                samples[label].append(elapsed)
    return samples


def report(backend: str, counts: dict[str, int], samples: dict[str, list[float]]) -> None:
    """Print p50 / p95 per request and the two target ratios."""
    print(f"[{backend}] big: {counts['big']:,} leads over 3 years; small: {counts['small']:,} leads (last 90 days)")
    for label, values in samples.items():
        p50, p95 = percentile(values, .5), percentile(values, .95)
        print(f"[{backend}] {label:<28} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms  (n={len(values)})")
    ratio = statistics.median(samples["reports, big"]) / statistics.median(samples["reports, small"])
    print(f"[{backend}] reports, last 90 days: big / small p50 = {ratio:.2f}x (target <= 2x)")
    for label in LIST_URLS:
        ratio = statistics.median(samples[f"{label} with count"]) / statistics.median(samples[f"{label} without count"])
        print(f"[{backend}] {label} at {counts['big']:,}: with / without count p50 = {ratio:.2f}x (target <= 1.5x)")


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="crm-reports-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ring = crypto.Keyring.generate().to_json()
        apps = {name: make_app(fresh_database(backend, workdir, args.pg_url, f"bench_reports_{name}"), ring,
                               workdir / f"instance-{name}") for name in ("big", "small")}
        started = time.perf_counter()
        counts = seed(apps, args.size)
        for app in apps.values():
            refresh_statistics(app)
        print(f"[{backend}] seeded in {time.perf_counter() - started:,.0f}s", flush=True)
        report(backend, counts, measure(apps, args.rounds))
        for app in apps.values():
            with app.app_context():
                db.engine.dispose()


def main() -> None:
    args = parse_args()
    for backend in args.backends.split(","):
        run_backend(backend, args)


if __name__ == "__main__":
    main()
