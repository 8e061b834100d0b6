"""Per-IP rate limits (Flask-Limiter): memory by default, Redis via CRM_RATELIMIT_STORAGE_URI."""

from __future__ import annotations

import time

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.wrappers import Response

#: No X-RateLimit-* headers: a patient's browser has no use for them, and reading the window
#: for them costs storage round trips on every submission. A refusal says when to retry.
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=False)


def enquiry_limit() -> str:
    """The configured allowance of accepted enquiries per IP (``ENQUIRY_RATE_LIMIT``)."""
    return current_app.config["ENQUIRY_RATE_LIMIT"]


def counts_as_submission(response: Response) -> bool:
    """Only accepted submissions use the allowance, so fixing mistakes never locks a patient out."""
    return response.status_code == 303


def retry_after_seconds() -> int | None:
    """Seconds until the limit this request broke lets the address through again (None if none did)."""
    limit = limiter.current_limit
    if limit is None or not limit.breached:
        return None
    return max(1, int(limit.reset_at - time.time()))
