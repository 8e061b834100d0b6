"""Audit log commands: verify the chain and export a signed head."""

import click


@click.group("audit")
def audit() -> None:
    """Verify and checkpoint the audit log."""
