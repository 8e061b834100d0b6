"""Privacy commands: a patient's copy, erasure, retention, backups and the restore check.

``flask privacy export REFERENCE --out PATH``, ``flask privacy erase REFERENCE``,
``flask retention run [--dry-run]``, ``flask backup PATH`` and ``flask backup restore-check``.
Each is audited as the system; none prints PHI (the export goes only to its file).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from .. import audit, export
from .. import backup as backups
from ..models import Lead, db, utcnow
from ..operations import privacy, retention
from .keys import enlarge_sqlite_cache


def _lead_by_reference(reference: str) -> Lead:
    """The lead with this reference code (any letter case), or a clear error."""
    lead = db.session.scalar(select(Lead).where(func.upper(Lead.reference) == reference.strip().upper()))
    if lead is None:
        raise click.ClickException(f"no lead has reference {reference.strip().upper()}")
    return lead


@click.group("privacy")
def privacy_group() -> None:
    """A patient's copy of their data, and erasure on request."""


@privacy_group.command("export")
@click.argument("reference")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (mode 0600); it must not exist yet.")
@with_appcontext
def export_command(reference: str, out: Path) -> None:
    """Write everything held about the lead REFERENCE to one self-contained HTML file."""
    lead = _lead_by_reference(reference)
    try:
        privacy.refuse_if_erased(lead)
    except privacy.PrivacyRefusal as exc:
        raise click.ClickException(str(exc)) from None
    html, details, reading = export.render(lead)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{out} already exists; choose a new file") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(html)
    _record_unreadable(lead, reading)
    privacy.record_export(lead, None, {**details, "via": "cli"})
    db.session.commit()
    click.echo(f"Copy of {lead.reference} written to {out} ({len(html):,} bytes). It holds PHI: hand it over "
               "securely and delete your copy.")


def _record_unreadable(lead: Lead, reading: export.Reading) -> None:
    if reading.failed:
        audit.record("decrypt_failed", object_type="lead", object_id=lead.id, outcome="failure",
                     details={"fields": sorted(set(reading.failed)), "during": "export"})


@privacy_group.command("erase")
@click.argument("reference")
@click.option("--yes", is_flag=True, help="Do not ask to type the reference again.")
@with_appcontext
def erase_command(reference: str, yes: bool) -> None:
    """Crypto-shred the lead REFERENCE on the patient's request (refused for patients and legal holds)."""
    lead = _lead_by_reference(reference)
    if lead.is_erased:
        db.session.rollback()
        click.echo(f"{lead.reference} was already erased on {lead.erased_at:%Y-%m-%d}; nothing to do.")
        return
    if not yes and click.prompt("Type the reference again to erase it").strip().upper() != lead.reference:
        raise click.ClickException("the reference did not match; nothing was erased")
    try:
        privacy.erase_lead(lead, None)
    except privacy.PrivacyRefusal as exc:
        db.session.commit()  # keep the audited refusal
        raise click.ClickException(f"refused: {exc}") from None
    db.session.commit()
    backups.checkpoint_sqlite()
    click.echo(f"{reference.strip().upper()} erased: its data key and personal details are destroyed.")


# --- retention -----------------------------------------------------------------------


@click.group("retention")
def retention_group() -> None:
    """Apply the retention policy (RETENTION_* settings)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Only count the leads each rule would shred.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=None,
              help="Leads shredded and committed per transaction (default RETENTION_BATCH_SIZE, else 200 on "
                   "SQLite and 1,000 on PostgreSQL).")
@with_appcontext
def retention_run(dry_run: bool, batch_size: int | None) -> None:
    """Shred every lead the policy says is due, in resumable batches, audited as the system."""
    now = utcnow()
    due = retention.count_due(now)
    if dry_run:
        for reason in retention.REASONS:
            click.echo(f"{reason.replace('_', ' ')}: {due[reason]}")
        click.echo(f"total due: {sum(due.values())} (dry run: nothing changed)")
        return
    size = batch_size or retention.batch_size()
    enlarge_sqlite_cache()
    db.session.commit()
    pause, started = float(current_app.config["RETENTION_PAUSE_SECONDS"]), time.perf_counter()
    with click.progressbar(length=sum(due.values()), label="Shredding", file=sys.stderr) as bar:

        def end_batch(count: int) -> bool:
            db.session.commit()
            bar.update(count)
            backups.checkpoint_sqlite("PASSIVE")
            time.sleep(pause)  # the write turn goes to the workspace's requests between batches
            return True

        try:
            with backups.checkpoints_deferred():
                done, _finished = retention.apply(now, size, end_batch)
        except BaseException:  # interrupted: committed batches stay done, the open one is undone
            db.session.rollback()
            raise
    backups.checkpoint_sqlite()
    for reason in retention.REASONS:
        click.echo(f"{reason.replace('_', ' ')}: {done[reason]} shredded")
    seconds, total = time.perf_counter() - started, sum(done.values())
    click.echo(f"total: {total} shredded in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f}/s)")


# --- backups -------------------------------------------------------------------------


class _BackupGroup(click.Group):
    """``backup PATH`` makes a backup; ``backup restore-check`` is a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


@click.group("backup", cls=_BackupGroup)
def backup_group() -> None:
    """flask backup PATH: a consistent copy of the SQLite database and its manifest; or restore-check."""


@backup_group.command("create")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup_create(path: Path) -> None:
    """Copy the running database to PATH with PATH.manifest.json (schema revision, key ids, time)."""
    try:
        manifest = backups.make_sqlite_backup(path)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    audit.record("backup_made", object_type="backup",
                 details={"schema": manifest["schema_revision"], "key_ids": manifest["key_ids"],
                          "leads": manifest["leads"]})
    db.session.commit()
    click.echo(f"Backup written to {path} ({manifest['size']:,} bytes), manifest {backups.manifest_path(path).name}. "
               f"A restore needs master key(s) {manifest['key_ids']} and the shred ledger, kept apart.")


@backup_group.command("restore-check")
@with_appcontext
def restore_check() -> None:
    """Re-apply the shred ledger: leads erased after the backup was made are shredded again."""
    total = 0
    for batch in privacy.unshredded_from_ledger():
        privacy.reapply_ledger(batch)
        db.session.commit()
        total += len(batch)
    if total == 0:
        audit.record("restore_checked", object_type="lead", details={"reshredded": 0})
        db.session.commit()
    backups.checkpoint_sqlite()
    click.echo(f"Restore check: {total} erased lead(s) shredded again; the database matches the shred ledger.")
