"""Absolute links for invitations, e-mails and alerts, built from ``BASE_URL``, never the Host header."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app, url_for


def external_url(endpoint: str, **values: Any) -> str:
    """The absolute URL of ``endpoint`` under the configured ``BASE_URL`` (``CRM_BASE_URL``).

    Works outside a request too (the outbox worker). Without ``BASE_URL`` (development only:
    production refuses to start without it) the current request's host is used.
    """
    base = current_app.config["BASE_URL"]
    if not base:
        return url_for(endpoint, _external=True, **values)
    parts = urlsplit(base)
    adapter = current_app.url_map.bind(parts.netloc, script_name=parts.path.rstrip("/") or "/",
                                       url_scheme=parts.scheme)
    return adapter.build(endpoint, values, force_external=True)
