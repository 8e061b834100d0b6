"""The shipped gunicorn configuration and shared rate limits with several workers (issue 12, item 13)."""

from __future__ import annotations

import os
import runpy
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from crm import create_app, crypto
from crm.models import db
from crm.settings import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "gunicorn.conf.py"


def _settings(monkeypatch, **env: str) -> dict:
    for name in [n for n in os.environ if n.startswith("CRM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_the_configuration_uses_threaded_workers_timeouts_and_only_loopback_proxies(monkeypatch):
    conf = _settings(monkeypatch)
    assert conf["worker_class"] == "gthread" and conf["threads"] >= 2
    assert conf["workers"] == 2 and conf["timeout"] == 30 and conf["graceful_timeout"] == 30
    assert conf["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert conf["wsgi_app"] == "wsgi:app" and conf["preload_app"] is True and conf["bind"] == "127.0.0.1:8000"
    assert conf["accesslog"] is None  # patients' addresses are PHI
    assert os.environ["CRM_WORKERS"] == "2"  # the application learns how many workers share the limits


def test_the_configuration_reads_its_overrides(monkeypatch):
    conf = _settings(monkeypatch, CRM_WORKERS="3", CRM_THREADS="8", CRM_BIND="0.0.0.0:9000",
                     CRM_TRUSTED_PROXIES="10.0.0.5")
    assert (conf["workers"], conf["threads"], conf["bind"], conf["forwarded_allow_ips"]) == (
        3, 8, "0.0.0.0:9000", "10.0.0.5")


def _production(config: dict, **extra) -> dict:
    return {**config, "MODE": "production", "BASE_URL": "https://crm.clinic.test",
            "DATABASE_TLS_REASON": "local test database", "RATELIMIT_ENABLED": True, **extra}


def test_production_refuses_in_memory_rate_limits_with_several_workers(config, tmp_path):
    with pytest.raises(ConfigError, match="memory:// count every limit once per worker"):
        create_app(_production(config, WORKERS=2), instance_path=str(tmp_path / "a"))


@pytest.mark.parametrize("extra", [{"WORKERS": 1}, {"WORKERS": 4, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379"}])
def test_production_starts_with_one_worker_or_shared_limits(config, tmp_path, extra):
    app = create_app(_production(config, **extra), instance_path=str(tmp_path / "b"))
    with app.app_context():
        db.engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slow_body(port: int) -> socket.socket:
    """A client that announces a large body and sends only its first bytes."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: 100000\r\n\r\nfirst_name=Sl")
    return sock


@pytest.fixture
def served(tmp_path):
    """gunicorn with the shipped configuration, 2 workers, on a fresh migrated SQLite database."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(CRM_BIND=f"127.0.0.1:{port}", CRM_WORKERS="2", CRM_THREADS="4",
               CRM_INSTANCE_PATH=str(tmp_path / "instance"), CRM_SECRET_KEY=secrets.token_urlsafe(48),
               CRM_KEYRING=crypto.Keyring.generate().to_json(),
               CRM_DATABASE_URL=f"sqlite:///{tmp_path / 'served.sqlite3'}")
    migrated = create_app({"DATABASE_URL": env["CRM_DATABASE_URL"], "SECRET_KEY": env["CRM_SECRET_KEY"],
                           "KEYRING": env["CRM_KEYRING"], "AUTO_MIGRATE": True},
                          instance_path=env["CRM_INSTANCE_PATH"])
    with migrated.app_context():
        db.engine.dispose()
    log = open(tmp_path / "gunicorn.log", "w+")  # noqa: SIM115  (closed below)
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(CONF)], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()  # noqa: S310  (loopback)
            break
        except OSError:
            time.sleep(0.2)
    yield port, log
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_three_slow_request_bodies_do_not_stall_the_health_check(served):
    port, log = served
    slow = [_slow_body(port) for _ in range(3)]
    try:
        time.sleep(0.5)  # let the workers pick the slow requests up
        began = time.monotonic()
        with urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:  # noqa: S310  (loopback)
            assert response.status == 200
        assert time.monotonic() - began < 2
    finally:
        for sock in slow:
            sock.close()
    log.seek(0)
    output = log.read()
    assert "gthread" in output
    assert "memory:// count every limit once per worker" in output  # development warns loudly
