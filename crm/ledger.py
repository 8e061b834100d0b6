"""The shred ledger: ids and times of erased leads, kept in a file outside the database and its backups.

A restored backup may predate an erasure; re-applying this ledger (``flask backup
restore-check``, and on start) shreds those leads again. Each line is one JSON object
``{"lead_id", "at", "reason"}``: ids, times and codes, never PHI. Lines are appended and
fsynced before the erasure commits, so a crash leaves at most an entry for an erasure
that must still happen, never an erased lead missing from the ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from pathlib import Path

from flask import current_app


def ledger_path() -> Path:
    """Where the ledger lives (``SHRED_LEDGER_FILE``, default ``instance/shred-ledger.jsonl``)."""
    configured = current_app.config.get("SHRED_LEDGER_FILE")
    return Path(configured) if configured else Path(current_app.instance_path) / "shred-ledger.jsonl"


def append(entries: Iterable[tuple[str, dt.datetime, str]]) -> None:
    """Durably append ``(lead_id, at, reason)`` entries (0600 file, flushed to disk)."""
    lines = "".join(json.dumps({"lead_id": lead_id, "at": at.isoformat(), "reason": reason}) + "\n"
                    for lead_id, at, reason in entries)
    if not lines:
        return
    fd = os.open(ledger_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, lines.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def entries() -> dict[str, dict[str, str]]:
    """Every ledger entry by lead id (the first entry for an id wins); empty when there is no ledger."""
    path = ledger_path()
    if not path.exists():
        return {}
    found: dict[str, dict[str, str]] = {}
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:  # a torn last line after a crash: the erasure it named was not committed
                continue
            found.setdefault(entry["lead_id"], entry)
    return found


def count() -> int:
    """How many distinct leads the ledger names."""
    return len(entries())
