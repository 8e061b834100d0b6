"""Browser-test support: a live server thread, Playwright on Debian's Chromium, axe-core.

Tests using these fixtures skip with a clear reason where Chromium, Playwright or
axe-core (``npm ci``) is absent.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[1] / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1366, "height": 900}


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """Serve ``app`` on a free localhost port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium():
    """A headless Debian Chromium driven by Playwright, or a skip naming what is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def new_page(chromium, viewport: dict):
    """Open a page in a fresh context; CSP bypass lets axe-core be injected."""
    context = chromium.new_context(viewport=viewport, bypass_csp=True)
    return context.new_page()


def axe_violations(page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core on the page and return violations of the given impacts."""
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci)")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in impacts]


def assert_accessible(page, where: str = "") -> None:
    """No serious or critical axe-core violation on the page (``where`` names it in the failure)."""
    violations = axe_violations(page)
    assert not violations, (where, [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in violations])


def sign_in_page(page, base_url: str, email: str, password: str, lands_on: str) -> None:
    """Sign in through the real form and wait for the page it lands on (a URL glob such as ``**/reports/``)."""
    page.goto(f"{base_url}/auth/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lands_on)
