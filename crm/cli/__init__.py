"""``flask --app crm …`` commands, one module per concern."""

from flask import Flask

from . import audit, demo, emergency, jobs, keys, leads, privacy, users


def init_app(app: Flask) -> None:
    """Register every command group."""
    app.cli.add_command(users.create_user)
    app.cli.add_command(keys.keys)
    app.cli.add_command(keys.rotate_keys)
    app.cli.add_command(demo.seed_demo)
    app.cli.add_command(audit.audit)
    app.cli.add_command(privacy.privacy_group)
    app.cli.add_command(privacy.retention_group)
    app.cli.add_command(privacy.backup_group)
    app.cli.add_command(leads.leads)
    app.cli.add_command(jobs.jobs)
    app.cli.add_command(emergency.break_glass)
