"""Intake CRM: confidential patient enquiries to scheduled patients."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from . import (
    access,
    admin,
    alerts,
    auth,
    cli,
    crypto,
    database,
    errors,
    forms,
    headers,
    i18n,
    leads,
    logs,
    public,
    reports,
    restore,
    sessions,
    settings,
    templating,
)
from .limits import limiter
from .models import db


def create_app(test_config: dict[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Build the application: config layers, keys, database, security, blueprints, CLI."""
    instance_path = instance_path or os.environ.get("CRM_INSTANCE_PATH")
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    settings.load(app, test_config)
    logs.init_app(app)
    register_keys(app)
    database.init_app(app)
    restore.init_app(app)
    headers.init_app(app)
    forms.init_app(app)
    limiter.init_app(app)
    sessions.init_app(app)
    access.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(leads.bp)
    app.register_blueprint(admin.bp)
    i18n.init_app(app)
    app.register_blueprint(reports.bp)
    app.register_blueprint(alerts.bp)
    templating.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    _release_connections(app)
    return app


def _release_connections(app: Flask) -> None:
    """Close every connection start-up opened: ``gunicorn --preload`` forks workers after this, and two
    workers sharing one inherited connection would corrupt each other's transactions."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def register_keys(app: Flask) -> None:
    """Load the keyring and the blind indexer into ``app.extensions``."""
    ring = settings.load_keyring(app, holds_encrypted_data=lambda: database.holds_encrypted_data(app))
    app.extensions["crm_keyring"] = ring
    bits = crypto.index_bits(int(app.config["BLIND_INDEX_ROWS"]))
    app.extensions["crm_indexer"] = crypto.BlindIndexer(ring.index_key, bits)
