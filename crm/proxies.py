"""Forwarded headers believed only from the configured reverse proxies, and only as IP literals.

``ProxyFix`` alone trusts ``X-Forwarded-For`` from whoever connects: with gunicorn reachable
directly, any client could pick the address that sign-in throttling and the audit log see.
Here a request's forwarded headers count only when its peer is one of ``TRUSTED_PROXIES``
(addresses or networks; loopback by default); from anyone else they are dropped. A
forwarded client address that is not an IP literal is ignored (the proxy's own stays).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
             "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str | Iterable[str]) -> list[Network]:
    """``"127.0.0.1, 10.0.0.0/8"`` (or a list) as networks; raises ``ValueError`` on a bad entry."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]


def is_ip_literal(value: str | None) -> bool:
    """True for an IPv4 or IPv6 address written as such (no names, ports or lists)."""
    try:
        ipaddress.ip_address(value or "")
    except ValueError:
        return False
    return True


def _within(address: str | None, networks: list[Network]) -> bool:
    if not is_ip_literal(address):
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in networks)


class _ForwardedAddressMustBeAnIp:
    """Inside ProxyFix: put the proxy's own address back when the forwarded one is not an IP literal."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        if not is_ip_literal(environ.get("REMOTE_ADDR")):
            environ["REMOTE_ADDR"] = environ["werkzeug.proxy_fix.orig"]["REMOTE_ADDR"]
        return self.app(environ, start_response)


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests from trusted proxies, forwarded headers dropped for the rest."""

    def __init__(self, app: Callable, hops: int, networks: list[Network]):
        self.direct = app
        self.proxied = ProxyFix(_ForwardedAddressMustBeAnIp(app), x_for=hops, x_proto=hops, x_host=hops)
        self.networks = networks

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        if _within(environ.get("REMOTE_ADDR"), self.networks):
            return self.proxied(environ, start_response)
        for name in FORWARDED:
            environ.pop(name, None)
        return self.direct(environ, start_response)
