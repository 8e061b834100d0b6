"""``flask leads import``: leads from a referral partner's or a previous system's CSV file."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..forms.intake import STAFF_SOURCES
from ..models import db
from ..operations import imports

SOURCES = [str(source) for source in STAFF_SOURCES]


@click.group("leads")
def leads() -> None:
    """Lead data commands."""


@leads.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", type=click.Choice(SOURCES), required=True, help="Where these leads came from.")
@click.option("--dry-run", is_flag=True, help="Check every row and count what would happen; write nothing.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@with_appcontext
def import_leads(path: str, source: str, dry_run: bool, batch_size: int) -> None:
    """Import leads from a CSV file; duplicates are attached, a repeated import creates nothing new.

    The file is read, checked, matched and written one slice at a time (one transaction each),
    so memory stays flat however long the file is.
    """
    lines = _count_lines(path)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            rows = imports.parsed_rows(handle, source)
        except imports.ImportFileError as exc:
            raise click.ClickException(str(exc)) from None
        importer = imports.Importer(source, None, dry_run=dry_run)
        done = 1  # the header
        with click.progressbar(length=max(lines - done, 0), label="Checking" if dry_run else "Importing") as bar:
            for chunk in imports.in_batches(rows, batch_size):
                importer.write(importer.batch(chunk))
                db.session.commit()
                reached = imports.line_of(chunk[-1])
                bar.update(reached - done)
                done = reached
    _report(importer.summary, dry_run)


def _count_lines(path: str) -> int:
    """The file's lines, read once before anything is written: a file that is not UTF-8 is refused whole."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return sum(1 for _ in handle)
    except UnicodeDecodeError:
        raise click.ClickException("The file is not UTF-8 text.") from None


def _report(summary: imports.Summary, dry_run: bool) -> None:
    """Counts, then each refused row's line and reason (never a value from the file)."""
    verb = "would be " if dry_run else ""
    click.echo(f"{summary.rows} rows: {summary.created} {verb}created, {summary.attached} {verb}attached to "
               f"existing leads, {summary.already_imported} already imported, {len(summary.refused)} refused.")
    for line, reason in summary.refused:
        click.echo(f"  line {line}: {reason}")
    for line, warning in summary.warnings:
        click.echo(f"  line {line} (warning): {warning}")
