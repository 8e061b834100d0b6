"""Real receivers for outgoing messages: an SMTP server (aiosmtpd) and an HTTP webhook receiver,
each on a loopback port the test starts, keeping every message exactly as it arrived."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import phi_sentinels_in


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts (raw bytes and parsed).

    ``stop()`` and ``start()`` take it down and bring it back on the same port; ``on_data`` may
    hold a delivery open (an ``async`` callable run before the server answers 250).
    """

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.raw: list[bytes] = []
        self.received = threading.Event()
        self.on_data: Callable[[], object] | None = None
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.raw.append(bytes(envelope.original_content or envelope.content))
        self.received.set()
        if self.on_data is not None:
            await self.on_data()
        return "250 Message accepted"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in self.raw]

    def keys(self) -> list[str]:
        """The idempotency key of every delivery, in arrival order (repeats included)."""
        return [m["X-CRM-Idempotency-Key"] for m in self.messages]

    def texts(self) -> list[str]:
        """Every delivery as text: headers and decoded body."""
        return [raw.decode("utf-8", "replace") + "\n" + m.get_content() for raw, m in zip(self.raw, self.messages,
                                                                                        strict=True)]


async def hold(seconds: float) -> None:
    """An ``on_data`` hook that keeps the sender waiting for its 250."""
    await asyncio.sleep(seconds)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording each POST's headers and body; answers ``status``."""

    def __init__(self):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def payloads(self) -> list[dict]:
        return [json.loads(body) for _headers, body in self.requests]

    def texts(self) -> list[str]:
        return [json.dumps(headers) + body.decode() for headers, body in self.requests]


@pytest.fixture
def sink():
    """A real SMTP server on a loopback port; no delivery may carry PHI."""
    server = SmtpSink().start()
    yield server
    server.stop()
    assert not phi_sentinels_in(server.texts()), "PHI sentinel in an e-mail"


@pytest.fixture
def receiver():
    """A real HTTP server taking the webhook's POSTs; none may carry PHI."""
    server = WebhookReceiver().start()
    yield server
    server.stop()
    assert not phi_sentinels_in(server.texts()), "PHI sentinel in a webhook POST"
