"""Staff account commands."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from ..models import Role, db
from ..operations.users import AccountError
from ..operations.users import create_user as create_account


def _stdin_is_tty() -> bool:
    """True when a person is typing, so the password is prompted for instead of read."""
    return sys.stdin.isatty()


def _read_password() -> str:
    """Prompt twice with echo off, or read one line from stdin for automation."""
    if _stdin_is_tty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


@click.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@with_appcontext
def create_user(email: str, role: str) -> None:
    """Create a staff account; the password comes from a prompt, or stdin when not a TTY."""
    password = _read_password()
    try:
        user = create_account(email, Role(role), password=password)
    except AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"Created {user.role} account {user.email}.")
