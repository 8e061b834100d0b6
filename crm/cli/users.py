"""Staff account commands."""

import click
from flask.cli import with_appcontext


@click.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "coordinator"]), required=True)
@with_appcontext
def create_user(email: str, role: str) -> None:
    """Create a staff account; the password comes from a prompt, or stdin when not a TTY."""
    raise click.ClickException("not built yet")
