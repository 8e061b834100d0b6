"""``flask --app crm break-glass EMAIL --reason …``: emergency access from the application host."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ..models import db
from ..operations import emergency
from ..operations.users import find_user


@click.command("break-glass")
@click.argument("email")
@click.option("--reason", default="", help="Why normal sign-in cannot be used (kept sealed; may name a patient).")
@click.option("--minutes", type=int, default=emergency.DEFAULT_MINUTES, show_default=True,
              help=f"How long the grant lasts (at most {emergency.MAX_MINUTES}).")
@click.option("--end", "end_now", is_flag=True, help="End the account's emergency access now.")
@with_appcontext
def break_glass(email: str, reason: str, minutes: int, end_now: bool) -> None:
    """Let one staff member sign in without their second factor for a limited time; every admin is alerted."""
    user = find_user(email)
    if user is None:
        raise click.ClickException("no staff account has that e-mail")
    if end_now:
        ended = emergency.end(user)
        db.session.commit()
        click.echo(f"Emergency access ended for {user.email} ({ended} grant{'s' if ended != 1 else ''}).")
        return
    try:
        row = emergency.grant(user, reason, minutes)
    except emergency.EmergencyError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    current_app.logger.warning("emergency access granted: grant %s for user %s until %sZ; all admins alerted",
                               row.id, user.id, row.expires_at.isoformat(timespec="minutes"))
    click.echo(f"Emergency access for {user.email} until {row.expires_at.isoformat(timespec='minutes')}Z UTC. "
               "Every admin is alerted and every request is audited.")
