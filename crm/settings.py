"""Configuration layers and the start-up checks that refuse an unsafe deployment.

Layers, later wins: :data:`DEFAULTS` → ``instance/config.py`` → ``CRM_*`` environment
variables → the test config. In development mode a missing secret key and keyring are
generated into ``instance/`` with mode 0600; in production mode they must be provided.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy.engine import make_url
from zxcvbn import zxcvbn

from . import crypto
from .passwords import ESTIMATE_CHARS
from .proxies import parse_networks

DEFAULTS: dict[str, Any] = {
    "MODE": "development",  # or "production"
    "DATABASE_URL": None,  # defaults to instance/crm.sqlite3
    "KEYRING": None,  # JSON document; else KEYRING_FILE
    "KEYRING_FILE": None,  # defaults to instance/keyring.json
    "AUTO_MIGRATE": None,  # defaults to True in development
    "BLIND_INDEX_ROWS": 1_000_000,
    "PHONE_REGION": "US",
    "TIMEZONE": "America/Los_Angeles",
    "REVEAL_MINUTES": 10,  # how long a revealed member ID and card stay visible to that user
    "LEADS_PAGE_SIZE": 50,
    "CLINIC_NAME": "Intake Clinic",
    "CLINIC_PHONE": "(949) 555-0100",
    "CLINIC_ADDRESS": "100 Example Way, Suite 200, Irvine, CA 92618",
    "CLINIC_HOURS": "Monday to Friday, 8 am to 6 pm",
    # opening hours (clinic time) and holidays that speed-to-lead reports measure against
    "OPENING_HOURS": {day: "08:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")},
    "CLINIC_HOLIDAYS": [],  # ISO dates, e.g. ["2026-12-25", "2027-01-01"]
    "LOCAL_CRISIS_LINE": "OC Links (855) 625-4657, 24/7",
    "LOCAL_CRISIS_PHONE": None,  # the number of LOCAL_CRISIS_LINE; when set, the line becomes a tap-to-call link
    "CONSENT_VERSION": "2026-12b",
    "CONSENT_VERSION_ES": "2026-12b-es",  # the Spanish contact-consent wording (crm/forms/public.py)
    "HTTPS": None,  # served over HTTPS: Secure cookies, __Host- prefix, HSTS; True in production
    "PROXY_FIX": 0,  # number of trusted proxies in front (X-Forwarded-For/Proto/Host)
    "TRUSTED_PROXIES": "127.0.0.1,::1",  # addresses or networks whose forwarded headers count
    "BASE_URL": None,  # e.g. https://crm.clinic.example: every absolute link; required in production
    "TRUSTED_HOSTS": None,  # Host headers answered; defaults to BASE_URL's host
    "SESSION_IDLE_MINUTES": 15,
    "SESSION_MAX_HOURS": 12,
    "REQUIRE_TOTP_FOR_ALL": False,
    "SECOND_FACTOR_FOR_PHI": None,  # every role that reads PHI needs a second factor; default on in production
    "SESSION_REAUTH_MINUTES": 5,  # role, password and second-factor changes need recent re-entry
    "INVITATION_HOURS": 72,  # lifetime of a set-password link
    "LOGIN_BACKOFF_AFTER": 5,  # consecutive failures per account before waits start (doubling)
    "LOGIN_BACKOFF_MAX_SECONDS": 900,
    "LOGIN_LOCK_AFTER": 50,  # consecutive failures that lock until an admin unlocks (NIST: <= 100)
    "LOGIN_IP_LIMIT": 30,  # failed attempts per address within the window below
    "LOGIN_IP_WINDOW_MINUTES": 15,
    "RATELIMIT_STORAGE_URI": "memory://",
    # Redis away: count in each worker's memory until it answers again, and never fail a request
    # because the limiter's storage did (a patient's enquiry matters more than an exact count).
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    "RATELIMIT_SWALLOW_ERRORS": True,
    "WORKERS": 1,  # server processes sharing the work (gunicorn.conf.py sets CRM_WORKERS)
    "ENQUIRY_RATE_LIMIT": "10 per hour;3 per minute",
    "ENQUIRY_MIN_FILL_SECONDS": 3,
    "MAX_CONTENT_LENGTH": 12 * 1024 * 1024,
    # Werkzeug 3.1 applies this to its multipart buffer, file parts included: it must exceed one 64 KiB
    # read plus a boundary's worth of carried-over bytes, or card photos over ~64 KiB get a 413.
    "MAX_FORM_MEMORY_SIZE": 256 * 1024,
    "MAX_FORM_PARTS": 200,
    "WTF_CSRF_TIME_LIMIT": 4 * 3600,
    # Referrer-Policy: no-referrer means browsers send no Referer (and Origin: null), so the strict
    # same-site Referer check would refuse every POST over HTTPS. The session-bound token, SameSite
    # cookies and CSP form-action 'self' carry CSRF protection.
    "WTF_CSRF_SSL_STRICT": False,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    # Privacy lifecycle (crm.operations.privacy, crm.retention): counsel owns these numbers.
    "ACCESS_REQUEST_DAYS": 15,  # CA H&S 123110: copies within 15 days of the request
    "RETENTION_NEVER_CONVERTED_DAYS": 730,  # never converted: 24 months after last activity (None: off)
    "RETENTION_DUPLICATE_DAYS": 90,  # closed as a duplicate: 90 days after closing
    "RETENTION_CONVERTED_DAYS": 2555,  # converted patients: 7 years (CA records minimum); None keeps them
    # leads per committed transaction (None: the database's own size, crm.operations.retention.batch_size)
    "RETENTION_BATCH_SIZE": None,
    "RETENTION_PAUSE_SECONDS": 0.02,  # rest between batches, so the workspace's requests get the database in turn
    "RETENTION_TIME": "02:00",  # clinic time the worker starts each day's retention run (None: only the command)
    "RETENTION_SLICE_SECONDS": 10,  # the worker shreds at most this long per round, then sends the outbox again
    "RETENTION_LEASE_SECONDS": 300,  # a worker that died mid-run leaves the rest to another after this
    "ACCESS_REMINDER_WORKING_DAYS": 3,  # admins are reminded of a copy request this many working days before it is due
    "SHRED_LEDGER_FILE": None,  # defaults to instance/shred-ledger.jsonl; keep it off the backup media
    # Alerts and background work (crm.jobs). Links in messages start with BASE_URL, never a request's Host.
    "SMTP_URL": None,  # smtp://user:password@host:587?starttls=1 or smtps://…; unset: e-mail is off
    "MAIL_FROM": None,
    "ALERT_WEBHOOK_URL": None,  # team-chat webhook; JSON POST signed with ALERT_WEBHOOK_SECRET
    "ALERT_WEBHOOK_SECRET": None,
    "FIRST_RESPONSE_MINUTES": 5,  # deadline for the first call during opening hours
    "AFTER_HOURS_GRACE_MINUTES": 15,  # outside them: the next opening plus this
    "CALLBACK_OVERDUE_MINUTES": 30,
    "URGENT_REPEAT_MINUTES": 15,  # an unacknowledged urgent alert repeats this often…
    "URGENT_REPEAT_LIMIT": 4,  # …this many times
    "DIGEST_TIME": "07:30",  # clinic time of the morning digest, on opening days (None: no digest)
    "OUTBOX_MAX_ATTEMPTS": 8,
    "OUTBOX_BACKOFF_SECONDS": 30,  # first retry; doubles each time, at most an hour
    "OUTBOX_LEASE_SECONDS": 120,  # a claimed message is due again after this if its worker died
    "JOBS_POLL_SECONDS": 0.5,
    "JOBS_PERIODIC_SECONDS": 60,
    # Why a production PostgreSQL connection may go without sslmode=verify-full (sslmode=require,
    # or a database on this host); without a reason such a URL refuses to start.
    "DATABASE_TLS_REASON": None,
}

#: log10 of the guesses zxcvbn needs for a secret key: 10^24 is about 80 bits, where a random
#: 32-character key scores 10^29 or more and a repeated alphabet about 10^4.
SECRET_MIN_GUESSES_LOG10 = 24
LOCAL_DATABASE_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}
WEAK_SECRETS = {"dev", "secret", "changeme", "change-me", "development", "test", "you-will-never-guess"}
MIN_SECRET_LENGTH = 32


class ConfigError(SystemExit):
    """A refusal to start: exits with a one-line, actionable message and no traceback."""

    def __init__(self, message: str):
        super().__init__(f"crm: refusing to start: {message}")


def load(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Apply the configuration layers and derive the settings that depend on them."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("CRM")
    if test_config:
        app.config.from_mapping(test_config)
    production = is_production(app)
    if app.config["HTTPS"] is None:
        app.config["HTTPS"] = production
    if app.config["SECOND_FACTOR_FOR_PHI"] is None:
        app.config["SECOND_FACTOR_FOR_PHI"] = production
    if app.config["AUTO_MIGRATE"] is None:
        app.config["AUTO_MIGRATE"] = not production and not app.testing
    instance = Path(app.instance_path)
    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"] or f"sqlite:///{instance / 'crm.sqlite3'}"
    app.config["SESSION_COOKIE_SECURE"] = app.config["HTTPS"]
    app.config["SESSION_COOKIE_NAME"] = "__Host-crm" if app.config["HTTPS"] else "crm"
    app.config["PREFERRED_URL_SCHEME"] = "https" if app.config["HTTPS"] else "http"
    if not production:
        _ensure_instance_secret(app, instance)
    _check_secret_key(app.config["SECRET_KEY"])
    if production:
        _check_database_tls(app.config["SQLALCHEMY_DATABASE_URI"], app.config["DATABASE_TLS_REASON"])
    _check_base_url(app, production)
    _check_proxies(app.config["TRUSTED_PROXIES"])
    _check_rate_limit_storage(app, production)


def is_production(app: Flask) -> bool:
    """True when the app runs in production mode."""
    return app.config["MODE"] == "production"


def _ensure_instance_secret(app: Flask, instance: Path) -> None:
    """Generate ``instance/secret_key`` (0600) on first run when no key was configured."""
    if app.config["SECRET_KEY"]:
        return
    path = instance / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    app.config["SECRET_KEY"] = path.read_text().strip()


def _check_secret_key(key: str | bytes | None) -> None:
    """Refuse a missing key, a well-known placeholder, or one too short or repetitive to be random."""
    if not key:
        raise ConfigError("SECRET_KEY is not set; set CRM_SECRET_KEY to 32+ random bytes")
    text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
    weak = text.lower() in WEAK_SECRETS or len(text) < MIN_SECRET_LENGTH or len(set(text)) < 10
    if weak or _guesses_log10(text) < SECRET_MIN_GUESSES_LOG10:
        raise ConfigError(
            "SECRET_KEY is weak (too short, or a pattern such as a repeated sequence); generate one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )


def _check_base_url(app: Flask, production: bool) -> None:
    """Require an absolute ``BASE_URL`` in production (HTTPS) and answer only its host by default."""
    base = app.config["BASE_URL"]
    if not base:
        if production:
            raise ConfigError("BASE_URL is not set; set CRM_BASE_URL to the address staff use, e.g. "
                              "https://crm.clinic.example (links in invitations and e-mails use it)")
        return
    parts = urlsplit(base)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"BASE_URL {base!r} must be an absolute URL such as https://crm.clinic.example")
    if production and parts.scheme != "https":
        raise ConfigError("BASE_URL must start with https:// in production")
    if app.config["TRUSTED_HOSTS"] is None:
        app.config["TRUSTED_HOSTS"] = [parts.hostname]


def _check_rate_limit_storage(app: Flask, production: bool) -> None:
    """Per-process rate limits multiply by the worker count and reset with each restart: refuse them
    in production when several workers run, and warn loudly in development."""
    storage = str(app.config["RATELIMIT_STORAGE_URI"])
    workers = int(app.config["WORKERS"] or 1)
    if workers <= 1 or not storage.startswith("memory://") or app.config.get("RATELIMIT_ENABLED") is False:
        return
    message = (f"{workers} workers with RATELIMIT_STORAGE_URI=memory:// count every limit once per worker; "
               "set CRM_RATELIMIT_STORAGE_URI=redis://…")
    if production:
        raise ConfigError(message)
    app.logger.warning("WARNING: %s", message)


def _check_proxies(value: Any) -> None:
    try:
        parse_networks(value)
    except ValueError:
        raise ConfigError(f"TRUSTED_PROXIES {value!r} must be IP addresses or networks, comma-separated") from None


def _guesses_log10(secret: str) -> float:
    """zxcvbn's estimate of how many guesses find ``secret`` (its first 72 characters, zxcvbn's cap)."""
    return zxcvbn(secret[:ESTIMATE_CHARS])["guesses_log10"]


def _check_database_tls(url: str, reason: str | None) -> None:
    """Refuse a production PostgreSQL URL that does not verify the server's certificate.

    ``sslmode=verify-full`` passes. ``sslmode=require`` (encrypted, server not verified) and
    a database on this host pass only with ``DATABASE_TLS_REASON`` saying why.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    mode = parsed.query.get("sslmode")
    if mode == "verify-full":
        return
    local = parsed.host in LOCAL_DATABASE_HOSTS or str(parsed.host).startswith("/")
    if reason and reason.strip() and (mode == "require" or local):
        return
    raise ConfigError(
        "the PostgreSQL URL must end in ?sslmode=verify-full (with sslrootcert=… for a private CA); "
        "for sslmode=require or a database on this host, set CRM_DATABASE_TLS_REASON to why"
    )


def load_keyring(app: Flask, holds_encrypted_data: Callable[[], bool] = lambda: False) -> crypto.Keyring:
    """Load the keyring from ``CRM_KEYRING`` or the keyring file, generating one in development.

    A keyring is never generated over a database that already holds encrypted data
    (``holds_encrypted_data``): a new one could only make that data unreadable.
    """
    document = app.config["KEYRING"]
    if document:
        if isinstance(document, dict):  # from_prefixed_env already parsed CRM_KEYRING's JSON
            document = json.dumps(document)
        try:
            return crypto.Keyring.from_json(document)
        except crypto.KeyringError as exc:
            raise ConfigError(f"CRM_KEYRING: {exc}") from None
    path = keyring_path(app)
    if not path.exists():
        if is_production(app):
            raise ConfigError(f"keyring {path} is missing; restore it or set CRM_KEYRING")
        if holds_encrypted_data():
            raise ConfigError(f"keyring {path} is missing but the database holds encrypted data; "
                              "restore the keyring from its backup (a new one could not read that data)")
        crypto.write_keyring_file(path, crypto.Keyring.generate())
    try:
        return crypto.read_keyring_file(path)
    except crypto.KeyringError as exc:
        raise ConfigError(str(exc)) from None


def keyring_path(app: Flask) -> Path:
    """Where the keyring file lives (``instance/keyring.json`` unless configured)."""
    return Path(app.config["KEYRING_FILE"] or Path(app.instance_path) / "keyring.json")


def save_keyring(app: Flask, ring: crypto.Keyring) -> None:
    """Persist a changed keyring to its file; an environment keyring must be updated by hand."""
    if app.config["KEYRING"]:
        raise crypto.KeyringError("the keyring comes from CRM_KEYRING; update that variable instead")
    crypto.write_keyring_file(keyring_path(app), ring)


