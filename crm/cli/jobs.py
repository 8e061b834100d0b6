"""The background worker command: ``flask --app crm jobs run [--once]``."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ..jobs.worker import Worker


@click.group("jobs")
def jobs() -> None:
    """Send alerts from the outbox and run the periodic jobs."""


@jobs.command("run")
@click.option("--once", is_flag=True, help="Do all due work once and exit (for cron).")
@with_appcontext
def run(once: bool) -> None:
    """Run the worker until SIGTERM, or once with --once."""
    try:
        worker = Worker(current_app._get_current_object())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    worker.handle_signals()
    click.echo("jobs: running once" if once else "jobs: running until stopped")
    worker.run(once=once)
    click.echo("jobs: stopped")
