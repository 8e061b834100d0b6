"""The senders on their own: SMTP URLs, SMTP authentication against a real server, headers, the webhook's rules."""

from __future__ import annotations

import email
import email.policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from crm.jobs.senders import Outgoing, SendError, SmtpSender, SmtpSettings, WebhookSender, message_id
from tests.outgoing import SmtpSink, free_port


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mail.example", ("mail.example", 25, None, None, False, False)),
    ("smtp://u%40clinic:p%2Fw@mail.example:2525?starttls=1", ("mail.example", 2525, "u@clinic", "p/w", False, True)),
    ("smtp://mail.example?starttls=true", ("mail.example", 587, None, None, False, True)),
    ("smtps://user:secret@mail.example", ("mail.example", 465, "user", "secret", True, False)),
])
def test_smtp_urls(url, expected):
    settings = SmtpSettings.from_url(url)
    assert (settings.host, settings.port, settings.username, settings.password, settings.implicit_tls,
            settings.starttls) == expected


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "mail.example:25"])
def test_bad_smtp_urls_are_refused(url):
    with pytest.raises(ValueError):
        SmtpSettings.from_url(url)


def test_smtp_login_uses_the_url_credentials_and_headers_carry_the_key():
    seen: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"right horse")

    sink, port = SmtpSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    try:
        sender = SmtpSender(SmtpSettings.from_url(f"smtp://alerts:right%20horse@127.0.0.1:{port}"),
                            "Intake alerts <alerts@clinic.test>")
        sender.send(Outgoing("urgent:abc|u1|email", "staff@clinic.test", "Urgent enquiry ABCD-EFGH — now", "Body"))
        sender.close()
    finally:
        controller.stop()
    assert seen[0] == (b"alerts", b"right horse")
    [message] = [email.message_from_bytes(raw, policy=email.policy.default) for raw in sink.raw]
    assert message["Subject"] == "Urgent enquiry ABCD-EFGH — now"  # non-ASCII survives (RFC 2047)
    assert message["Message-ID"] == message_id("urgent:abc|u1|email", "alerts@clinic.test")
    assert message["Message-ID"].endswith("@clinic.test>") and "urgent" not in message["Message-ID"]
    assert message["Auto-Submitted"] == "auto-generated"


def test_webhook_needs_an_http_url_and_a_secret():
    with pytest.raises(ValueError):
        WebhookSender("file:///etc/passwd", "secret")
    with pytest.raises(ValueError):
        WebhookSender("https://chat.example/hook", "")
    with pytest.raises(SendError, match="webhook_"):
        WebhookSender(f"http://127.0.0.1:{free_port()}/hook", "secret").send(Outgoing("k", None, "S", "{}"))
