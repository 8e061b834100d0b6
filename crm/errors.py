"""Error pages: generic, calm, no traceback and no PHI; every failure rolls back."""

from __future__ import annotations

import sqlite3

from flask import Flask, current_app, g, render_template
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, InternalError, OperationalError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, ServiceUnavailable

from .limits import retry_after_seconds
from .settings import ConfigError, is_production


def render_http_error(error: HTTPException):
    """Render the error page for an HTTP error, rolling back any half-done work."""
    from .models import db

    db.session.rollback()
    code = error.code or 500
    template = "errors/staff_error.html" if code in STAFF_CODES and staff_signed_in() else "errors/error.html"
    return render_template(template, code=code), code


#: Errors a signed-in staff member sees in the staff layout, with a way back to the workspace.
STAFF_CODES = (403, 404, 500)


def staff_signed_in() -> bool:
    """True when a staff member is signed in; never raises (a failing user load means the public page)."""
    from flask_login import current_user

    try:
        return bool(current_user.is_authenticated)
    except Exception:  # noqa: BLE001 - the error page must render whatever broke the request
        return False


def render_rate_limited(error: RateLimitExceeded):
    """The 429 page, with a Retry-After header saying when this address may send again."""
    page, code = render_http_error(error)
    retry = retry_after_seconds()
    return page, code, {"Retry-After": str(retry)} if retry else {}


def render_database_down(error: DBAPIError | sqlite3.OperationalError):
    """The database is unreachable, locked, read-only or full: 503 with the clinic's phone, nothing partial kept.

    OperationalError covers lost connections, locks and full disks; InterfaceError a broken driver
    connection; InternalError a database that refuses writes (PostgreSQL's read-only transaction,
    SQLSTATE 25006) or a transaction it cannot finish. SQLite's COMMIT runs on the driver connection
    (see ``database``), so a disk that refuses the commit raises the driver's own error, unwrapped.
    """
    cause = getattr(error, "orig", None) or error
    current_app.logger.error("database unavailable (%s) in request %s", type(cause).__name__,
                             g.get("request_id", "-"))
    # The page must not load the signed-in user (Flask-Login's template context would): that needs the
    # very database that just failed, and a second failure inside this handler would become a bare 500.
    g._login_user = current_app.login_manager.anonymous_user()
    return render_http_error(ServiceUnavailable())


def render_unstorable_value(error: DataError):
    """A value the database cannot hold (a NUL byte in PostgreSQL text): a 400, nothing kept.

    Forms refuse such values with a field message first; this is the net under every other field.
    """
    current_app.logger.warning("value refused by the database (%s) in request %s", type(error.orig).__name__,
                               g.get("request_id", "-"))
    return render_http_error(BadRequest())


def render_unexpected(error: Exception):
    """Log the failure by type and request id only (no values, no PHI) and show the 500 page."""
    current_app.logger.error("unhandled %s in request %s", type(error).__name__, g.get("request_id", "-"))
    return render_http_error(InternalServerError())


def init_app(app: Flask) -> None:
    """Register the error handlers; refuse to run production with the debugger (it would show tracebacks)."""
    if is_production(app) and app.debug:
        raise ConfigError("DEBUG is on in production mode; unset FLASK_DEBUG and CRM_DEBUG")
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(RateLimitExceeded, render_rate_limited)
    app.register_error_handler(OperationalError, render_database_down)
    app.register_error_handler(InterfaceError, render_database_down)
    app.register_error_handler(InternalError, render_database_down)
    app.register_error_handler(sqlite3.OperationalError, render_database_down)
    app.register_error_handler(DataError, render_unstorable_value)
    app.register_error_handler(Exception, render_unexpected)
