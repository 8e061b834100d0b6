"""Audit log commands: verify the chain and export a signed head.

``flask --app crm audit verify [--against HEAD.json]`` exits 0 with the number of events
and the head, or 1 naming the first bad seq; it also checks the MAC of every account,
session and emergency grant row and exits 1 naming any changed outside the application.
``flask --app crm audit head --out FILE`` writes a signed head to keep off the box;
verifying against it later proves the log was not cut short. Both runs are themselves
audited, after the check, so the check never sees its own event.
"""

from __future__ import annotations

import json
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import DBAPIError

from .. import audit as audit_log
from .. import integrity
from ..models import db, keyring


@click.group("audit")
def audit() -> None:
    """Verify and checkpoint the audit log."""


@audit.command("verify")
@click.option("--against", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A signed head written by 'audit head'; fails if the log no longer reaches it.")
@click.option("--workers", type=click.IntRange(1, 8), default=None,
              help="Processes walking the chain (default: one per usable CPU, up to 8, for long logs).")
@with_appcontext
def verify(against: Path | None, workers: int | None) -> None:
    """Walk the chain; exit 1 naming the first bad seq and why."""
    ring = keyring()
    checkpoint = _load_head(against) if against else None
    try:
        verdict = audit_log.verify_chain(ring.audit_key, checkpoint=checkpoint, workers=workers)
    except (DBAPIError, BrokenProcessPool) as exc:  # e.g. a worker refused a connection
        db.session.rollback()
        audit_log.record("audit_verified", object_type="audit", outcome="failure",
                         details={"reason": "unreadable"})
        db.session.commit()
        raise click.ClickException(f"the audit log could not be read: {type(exc).__name__}") from None
    tampered = integrity.tampered_rows()
    _record_verdict(verdict, checkpoint, tampered)
    if not verdict.ok:
        raise click.ClickException(
            f"audit log broken at seq {verdict.bad_seq}: {verdict.reason} "
            f"({audit_log.REASONS[verdict.reason or '']}); {verdict.count} events before it verified"
        )
    if tampered:
        names = ", ".join(f"{row.table} {row.row_id[:16]}" for row in tampered)
        raise click.ClickException(
            f"audit log intact ({verdict.count} events), but {len(tampered)} account or session row(s) "
            f"fail their MAC (changed outside the application): {names}"
        )
    against_note = f", reaches signed head seq {checkpoint[0]}" if checkpoint else ""
    click.echo(
        f"audit log intact: {verdict.count} events, head seq {verdict.head_seq} "
        f"mac {verdict.head_mac.hex()}{against_note}; accounts and sessions intact"
    )


def _load_head(path: Path) -> tuple[int, bytes]:
    """Read and check a signed head file, auditing and failing on a bad one."""
    try:
        return audit_log.check_signed_head(keyring(), json.loads(path.read_text()))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        audit_log.record("audit_verified", object_type="audit", outcome="failure",
                         details={"reason": "bad_head"})
        db.session.commit()
        raise click.ClickException(f"cannot use {path.name}: {exc}") from None


def _record_verdict(verdict: audit_log.Verdict, checkpoint: tuple[int, bytes] | None,
                    tampered: list[integrity.Tampered]) -> None:
    """Audit the verification run (its event lands after the events it checked)."""
    details: dict[str, Any] = {"events": verdict.count, "head_seq": verdict.head_seq}
    if checkpoint:
        details["against_seq"] = checkpoint[0]
    if not verdict.ok:
        details.update(bad_seq=verdict.bad_seq, reason=verdict.reason)
    if tampered:
        details["tampered_rows"] = len(tampered)
    ok = verdict.ok and not tampered
    audit_log.record("audit_verified", object_type="audit", outcome="success" if ok else "failure",
                     details=details)
    db.session.commit()


@audit.command("head")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="File to write; standard output when omitted.")
@with_appcontext
def head(out: Path | None) -> None:
    """Write a signed head (seq, MAC, time) that a later 'verify --against' checks."""
    event = audit_log.record("audit_exported", object_type="audit", details={"format": "signed_head"})
    document = json.dumps(audit_log.sign_head(keyring(), event), indent=2) + "\n"
    seq = event.seq
    db.session.commit()
    if out is None:
        click.echo(document, nl=False)
        return
    out.write_text(document)
    click.echo(f"signed head seq {seq} written to {out}")
