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
    """Import leads from a CSV file; duplicates are attached, a repeated import creates nothing new."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
        rows = list(imports.parsed_rows(text, source))
    except (UnicodeDecodeError, imports.ImportFileError) as exc:
        message = str(exc) if isinstance(exc, imports.ImportFileError) else "The file is not UTF-8 text."
        raise click.ClickException(message) from None
    importer = imports.Importer(source, None, dry_run=dry_run)
    with click.progressbar(length=len(rows), label="Importing" if not dry_run else "Checking") as bar:
        for chunk in imports.in_batches(rows, batch_size):
            importer.write(importer.batch(chunk))
            db.session.commit()
            bar.update(len(chunk))
    _report(importer.summary, dry_run)


def _report(summary: imports.Summary, dry_run: bool) -> None:
    """Counts, then each refused row's line and reason (never a value from the file)."""
    verb = "would be " if dry_run else ""
    click.echo(f"{summary.rows} rows: {summary.created} {verb}created, {summary.attached} {verb}attached to "
               f"existing leads, {summary.already_imported} already imported, {len(summary.refused)} refused.")
    for line, reason in summary.refused:
        click.echo(f"  line {line}: {reason}")
    for line, warning in summary.warnings:
        click.echo(f"  line {line} (warning): {warning}")
