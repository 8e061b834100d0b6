"""Coordinator workspace at scale: home, first list page, a filtered list and a blind-index search.

Seeds 10,000 / 100,000 / 1,000,000 demo leads with ``flask --app crm seed-demo`` (growing one
database per backend step by step), then times each page through the Flask test client as a
signed-in coordinator, on SQLite and on PostgreSQL, and prints p50 and p95 per size.

    .venv/bin/python benchmarks/workspace_bench.py                       # full run
    .venv/bin/python benchmarks/workspace_bench.py --sizes 10000 --backends sqlite   # quick

Before the first seed the benchmark adds its coordinator, three colleagues and two clinicians,
so demo leads are shared among four coordinators (the timed one holds a quarter of them, with
their callbacks) and scheduled and converted leads have appointments on the clinicians' books.

Targets: p95 at most 50 ms for list and search at 1,000,000 leads; search at
1,000,000 at most 1.5x its cost at 10,000; home and lead page at most 2x the list
page's, p50 and p95, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crm import create_app, crypto  # noqa: E402
from crm.models import Lead, Role, User, UserSession, db, utcnow  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_workspace"
PAGES = ("home", "list", "filtered", "search", "lead")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated lead counts, ascending")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_DEFAULT),
                        help="a PostgreSQL URL whose user may create the benchmark database")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--pg-database", default=PG_DATABASE,
                        help="the PostgreSQL database to (re)create, so parallel runs need not share one")
    return parser.parse_args()


# --- databases ---------------------------------------------------------------------------


def fresh_database(backend: str, workdir: Path, pg_url: str, name: str = PG_DATABASE) -> str:
    """An empty database URL for one backend (a file in ``workdir``, or database ``name``)."""
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'{name}.sqlite3'}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


def environment(url: str, instance: Path) -> dict[str, str]:
    """Environment for the app and the seed command: one database, one instance (keyring)."""
    return {**os.environ, "CRM_DATABASE_URL": url, "CRM_INSTANCE_PATH": str(instance), "CRM_MODE": "development"}


def seed(env: dict[str, str], count: int, seed_value: int) -> float:
    """Add ``count`` demo leads with ``flask seed-demo``; returns the seconds it took."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flask", "--app", "crm", "seed-demo", "--leads", str(count),
                    "--seed", str(seed_value), "--batch-size", "10000"],
                   env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


#: The benchmark's staff besides the timed coordinator: colleagues sharing the leads, clinicians booking visits.
STAFF = ((Role.COORDINATOR, "colleague-1"), (Role.COORDINATOR, "colleague-2"), (Role.COORDINATOR, "colleague-3"),
         (Role.CLINICIAN, "clinician-1"), (Role.CLINICIAN, "clinician-2"))


def add_staff(app: Any) -> None:
    """Create the timed coordinator and the other staff, before any lead is seeded."""
    with app.app_context():
        db.session.add(User(email="bench@clinic.test", role=Role.COORDINATOR, display_name="Bench"))
        db.session.add_all(User(email=f"bench-{name}@clinic.test", role=role, display_name=name.capitalize())
                           for role, name in STAFF)
        db.session.commit()
        db.engine.dispose()


def refresh_statistics(app: Any) -> None:
    """Refresh the planner's statistics (and PostgreSQL's visibility map) after a bulk load."""
    with app.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"))


# --- measuring ---------------------------------------------------------------------------


def sign_in(app: Any, role: Role = Role.COORDINATOR) -> Any:
    """A test client signed in as a (new or existing) benchmark user with ``role``."""
    token = crypto.random_token()
    email = "bench@clinic.test" if role == Role.COORDINATOR else f"bench-{role}@clinic.test"
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            user = User(email=email, role=role, display_name="Bench")
            db.session.add(user)
            db.session.flush()
        now = utcnow()
        db.session.add(UserSession(id=crypto.token_digest(token), user_id=user.id, created_at=now,
                                   last_seen_at=now, reauth_at=now, second_factor_at=now))
        db.session.commit()
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = token
        sess["_fresh"] = True
    return client


def sample_phones(app: Any, how_many: int) -> list[str]:
    """Phone numbers of random stored leads, in a different format than stored."""
    with app.app_context():
        total = db.session.scalar(select(func.count()).select_from(Lead))
        phones = []
        rng = random.Random(7)
        while len(phones) < how_many:
            query = select(Lead).order_by(Lead.created_at).offset(rng.randrange(total)).limit(1)
            lead = db.session.scalars(query).one()
            if lead.phone:
                digits = "".join(ch for ch in lead.phone if ch.isdigit())[-10:]
                phones.append(f"+1 {digits[:3]}.{digits[3:6]}.{digits[6:]}")
        db.session.rollback()
    return phones


def sample_leads(app: Any, how_many: int) -> list[str]:
    """Ids of random stored leads, for the lead page."""
    with app.app_context():
        total = db.session.scalar(select(func.count()).select_from(Lead))
        rng = random.Random(11)
        ids = [db.session.scalar(select(Lead.id).order_by(Lead.created_at).offset(rng.randrange(total)).limit(1))
               for _ in range(how_many)]
        db.session.rollback()
    return ids


def request(client: Any, page: str, phone: str, lead_id: str = "") -> int:
    """Make one request for ``page``; returns its status code."""
    if page == "lead":
        return client.get(f"/leads/{lead_id}").status_code
    if page == "home":
        return client.get("/leads/home").status_code
    if page == "list":
        return client.get("/leads/").status_code
    if page == "filtered":
        return client.get("/leads/?stage=contacting&source=web_form").status_code
    return client.post("/leads/search", data={"query": phone}).status_code


def time_pages(client: Any, phones: list[str], count: int, leads: list[str]) -> dict[str, list[float]]:
    """Wall-clock milliseconds of ``count`` requests per page after a short warm-up, the pages taken in turn.

    One request of each page per round, so whatever else the machine does at a moment falls on
    every page alike and the ratios between pages compare like with like.
    """
    expected = {page: 302 if page == "search" else 200 for page in PAGES}
    for i in range(5):
        for page in PAGES:
            assert request(client, page, phones[i % len(phones)], leads[i % len(leads)]) == expected[page], page
    samples: dict[str, list[float]] = {page: [] for page in PAGES}
    for i in range(count):
        for page in PAGES:
            started = time.perf_counter()
            status = request(client, page, phones[i % len(phones)], leads[i % len(leads)])
            samples[page].append((time.perf_counter() - started) * 1000)
            assert status == expected[page], (page, status)
    return samples


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of the samples."""
    return statistics.quantiles(samples, n=100, method="inclusive")[round(q * 100) - 1]


def run_backend(backend: str, sizes: list[int], args: argparse.Namespace) -> dict[int, dict[str, list[float]]]:
    """Grow one database through ``sizes`` and time every page at each size."""
    results: dict[int, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        workdir = Path(tmp)
        env = environment(fresh_database(backend, workdir, args.pg_url, args.pg_database), workdir / "instance")
        os.environ.update({k: env[k] for k in ("CRM_DATABASE_URL", "CRM_INSTANCE_PATH", "CRM_MODE")})
        add_staff(create_app({"WTF_CSRF_ENABLED": False}, instance_path=env["CRM_INSTANCE_PATH"]))
        seeded = 0
        for step, size in enumerate(sizes):
            seconds = seed(env, size - seeded, 1000 + step)
            seeded = size
            app = create_app({"WTF_CSRF_ENABLED": False}, instance_path=env["CRM_INSTANCE_PATH"])
            refresh_statistics(app)
            print(f"[{backend}] {size:>9,} leads seeded in {seconds:,.0f}s", flush=True)
            client, phones, leads = sign_in(app), sample_phones(app, 20), sample_leads(app, 20)
            results[size] = time_pages(client, phones, args.requests, leads)
            report_size(backend, size, results[size])
            with app.app_context():
                db.engine.dispose()
    return results


def report_size(backend: str, size: int, pages: dict[str, list[float]]) -> None:
    """Print p50 / p95 per page for one size, then home's against the list page's."""
    cells = "  ".join(f"{page} {percentile(s, .5):6.1f}/{percentile(s, .95):6.1f}" for page, s in pages.items())
    print(f"[{backend}] {size:>9,}  p50/p95 ms  {cells}", flush=True)
    print(f"[{backend}] {size:>9,}  {against_list(pages, 'home')}", flush=True)


def against_list(pages: dict[str, list[float]], page: str) -> str:
    """``page``'s p50 and p95 against the first list page's, from the same run, with the 2x verdict."""
    ratios = [percentile(pages[page], q) / percentile(pages["list"], q) for q in (.5, .95)]
    verdict = "ok" if max(ratios) <= 2 else "over"
    return f"{page} vs list: p50 {ratios[0]:.2f}x, p95 {ratios[1]:.2f}x (target <= 2x: {verdict})"


def summary(backend: str, results: dict[int, dict[str, list[float]]]) -> None:
    """Print the search cost ratio (largest vs smallest size) and p95 against the 50 ms target."""
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    ratio = statistics.median(results[large]["search"]) / statistics.median(results[small]["search"])
    print(f"[{backend}] search p50 at {large:,} vs {small:,}: {ratio:.2f}x (target <= 1.5x)")
    for page in ("home", "lead"):
        print(f"[{backend}] at {large:,}: {against_list(results[large], page)}")
    for page in ("list", "filtered", "search"):
        p95 = percentile(results[large][page], .95)
        verdict = "ok" if p95 <= 50 else "over"
        print(f"[{backend}] {page} p95 at {large:,}: {p95:.1f} ms (target <= 50 ms: {verdict})")


def main() -> None:
    args = parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    for backend in args.backends.split(","):
        summary(backend, run_backend(backend, sizes, args))


if __name__ == "__main__":
    main()
