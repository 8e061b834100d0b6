"""Senders behind one interface: SMTP (the standard library's smtplib) and a signed JSON webhook.

Each carries the message's idempotency key (``Message-ID`` and ``X-CRM-Idempotency-Key`` on
e-mail, ``Idempotency-Key`` on the webhook), so a message resent after a worker died between
sending and marking it sent is recognisably the same message. Errors raise
:class:`SendError` with a short reason that names no recipient and no content.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate, parseaddr
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

SMTP_TIMEOUT_SECONDS = 15
WEBHOOK_TIMEOUT_SECONDS = 10
SIGNATURE_HEADER = "X-CRM-Signature"
TIMESTAMP_HEADER = "X-CRM-Timestamp"


class SendError(Exception):
    """A message could not be delivered this time; the text is a reason code, never content."""


@dataclass(frozen=True)
class Outgoing:
    """What a sender needs of one outbox row, with any sealed link already filled in."""

    key: str
    recipient: str | None
    subject: str
    body: str


class Sender(Protocol):
    """Delivers outgoing messages of one channel; may keep a connection open between them."""

    def send(self, message: Outgoing) -> None: ...

    def close(self) -> None: ...


def message_id(key: str, sender: str) -> str:
    """A stable ``Message-ID`` for an idempotency key (hashed: keys name internal ids)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "crm.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to submit mail, read from ``smtp://user:password@host:port?starttls=1`` or ``smtps://…``."""

    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """Parse an SMTP URL; raise ``ValueError`` for another scheme or a missing host."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("CRM_SMTP_URL must look like smtp://user:password@host:587?starttls=1 or smtps://…")
        flags = parse_qs(parts.query)
        starttls = flags.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
        implicit = parts.scheme == "smtps"
        return cls(parts.hostname, parts.port or (465 if implicit else 587 if starttls else 25),
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, implicit, starttls and not implicit)


class SmtpSender:
    """Submits e-mail over one reused SMTP connection, reconnecting after any failure."""

    def __init__(self, settings: SmtpSettings, mail_from: str):
        self.settings, self.mail_from = settings, mail_from
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s, context = self.settings, ssl.create_default_context()
        if s.implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=SMTP_TIMEOUT_SECONDS)
            if s.starttls:
                smtp.starttls(context=context)
        if s.username:
            smtp.login(s.username, s.password or "")
        return smtp

    def send(self, message: Outgoing) -> None:
        """Submit one e-mail; a dropped connection is re-opened once before giving up."""
        email = self.compose(message)
        for attempt in (1, 2):
            try:
                if self._smtp is None:
                    self._smtp = self._connect()
                self._smtp.send_message(email)
                return
            except smtplib.SMTPServerDisconnected:
                self.close()
                if attempt == 2:
                    raise SendError("smtp_disconnected") from None
            except (smtplib.SMTPException, OSError) as exc:
                self.close()
                code = getattr(exc, "smtp_code", None)
                raise SendError(f"smtp_{type(exc).__name__}{f'_{code}' if code else ''}") from None

    def compose(self, message: Outgoing) -> MIMEText:
        """The e-mail: plain UTF-8 text, the idempotency key in ``Message-ID`` and its own header.

        Built with the ``compat32`` classes, which skip the modern policy's header parsing
        (the costliest step of building a message); non-ASCII header text is RFC 2047 encoded.
        """
        email = MIMEText(message.body, "plain", "utf-8")
        for name, value in (("From", self.mail_from), ("To", message.recipient or ""),
                            ("Subject", message.subject), ("Date", formatdate(localtime=False)),
                            ("Message-ID", message_id(message.key, self.mail_from)),
                            ("X-CRM-Idempotency-Key", hashlib.sha256(message.key.encode()).hexdigest()),
                            ("Auto-Submitted", "auto-generated")):
            email[name] = value if value.isascii() else Header(value, "utf-8").encode()
        return email

    def close(self) -> None:
        """Say goodbye to the server, if connected."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``: what a receiver recomputes to trust a POST."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


class WebhookSender:
    """POSTs the message's JSON body to the team-chat webhook, signed with an HMAC header."""

    def __init__(self, url: str, secret: str):
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("CRM_ALERT_WEBHOOK_URL must be an http(s) URL")
        if not secret:
            raise ValueError("CRM_ALERT_WEBHOOK_SECRET is required with CRM_ALERT_WEBHOOK_URL")
        self.url, self.secret = url, secret

    def send(self, message: Outgoing) -> None:
        """POST once; any status other than 2xx is a failure to retry."""
        body, timestamp = message.body.encode(), str(int(time.time()))
        request = urllib.request.Request(self.url, data=body, method="POST", headers={  # noqa: S310 # nosec B310  # scheme checked: http(s)
            "Content-Type": "application/json", "Idempotency-Key": hashlib.sha256(message.key.encode()).hexdigest(),
            TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            "User-Agent": "intake-crm-alerts"})
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310 # nosec B310  # scheme checked: http(s)
                status = response.status
        except urllib.error.HTTPError as exc:
            raise SendError(f"webhook_http_{exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SendError(f"webhook_{type(exc).__name__}") from None
        if not 200 <= status < 300:
            raise SendError(f"webhook_http_{status}")

    def close(self) -> None:
        """Nothing to close: each POST is its own request."""
