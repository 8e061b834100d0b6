"""Fault-and-load harness: patients send enquiries while workers die and the database, Redis or the disk go away.

Run (as root, from the repository root): ``.venv/bin/python benchmarks/fault_harness.py
[--database postgresql|sqlite|both] [--scenarios burst,kill,db-stop,...] [--clients 200] [--seconds 60] [--short]``.

The stack is real and on loopback: the background worker (``flask jobs run``) and gunicorn
(``gunicorn.conf.py`` when present, 4 workers) serving
the CRM, a private PostgreSQL cluster (created with ``pg_createcluster`` on a free port, dropped at
the end) or an SQLite file on a small loop-mounted ext4 image, and a private Redis for the rate
limits (``CRM_PROXY_FIX=1``; each patient sends from its own loopback address in
``X-Forwarded-For``, and the enquiry limit is the production default). The shared PostgreSQL and
Redis that other work uses are never touched.

Each client behaves like a patient: it loads the form, waits the minimum fill time, sends a complete
enquiry carrying unique sentinels, and, when it gets no answer or an error page, sends the same form
once more, as a person pressing the button again would. Every client records what it was told.

Scenarios (each a burst; ``--short`` runs a small burst with one worker kill and one database stop):
``burst`` (no fault: the baseline), ``kill`` (``kill -9`` one worker every 10 s), ``db-stop``
(PostgreSQL stopped for 10 s mid-run), ``db-unwritable`` (SQLite's database and WAL made immutable for
10 s), ``redis-stop`` (Redis stopped for 10 s), ``disk-full`` (SQLite's file system filled to the brim
for 10 s).

After each scenario the harness checks, from the database and the clients' records: every acknowledged
enquiry (a 303 to the thank-you page) is stored exactly once with every field readable; every other one
at most once; no 500 and no traceback (a failure is the 503 page with the clinic's phone); no lead without
its enquiry and no enquiry without its audit event; ``audit verify`` passes; an enquiry is acknowledged
again within 5 s of the fault ending; no sentinel in any log line. It prints a table of figures and exits 1
when any promise broke.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HIDDEN_INPUT = re.compile(r"<input[^>]*>")
CLINIC_PHONE = "(949) 555-0100"
RECOVERY_LIMIT_SECONDS = 5.0
FAULT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0
PG_VERSION = os.environ.get("HARNESS_PG_VERSION") or sorted(os.listdir("/etc/postgresql"))[-1] \
    if os.path.isdir("/etc/postgresql") else ""


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command quietly; its output is returned, not printed."""
    return subprocess.run(command, check=check, capture_output=True, text=True, **kwargs)


# --- the pieces of the stack ----------------------------------------------------------------------


class PostgresCluster:
    """A private PostgreSQL cluster on a free port, so stopping it disturbs nothing else."""

    def __init__(self, workdir: Path):
        self.name = f"crmfaults{os.getpid()}"
        self.port = free_port()
        run("pg_createcluster", PG_VERSION, self.name, "-p", str(self.port), "--", "--auth=trust")
        hba = Path("/etc/postgresql") / PG_VERSION / self.name / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        self.start()
        run("runuser", "-u", "postgres", "--", "psql", "-p", str(self.port), "-qc", "CREATE DATABASE crm")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/crm"

    def start(self) -> None:
        run("pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, self.name, "start")

    def stop(self) -> None:
        run("pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, self.name, "stop", "-m", "immediate")

    def drop(self) -> None:
        run("pg_dropcluster", "--stop", PG_VERSION, self.name, check=False)


class SqliteVolume:
    """An SQLite database on its own small ext4 image, so it can be made unwritable or full."""

    def __init__(self, workdir: Path, size_mb: int = 512):
        self.image = workdir / "volume.ext4"
        self.mount = workdir / "volume"
        self.mount.mkdir()
        run("truncate", "-s", f"{size_mb}M", str(self.image))
        run("mkfs.ext4", "-q", str(self.image))
        run("mount", "-o", "loop", str(self.image), str(self.mount))
        self.database = self.mount / "crm.sqlite3"
        self.filler = self.mount / "filler"
        self.url = f"sqlite:///{self.database}"

    def _data_files(self) -> list[Path]:
        """The database and its WAL; the -shm file is memory-mapped and stays writable."""
        return [path for path in (self.database, self.database.with_name(self.database.name + "-wal"))
                if path.exists()]

    def make_unwritable(self) -> None:
        for path in self._data_files():
            run("chattr", "+i", str(path))

    def make_writable(self) -> None:
        for path in self._data_files():
            run("chattr", "-i", str(path), check=False)

    def fill(self) -> None:
        """Fill the file system to the brim (fallocate, then dd for the last blocks)."""
        free = shutil.disk_usage(self.mount).free
        run("fallocate", "-l", str(max(free - 4096, 0)), str(self.filler), check=False)
        run("dd", "if=/dev/zero", f"of={self.mount / 'filler2'}", "bs=4k", check=False)

    def free(self) -> None:
        for path in (self.filler, self.mount / "filler2"):
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        self.make_writable()
        if run("umount", str(self.mount), check=False).returncode:
            run("umount", "-l", str(self.mount), check=False)


class Redis:
    """A private Redis for the rate limits, stopped and started at will."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait()
            self.process = None


class Worker:
    """The background worker (``flask jobs run``): it shares the database and the faults with the web tier."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log_file = log.open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "crm", "jobs", "run"],
                                        env={**os.environ, **env}, cwd=ROOT, stdout=self.log_file,
                                        stderr=subprocess.STDOUT)

    def stop(self) -> int | None:
        """SIGTERM, as systemd sends it; the exit status (None when it had to be killed)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            self.log_file.close()


class Server:
    """gunicorn serving the CRM, its log captured to a file the harness reads afterwards."""

    def __init__(self, env: dict[str, str], workdir: Path, workers: int):
        self.env = env
        self.port = free_port()
        self.log = workdir / "gunicorn.log"
        config = ["-c", str(ROOT / "gunicorn.conf.py")] if (ROOT / "gunicorn.conf.py").exists() else []
        command = [sys.executable, "-m", "gunicorn", *config, "--workers", str(workers), "--bind",
                   f"127.0.0.1:{self.port}", "--timeout", "30", "--graceful-timeout", "5", "crm:create_app()"]
        self.log_file = self.log.open("a")
        self.process = subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        for _ in range(300):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"gunicorn did not start; see {self.log}")

    def worker_pids(self) -> list[int]:
        out = run("pgrep", "-P", str(self.process.pid), check=False).stdout
        return [int(pid) for pid in out.split()]

    def kill_one_worker(self) -> None:
        pids = self.worker_pids()
        if pids:
            os.kill(secrets.choice(pids), signal.SIGKILL)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


# --- patients --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one patient sent and was told."""

    sentinel: str
    scenario: str
    statuses: list[int] = field(default_factory=list)
    acknowledged: bool = False
    acknowledged_at: float = 0.0
    traceback_seen: bool = False
    unhelpful_503: bool = False


class Patient:
    """One person filling the form from their own address; sentinels make their data findable."""

    counter = itertools.count()

    def __init__(self, port: int, scenario: str, fill_seconds: float):
        self.n = next(self.counter)
        self.port = port
        self.fill_seconds = fill_seconds
        self.address = f"127.{self.n // 65025 % 250 + 1}.{self.n // 255 % 255}.{self.n % 255 + 1}"
        token = secrets.token_hex(6)
        self.sentinel = f"hx{token}"
        self.outcome = Outcome(self.sentinel, scenario)
        self.cookie = ""

    def fields(self) -> dict[str, str]:
        n = self.n
        return {
            "first_name": "Harness", "last_name": f"Patient{self.sentinel}", "dob": "1980-01-01",
            "phone": f"(949) {200 + n // 10000 % 700:03d}-{n % 10000:04d}",
            "email": f"{self.sentinel}@harness.example", "zip_code": "92618", "preferred_contact": "call",
            "need_help_now": "no", "coverage_type": "ppo", "carrier": "Aetna", "member_id": f"M{self.sentinel}",
            "is_policyholder": "yes", "interest": "spravato", "message": f"Sentinel {self.sentinel}",
            "contact_consent": "y", "privacy_ack": "y",
        }

    def _request(self, method: str, body: str | None = None) -> tuple[int, str, dict]:
        headers = {"X-Forwarded-For": self.address}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            conn.request(method, "/", body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            cookie = response.getheader("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            return response.status, text, dict(response.getheaders())
        finally:
            conn.close()

    def load_form(self) -> dict[str, str] | None:
        """GET the form; return its hidden tokens, or None when the page did not come."""
        try:
            status, text, _ = self._request("GET")
        except OSError:
            return None
        if status != 200:
            return None
        tokens = {}
        for tag in HIDDEN_INPUT.findall(text):
            name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
            if name and value and name.group(1) in ("csrf_token", "form_token"):
                tokens[name.group(1)] = value.group(1)
        return tokens if "form_token" in tokens else None

    def submit(self, body: str) -> bool:
        """POST once; record the answer; True when it was the thank-you redirect."""
        try:
            status, text, headers = self._request("POST", body)
        except OSError:
            self.outcome.statuses.append(0)
            return False
        self.outcome.statuses.append(status)
        if "Traceback" in text or 'File "/' in text:
            self.outcome.traceback_seen = True
        if status == 503 and CLINIC_PHONE not in text:
            self.outcome.unhelpful_503 = True
        if status == 303 and headers.get("Location", "").endswith("/thanks"):
            self.outcome.acknowledged = True
            self.outcome.acknowledged_at = time.monotonic()
            return True
        return False

    def visit(self) -> Outcome:
        """Load, wait, send; when not acknowledged, send the same form once more."""
        tokens = None
        for _ in range(3):  # a page that did not load is simply reloaded before anything is typed
            tokens = self.load_form()
            if tokens:
                break
            time.sleep(0.5)
        if not tokens:
            self.outcome.statuses.append(-1)  # never saw a form: nothing was sent
            return self.outcome
        time.sleep(self.fill_seconds)
        body = urlencode({**self.fields(), **tokens})
        if not self.submit(body):
            time.sleep(1.0)
            self.submit(body)
        return self.outcome


# --- one scenario ------------------------------------------------------------------------------------


@dataclass
class Stack:
    server: Server
    redis: Redis
    env: dict[str, str]
    postgres: PostgresCluster | None = None
    volume: SqliteVolume | None = None


def burst(stack: Stack, scenario: str, clients: int, seconds: float, fill_seconds: float,
          fault: callable | None) -> tuple[list[Outcome], dict]:
    """Run ``clients`` patients in a loop for ``seconds``, with a fault thread; return outcomes and timings."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    timings: dict = {"fault_ends": []}

    def patient_loop() -> None:
        while time.monotonic() < deadline:
            outcome = Patient(stack.server.port, scenario, fill_seconds).visit()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=patient_loop, daemon=True) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    fault_thread = None
    if fault:
        fault_thread = threading.Thread(target=fault, args=(stack, began, seconds, timings), daemon=True)
        fault_thread.start()
    for thread in threads:
        thread.join()
    if fault_thread:
        fault_thread.join()
    timings["elapsed"] = time.monotonic() - began
    return outcomes, timings


def kill_workers(stack: Stack, began: float, seconds: float, timings: dict) -> None:
    """kill -9 one gunicorn worker every 10 s."""
    while time.monotonic() - began + 10 < seconds:
        time.sleep(10)
        stack.server.kill_one_worker()
        timings["fault_ends"].append(time.monotonic())


def away_for_a_while(stop: callable, start: callable, fault_seconds: float = FAULT_SECONDS) -> callable:
    """A fault that begins a third of the way in and lasts ``fault_seconds``."""

    def fault(stack: Stack, began: float, seconds: float, timings: dict) -> None:
        time.sleep(max(seconds / 3, 2))
        stop(stack)
        time.sleep(fault_seconds)
        start(stack)
        timings["fault_ends"].append(time.monotonic())

    return fault


FAULTS = {
    "burst": None,
    "kill": kill_workers,
    "db-stop": away_for_a_while(lambda s: s.postgres.stop(), lambda s: s.postgres.start()),
    "db-unwritable": away_for_a_while(lambda s: s.volume.make_unwritable(), lambda s: s.volume.make_writable()),
    "redis-stop": away_for_a_while(lambda s: s.redis.stop(), lambda s: s.redis.start()),
    "disk-full": away_for_a_while(lambda s: s.volume.fill(), lambda s: s.volume.free()),
}
NEEDS = {"db-stop": "postgresql", "db-unwritable": "sqlite", "disk-full": "sqlite"}


# --- what the database and the logs say -------------------------------------------------------------


def read_back() -> dict:
    """Read every enquiry and lead back through the application: sentinels, unreadable fields, orphans.

    Runs in a child process (``--read-back``) configured by the environment, like any CLI command.
    """
    from sqlalchemy import func, select

    from crm import create_app, crypto
    from crm.models import AuditEvent, Enquiry, Insurance, Lead, db

    app = create_app()
    found: collections.Counter = collections.Counter()
    unreadable = 0
    with app.app_context():
        for enquiry in db.session.scalars(select(Enquiry)):
            try:
                message = (enquiry.answers or {}).get("message") or ""
            except crypto.CryptoError:
                unreadable += 1
                continue
            match = re.search(r"hx[0-9a-f]{12}", message)
            if match:
                found[match.group(0)] += 1
        for lead in db.session.scalars(select(Lead)):
            try:
                for name in ("first_name", "last_name", "dob", "phone", "email", "zip_code"):
                    getattr(lead, name)
            except crypto.CryptoError:
                unreadable += 1
        for insurance in db.session.scalars(select(Insurance)):
            try:
                insurance.member_id  # noqa: B018 - decrypting is the check
            except crypto.CryptoError:
                unreadable += 1
        has_enquiry = select(Enquiry.id).where(Enquiry.lead_id == Lead.id).exists()
        orphan_leads = db.session.scalar(select(func.count()).select_from(Lead).where(~has_enquiry))
        audited = select(AuditEvent.seq).where(AuditEvent.action == "enquiry_received",
                                               AuditEvent.object_id == Lead.id).exists()
        unaudited = db.session.scalar(select(func.count()).select_from(Lead).where(~audited))
        db.session.rollback()
        db.engine.dispose()  # close the files, so the volume can be unmounted
    return {"found": found, "unreadable": unreadable, "orphan_leads": orphan_leads, "unaudited_leads": unaudited}


def stored_enquiries(env: dict[str, str]) -> dict:
    """What :func:`read_back` finds, run in a fresh process with the stack's configuration."""
    done = subprocess.run([sys.executable, __file__, "--read-back"], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["found"] = collections.Counter(figures["found"])
    return figures


def audit_verifies(env: dict[str, str]) -> bool:
    """Run ``flask audit verify`` as an operator would."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "crm", "audit", "verify"],
                          env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True)
    return done.returncode == 0


def sentinels_in_log(log: Path, outcomes: list[Outcome]) -> int:
    """How many patients' sentinels appear anywhere in the server's log."""
    text = log.read_text(errors="replace")
    return sum(1 for outcome in outcomes if outcome.sentinel in text)


def logged_failures(log: Path) -> dict[str, int]:
    """The kinds of failure the application logged (``unhandled X``, ``database unavailable (X)``)."""
    text = log.read_text(errors="replace")
    kinds = re.findall(r"unhandled (\w+)|database unavailable \((\w+)\)", text)
    return dict(collections.Counter(a or f"503 {b}" for a, b in kinds))


def recovery_seconds(outcomes: list[Outcome], timings: dict) -> float | None:
    """Seconds from the end of each fault to the next acknowledged enquiry; the worst of them."""
    acks = sorted(o.acknowledged_at for o in outcomes if o.acknowledged)
    worst = None
    for ended in timings["fault_ends"]:
        after = [at for at in acks if at >= ended]
        gap = (after[0] - ended) if after else float("inf")
        worst = gap if worst is None else max(worst, gap)
    return worst


def broken_promises(sent: list[Outcome], figures: dict, stored: dict, verified: bool, leaked: int) -> list[str]:
    """Every promise the scenario broke, in words."""
    checks = [
        (figures["lost"], f"{figures['lost']} acknowledged enquiries lost"),
        (figures["duplicated"], f"{figures['duplicated']} enquiries stored twice"),
        (figures["statuses"].get(500), f"{figures['statuses'].get(500)} responses were 500"),
        (any(o.traceback_seen for o in sent), "a traceback reached a patient"),
        (any(o.unhelpful_503 for o in sent), "a 503 page without the clinic's phone"),
        (stored["unreadable"], f"{stored['unreadable']} unreadable stored values"),
        (stored["orphan_leads"] or stored["unaudited_leads"],
         f"partial rows: {stored['orphan_leads']} leads without enquiry, "
         f"{stored['unaudited_leads']} without their audit event"),
        (not verified, "audit verify failed"),
        ((figures["recovery"] or 0) > RECOVERY_LIMIT_SECONDS, f"recovery took {figures['recovery']} s"),
        (leaked, f"{leaked} patients' sentinels in the log"),
        (not figures["acknowledged"], "no enquiry was acknowledged at all"),
    ]
    return [words for failed, words in checks if failed]


def judge(name: str, outcomes: list[Outcome], timings: dict, stored: dict, verified: bool, leaked: int) -> dict:
    """Compare what patients were told with what was stored; return the scenario's figures and broken promises."""
    sent = [o for o in outcomes if -1 not in o.statuses]
    acknowledged = [o for o in sent if o.acknowledged]
    figures = {
        "scenario": name, "attempted": len(sent), "acknowledged": len(acknowledged),
        "stored": sum(1 for o in sent if stored["found"][o.sentinel]),
        "lost": sum(1 for o in acknowledged if stored["found"][o.sentinel] == 0),
        "duplicated": sum(1 for o in sent if stored["found"][o.sentinel] > 1),
        "statuses": dict(sorted(collections.Counter(s for o in sent for s in o.statuses).items())),
        "recovery": recovery_seconds(outcomes, timings), "rate": len(acknowledged) / timings["elapsed"],
    }
    figures["broken"] = broken_promises(sent, figures, stored, verified, leaked)
    return figures


# --- the whole run ------------------------------------------------------------------------------------


def app_env(workdir: Path, database_url: str, redis_url: str) -> dict[str, str]:
    from crm import crypto

    keyring = workdir / "keyring.json"
    if not keyring.exists():
        crypto.write_keyring_file(keyring, crypto.Keyring.generate())
    return {
        "CRM_INSTANCE_PATH": str(workdir / "instance"),
        "CRM_DATABASE_URL": database_url,
        "CRM_SECRET_KEY": secrets.token_urlsafe(48),
        "CRM_KEYRING_FILE": str(keyring),
        "CRM_RATELIMIT_STORAGE_URI": redis_url,
        "CRM_PROXY_FIX": "1",
        "CRM_ENQUIRY_MIN_FILL_SECONDS": "1",
    }


def prepare_schema(env: dict[str, str]) -> None:
    """Create the schema before the workers start (they then skip auto-migration)."""
    subprocess.run([sys.executable, "-c", "from crm import create_app; create_app()"],
                   env={**os.environ, **env}, cwd=ROOT, check=True)
    env["CRM_AUTO_MIGRATE"] = "false"


def run_database(kind: str, scenarios: list[str], clients: int, seconds: float, workers: int) -> list[dict]:
    """Build one stack on ``kind`` and run each scenario on it in turn."""
    results = []
    with tempfile.TemporaryDirectory(prefix="crm-faults-") as tmp:
        workdir = Path(tmp)
        postgres = volume = None
        redis = Redis(workdir)
        try:
            if kind == "postgresql":
                postgres = PostgresCluster(workdir)
                url = postgres.url
            else:
                volume = SqliteVolume(workdir)
                url = volume.url
            env = app_env(workdir, url, redis.url)
            prepare_schema(env)
            for name in scenarios:
                if NEEDS.get(name, kind) != kind:
                    continue
                server = Server(env, workdir, workers)
                worker = Worker(env, server.log)
                stack = Stack(server, redis, env, postgres, volume)
                try:
                    outcomes, timings = burst(stack, name, clients, seconds, 1.2, FAULTS[name])
                finally:
                    server.stop()
                    worker_exit = worker.stop()
                stored = stored_enquiries(env)
                result = judge(name, outcomes, timings, stored, audit_verifies(env),
                               sentinels_in_log(server.log, outcomes))
                result["database"] = kind
                if worker_exit != 0:
                    result["broken"].append(f"the background worker exited with {worker_exit} (not a clean stop)")
                result["logged"] = logged_failures(server.log)
                server.log.write_text("")  # each scenario reads only its own log
                results.append(result)
                print_result(result)
        finally:
            redis.stop()
            if postgres:
                postgres.drop()
            if volume:
                volume.remove()
    return results


def print_result(result: dict) -> None:
    recovery = "-" if result["recovery"] is None else f"{result['recovery']:.1f} s"
    print(f"{result['database']:>10} {result['scenario']:<14} attempted {result['attempted']:5}  "
          f"acknowledged {result['acknowledged']:5}  stored {result['stored']:5}  lost {result['lost']}  "
          f"duplicated {result['duplicated']}  recovery {recovery:>6}  {result['rate']:6.1f} ack/s  "
          f"statuses {json.dumps(result['statuses'])}  logged {json.dumps(result['logged'])}", flush=True)
    for promise in result["broken"]:
        print(f"{'':>11}BROKEN: {promise}", flush=True)


def print_ratios(results: list[dict]) -> None:
    baseline = {r["database"]: r["rate"] for r in results if r["scenario"] == "burst"}
    for result in results:
        if result["scenario"] != "burst" and baseline.get(result["database"]):
            print(f"{result['database']:>10} {result['scenario']:<14} throughput {result['rate']:.1f} ack/s = "
                  f"{result['rate'] / baseline[result['database']]:.2f}x the same burst with no fault")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--scenarios", default=",".join(FAULTS))
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--short", action="store_true", help="CI: 30 clients, 25 s, one worker kill, one db stop")
    parser.add_argument("--read-back", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read_back:
        print(json.dumps(read_back()))
        return 0
    if os.geteuid() != 0:
        raise SystemExit("the harness mounts file systems and manages clusters: run it as root")
    scenarios = args.scenarios.split(",")
    databases = ["postgresql", "sqlite"] if args.database == "both" else [args.database]
    if args.short:
        databases, scenarios = ["postgresql"], ["kill", "db-stop"]
        args.clients, args.seconds = 30, 25
    unknown = set(scenarios) - set(FAULTS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    print(f"{args.clients} patients for {args.seconds:.0f} s per scenario, gunicorn {args.workers} workers", flush=True)
    results = [r for kind in databases for r in run_database(kind, scenarios, args.clients, args.seconds,
                                                               args.workers)]
    print_ratios(results)
    broken = [r for r in results if r["broken"]]
    total = sum(r["attempted"] for r in results)
    print(f"scenarios: {len(results) - len(broken)} kept every promise, {len(broken)} broke one "
          f"({total} enquiries attempted, median {statistics.median([r['rate'] for r in results]):.1f} ack/s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
