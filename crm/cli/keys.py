"""Key management commands: status, add, promote, retire and rotate-keys."""

import click


@click.group("keys")
def keys() -> None:
    """Inspect and manage the master keys in the keyring."""


@click.command("rotate-keys")
def rotate_keys() -> None:
    """Re-wrap every lead's data key under the primary master key."""
    raise click.ClickException("not built yet")
