"""Benchmark: full enquiry submissions under gunicorn (2 workers, SQLite) against a bare insert.

Run: ``.venv/bin/python benchmarks/enquiry_bench.py [--requests 4000] [--connections 16]
[--rounds 4] [--worker-class sync|gthread]``.

Both servers run gunicorn with 2 workers on a temporary SQLite file (WAL, synchronous=FULL).
The default ``sync`` workers (gunicorn's default, the deployment docs' choice behind a proxy)
take one request per connection, so the kernel spreads the clients' requests over both
workers; ``gthread`` workers keep each keep-alive connection on the worker that accepted it
(``BENCH_THREADS`` threads each, default 1). The CRM runs with CSRF on: every virtual client
first loads the form to get its session cookie, CSRF token and one single-use form token per
submission it will send (those GETs are not timed). The rate limit is raised to 1,000,000
per minute (the limiter still runs) and the minimum fill time is 0 s, both through ``CRM_*``
environment variables. Each client is one ``http.client`` connection, reopened whenever the
server closes it (after every response with ``sync`` workers). The requests are sent in rounds
that alternate between the two servers, so a slow spell of a shared machine hits both; the ratio
is printed pooled over all rounds and as the median of the per-round ratios.

``--languages`` compares the Spanish form with the English one instead, on one CRM server: the
same submissions, sent by clients whose browsers ask for Spanish (``Accept-Language: es-US``)
or English, in rounds that alternate ABBA (en, es, es, en, ...), then timed GETs of the form page
(the rendering, where the catalog is read) in the same alternating order, and last the form page's
CPU cost rendered inside one process, free of the client and the other load. Target: Spanish rate
at least 0.95x English for both. On a shared machine the rates swing with other load, so each
round also records the CPU time the server's processes used (from ``/proc``), and the ratio of
CPU per request (English / Spanish, so above 1 means Spanish is cheaper) is printed as well.
"""

from __future__ import annotations

import argparse
import functools
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
LANGUAGE_HEADERS = {"en": "en-US,en;q=0.9", "es": "es-US,es;q=0.9,en;q=0.5"}
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


#: Southern California area codes: each gives the benchmark 10,000 distinct patients' phone numbers.
AREA_CODES = (949, 714, 657, 562, 626, 909, 951, 760, 619, 858)


def form_fields(n: int) -> dict[str, str]:
    """A valid submission from a distinct patient (a phone is required: they asked for a call)."""
    area = AREA_CODES[n // 10000 % len(AREA_CODES)]
    return {
        "first_name": "Bench", "last_name": f"Patient{n}", "dob": "1980-01-01",
        "phone": f"({area}) 555-{n % 10000:04d}", "email": f"patient{n}@bench.example",
        "zip_code": "92618", "preferred_contact": "call", "need_help_now": "no", "coverage_type": "ppo",
        "carrier": "Aetna", "member_id": f"M{n:08d}", "is_policyholder": "yes", "interest": "spravato",
        "message": "Looking for information.", "contact_consent": "y", "privacy_ack": "y",
    }


class CrmClient:
    """One virtual patient browser: a cookie, a CSRF token and pre-fetched form tokens."""

    def __init__(self, port: int, count: int, language: str = "en"):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.language = LANGUAGE_HEADERS[language]
        self.cookie = ""
        self.csrf = ""
        self.form_tokens = [self._load_form() for _ in range(count)]
        self.conn.close()  # the timed phase starts on a fresh connection

    def _load_form(self) -> str:
        self.conn.request("GET", "/", headers={"Accept-Language": self.language,
                                             **({"Cookie": self.cookie} if self.cookie else {})})
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
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie,
            "Accept-Language": self.language})
        response = self.conn.getresponse()
        response.read()
        self.last_headers = response.headers
        return response.status


class FormViewer:
    """One patient browser loading the form page (timed): the page rendered in its language."""

    def __init__(self, port: int, _count: int, language: str = "en"):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.language = LANGUAGE_HEADERS[language]
        self.marker = 'lang="es"' if language == "es" else 'lang="en"'

    def send(self, _n: int) -> int:
        self.conn.request("GET", "/", headers={"Accept-Language": self.language})
        response = self.conn.getresponse()
        body = response.read().decode()
        return 303 if response.status == 200 and self.marker in body else response.status  # 303: as asked


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


def drive(client_type: type, port: int, total: int, connections: int, first: int = 0) -> dict:
    """Send ``total`` POSTs over ``connections`` threads; return the elapsed time, latencies and statuses."""
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
                codes.append(client.send(first + index * per_client + i))
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
    return {"elapsed": time.perf_counter() - began, "latencies": latencies, "statuses": statuses}


def summarise(rounds: list[dict], warm_up: dict) -> dict:
    """Pool a server's timed rounds (rate, p50, p99); count 303s and other answers, warm-up included."""
    latencies = [latency for got in rounds for latency in got["latencies"]]
    statuses = [status for got in [*rounds, warm_up] for status in got["statuses"]]
    quantiles = statistics.quantiles(latencies, n=100)
    return {"rate": len(latencies) / sum(got["elapsed"] for got in rounds), "p50": quantiles[49] * 1000,
            "p99": quantiles[98] * 1000, "acks": statuses.count(303), "other": len(statuses) - statuses.count(303)}


def rate(got: dict) -> float:
    """Requests per second of one round."""
    return len(got["latencies"]) / got["elapsed"]


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608


def report(name: str, result: dict, stored: int) -> None:
    print(f"{name:>22}: {result['rate']:8.1f} req/s   p50 {result['p50']:6.1f} ms   p99 {result['p99']:6.1f} ms"
          f"   303 acks {result['acks']}   other {result['other']}   stored {stored}")
    if result["other"]:
        print(f"{'':>22}  NOT COMPARABLE: {result['other']} answers were not the expected 303 (refused or failed)")


def server_cpu_seconds(master: int) -> float:
    """User + system CPU used so far by a gunicorn master and its workers (Linux ``/proc``)."""
    pids = [master, *map(int, Path(f"/proc/{master}/task/{master}/children").read_text().split())]
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def compare_languages(args: argparse.Namespace) -> None:
    """Time the Spanish form against the English form on one CRM server, in alternating ABBA rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = crm_env(workdir)
        migrate(env)
        port = free_port()
        server = start("crm:create_app()", env, port, ROOT, args.worker_class)
        kinds = {"post": CrmClient, "get": FormViewer}
        rounds: dict[tuple[str, str], list[dict]] = {(k, lang): [] for k in kinds for lang in ("en", "es")}
        try:
            wait_for(port, "/health")
            per_round = args.requests // args.rounds
            first = args.requests  # patient numbers: warm-up, then each round's own range
            for client in kinds.values():
                for language in ("en", "es"):
                    drive(functools.partial(client, language=language), port, 10 * args.connections,
                          args.connections, first)
                    first += 10 * args.connections
            for number in range(args.rounds):
                order = ("en", "es") if number % 2 == 0 else ("es", "en")
                for kind, client in kinds.items():
                    for language in order:
                        cpu = server_cpu_seconds(server.pid)
                        got = drive(functools.partial(client, language=language), port, per_round,
                                    args.connections, first)
                        got["cpu"] = server_cpu_seconds(server.pid) - cpu
                        rounds[(kind, language)].append(got)
                        first += per_round
        finally:
            server.terminate()
            server.wait(timeout=10)
        print(f"{args.requests} requests per language and kind over {args.connections} connections in "
              f"{args.rounds} ABBA rounds, gunicorn 2 {args.worker_class} workers, one CRM server")
        for kind, label in (("post", "enquiry POST"), ("get", "form page GET")):
            english, spanish = (summarise(rounds[(kind, lang)], {"statuses": []}) for lang in ("en", "es"))
            report(f"{label}, English", english, english["acks"])
            report(f"{label}, Spanish", spanish, spanish["acks"])
            ratios = [rate(es) / rate(en) for en, es in zip(rounds[(kind, "en")], rounds[(kind, "es")], strict=True)]
            print(f"ratio Spanish/English {label}: {spanish['rate'] / english['rate']:.3f}x pooled, "
                  f"{statistics.median(ratios):.3f}x median of rounds ({', '.join(f'{r:.2f}' for r in ratios)}) "
                  "(target >= 0.95x)")
            cpu = {lang: 1000 * sum(got["cpu"] for got in rounds[(kind, lang)])
                   / sum(len(got["latencies"]) for got in rounds[(kind, lang)]) for lang in ("en", "es")}
            cpu_ratios = [(en["cpu"] / len(en["latencies"])) / (es["cpu"] / len(es["latencies"]))
                          for en, es in zip(rounds[(kind, "en")], rounds[(kind, "es")], strict=True)]
            print(f"server CPU per {label}: English {cpu['en']:.2f} ms, Spanish {cpu['es']:.2f} ms; "
                  f"English/Spanish {cpu['en'] / cpu['es']:.3f}x pooled, {statistics.median(cpu_ratios):.3f}x median "
                  f"of rounds (target >= 0.95x)")
        print(f"enquiries stored: {count_rows(workdir / 'crm.sqlite3', 'enquiries')}")
        in_process_form_cost(env)


def in_process_form_cost(env: dict[str, str], rounds: int = 20, per_round: int = 100) -> None:
    """The form page's rendering cost in each language inside one process (no HTTP, no other client):
    CPU time of ``per_round`` test-client GETs, in ABBA rounds; the ratio is of the per-round medians."""
    os.environ.update(env)
    from crm import create_app

    client = create_app().test_client()
    for language in ("en", "es"):
        for _ in range(per_round):
            client.get("/", headers={"Accept-Language": LANGUAGE_HEADERS[language]})
    cost: dict[str, list[float]] = {"en": [], "es": []}
    for number in range(rounds):
        for language in ("en", "es") if number % 2 == 0 else ("es", "en"):
            began = time.process_time()
            for _ in range(per_round):
                client.get("/", headers={"Accept-Language": LANGUAGE_HEADERS[language]})
            cost[language].append((time.process_time() - began) * 1000 / per_round)
    english, spanish = statistics.median(cost["en"]), statistics.median(cost["es"])
    print(f"form page rendered in-process: English {english:.2f} ms, Spanish {spanish:.2f} ms CPU per GET; "
          f"English/Spanish {english / spanish:.3f}x (target >= 0.95x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    parser.add_argument("--languages", action="store_true", help="Spanish form vs English form instead")
    args = parser.parse_args()
    if args.languages:
        compare_languages(args)
        return
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
        rounds: dict[str, list[dict]] = {"bare": [], "crm": []}
        try:
            wait_for(crm_port, "/health")
            wait_for(bare_port, "/")
            per_round = args.requests // args.rounds
            warm_up = 10 * args.connections  # not timed: the first requests load code and fill caches
            warm = {"bare": drive(BareClient, bare_port, warm_up, args.connections, args.requests),
                    "crm": drive(CrmClient, crm_port, warm_up, args.connections, args.requests)}
            for number in range(args.rounds):  # alternate, so a slow spell of the machine hits both
                rounds["bare"].append(drive(BareClient, bare_port, per_round, args.connections, number * per_round))
                rounds["crm"].append(drive(CrmClient, crm_port, per_round, args.connections, number * per_round))
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
        bare, crm = summarise(rounds["bare"], warm["bare"]), summarise(rounds["crm"], warm["crm"])
        print(f"{args.requests} POSTs over {args.connections} connections in {args.rounds} alternating rounds, "
              f"gunicorn 2 {args.worker_class} workers")
        report("bare Flask insert", bare, count_rows(workdir / "bare.sqlite3", "row"))
        report("full enquiry (CRM)", crm, count_rows(workdir / "crm.sqlite3", "enquiries"))
        ratios = [rate(c) / rate(b) for b, c in zip(rounds["bare"], rounds["crm"], strict=True)]
        print(f"ratio CRM/bare: {crm['rate'] / bare['rate']:.2f}x pooled, {statistics.median(ratios):.2f}x median of "
              f"rounds ({', '.join(f'{r:.2f}' for r in ratios)}) (target >= 0.5x); "
              f"CRM p99 {crm['p99']:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
