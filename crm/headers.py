"""Request ids and the security headers every response carries.

The CSP allows no inline script or style and no third-party origin; ``data:`` images carry
the locally rendered enrolment QR code. HSTS goes out whenever the app is served over
HTTPS; behind a TLS-terminating proxy set ``PROXY_FIX`` (and ``TRUSTED_PROXIES``) so the
forwarded scheme and client address are trusted from that proxy alone (see ``crm.proxies``).
"""

from __future__ import annotations

import uuid

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import SecurityError

from .proxies import TrustedProxies, parse_networks

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


def assign_request_id() -> None:
    """Give each request an id for logs and audit events."""
    g.request_id = str(uuid.uuid4())


def set_security_headers(response: Response) -> Response:
    """Add CSP, framing, sniffing, referrer and caching headers to every response."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), interest-cohort=()"
    if request.is_secure or current_app.config["HTTPS"]:
        headers["Strict-Transport-Security"] = HSTS
    if request.endpoint != "static":
        # Staff pages and every response that may carry PHI must never be cached.
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    if g.get("request_id"):
        headers["X-Request-Id"] = g.request_id
    return response


def refuse_untrusted_host(_error: SecurityError) -> Response:
    """A Host header outside ``TRUSTED_HOSTS``: a plain 400 (the page template would build links from it)."""
    return Response("This host name is not served here.\n", 400, mimetype="text/plain")


def init_app(app: Flask) -> None:
    """Install request ids, security headers, the trusted-host refusal and, when configured, ProxyFix."""
    app.register_error_handler(SecurityError, refuse_untrusted_host)
    proxies = int(app.config["PROXY_FIX"])
    if proxies:
        networks = parse_networks(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = TrustedProxies(app.wsgi_app, proxies, networks)  # type: ignore[method-assign]
    app.before_request(assign_request_id)
    app.after_request(set_security_headers)
