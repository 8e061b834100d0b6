"""`flask rotate-keys` on a seeded SQLite database: leads per second and peak memory.

Seeds N demo leads into a throw-away instance, adds and promotes a master key, then runs
`rotate-keys` in a child process and reads that child's peak RSS with
``resource.getrusage(RUSAGE_CHILDREN)``. Baseline, measured in the same run: the bare
unwrap + re-wrap of N data keys with AES-GCM in this process (no database at all).

    .venv/bin/python benchmarks/rotate_bench.py [--leads 100000] [--batch-size 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crm import crypto

TARGET_RATE = 10_000
TARGET_RSS_MB = 200
#: Runs one command as this interpreter's only child and reports its wall time and peak RSS.
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"seconds": time.perf_counter() - started, "code": done.returncode, "stdout": done.stdout,
                  "stderr": done.stderr, "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def flask(env: dict[str, str], *args: str) -> str:
    """Run one ``flask --app crm`` command and return its output, failing loudly."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "crm", *args], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        sys.exit(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def measured(env: dict[str, str], *args: str) -> dict:
    """Run a ``flask`` command under :data:`MEASURE` and return its figures."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "flask", "--app", "crm", *args]
    result = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
    if result["code"]:
        sys.exit(f"flask {' '.join(args)} failed:\n{result['stdout']}\n{result['stderr']}")
    return result


def bare_rewrap_seconds(count: int) -> float:
    """Seconds to unwrap and re-wrap ``count`` data keys with no database: the crypto floor."""
    ring = crypto.Keyring.generate()
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(count)]
    wrapped = [crypto.wrap_data_key(ring, lead_id, crypto.new_data_key()) for lead_id in ids]
    ring.promote(ring.add_key().kid)
    started = time.perf_counter()
    for lead_id, (kid, nonce, blob) in zip(ids, wrapped, strict=True):
        crypto.rewrap_data_key(ring, lead_id, kid, nonce, blob)
    return time.perf_counter() - started


def main() -> None:
    """Seed, promote a new key, rotate, and print the figures against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env.update(CRM_INSTANCE_PATH=str(Path(tmp) / "instance"),
                   CRM_DATABASE_URL=f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        started = time.perf_counter()
        flask(env, "seed-demo", "--leads", str(args.leads), "--seed", "1")
        print(f"seeded {args.leads:,} leads in {time.perf_counter() - started:.0f} s")
        flask(env, "keys", "add")
        flask(env, "keys", "promote", "2")
        result = measured(env, "rotate-keys", "--batch-size", str(args.batch_size))
        status = flask(env, "keys", "status")
    rate = args.leads / result["seconds"]
    steady = re.findall(r"\(([\d,]+)/s\)", result["stdout"])
    rss_mb = result["max_rss_kb"] / 1024
    floor = bare_rewrap_seconds(args.leads)
    print(status.rstrip())
    print(f"rotate-keys: {args.leads:,} lead keys in {result['seconds']:.2f} s = {rate:,.0f} leads/s end to end "
          f"(process start included); {steady[-1] if steady else '?'} leads/s inside the command")
    print(f"peak RSS of the rotate-keys process: {rss_mb:.0f} MB")
    print(f"baseline: bare AES-GCM unwrap+re-wrap of {args.leads:,} keys took {floor:.2f} s "
          f"({args.leads / floor:,.0f}/s); rotate-keys costs {result['seconds'] / floor:.1f}x that")
    print(f"targets: >= {TARGET_RATE:,} leads/s {'met' if rate >= TARGET_RATE else 'MISSED'}, "
          f"<= {TARGET_RSS_MB} MB {'met' if rss_mb <= TARGET_RSS_MB else 'MISSED'}")


if __name__ == "__main__":
    main()
