"""Per-IP rate limits (Flask-Limiter): memory by default, Redis via CRM_RATELIMIT_STORAGE_URI."""

from __future__ import annotations

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.wrappers import Response

limiter = Limiter(key_func=get_remote_address, default_limits=[])


def enquiry_limit() -> str:
    """The configured allowance of accepted enquiries per IP (``ENQUIRY_RATE_LIMIT``)."""
    return current_app.config["ENQUIRY_RATE_LIMIT"]


def counts_as_submission(response: Response) -> bool:
    """Only accepted submissions use the allowance, so fixing mistakes never locks a patient out."""
    return response.status_code == 303
