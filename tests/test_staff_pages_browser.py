"""Every staff page in a real browser, at 1280 and 1366 px, filled with 2,000 demo leads and a lead with long
values: nothing scrolls sideways, no table spills out of its box, axe-core finds no violation of any impact,
and every focus ring has at least 3:1 contrast against the colours around it.

The pages come from ``app.url_map``: a staff GET endpoint added without a visit here (or a reason to skip
it in ``DOWNLOADS``) fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import url_for

from tests import staff_pages
from tests.auth_helpers import give_totp, session_cookie
from tests.browser import axe_violations

pytestmark = pytest.mark.browser

WIDTHS = (1280, 1366)
HEIGHT = 900
#: Staff GET endpoints that answer with a file, not a page, so there is no layout to check.
DOWNLOADS = {
    "leads.calendar_file": "an .ics calendar event",
    "reports.export": "a CSV report table",
    "leads.export_copy": "the patient's copy, a self-contained HTML attachment opened outside the app",
    "leads.card": "an insurance card image",
}
#: Sign-in pages staff reach before they are signed in (the other allowlisted pages are the patient's).
STAFF_BEFORE_SIGN_IN = {"auth.login", "auth.accept_invitation"}
MIN_FOCUS_CONTRAST = 3.0
#: The home page with 2,000 leads can take a while on a busy CI machine; a hang still fails.
NAVIGATION_MS = 90_000

FOCUS_RING_CONTRASTS = (Path(__file__).parent / "focus_rings.js").read_text(encoding="utf-8")

OVERFLOWING_TABLES = """
() => [...document.querySelectorAll('table')].filter(t => {
  const box = t.parentElement.getBoundingClientRect(), r = t.getBoundingClientRect();
  return r.right > box.right + 1 || t.scrollWidth > t.clientWidth + 1;
}).map(t => (t.id || t.className || 'table') + ' ' + Math.round(t.getBoundingClientRect().width) + 'px in '
             + Math.round(t.parentElement.getBoundingClientRect().width) + 'px')
"""


@pytest.fixture
def workspace(app, runner, make_user):
    """The demo workspace (see :mod:`tests.staff_pages`)."""
    return staff_pages.build(app, runner, make_user)


def staff_get_endpoints(app) -> set[str]:
    """Every GET endpoint a member of staff opens: all but static files and the patient's public pages."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    public = {e for e in endpoints if e == "static" or getattr(app.view_functions[e], "is_public", False)}
    patient = {e for e in public if e.startswith("public.") or e == "static"}
    assert public - patient == STAFF_BEFORE_SIGN_IN, "a new allowlisted page: is it a staff page or a patient's?"
    return endpoints - patient


def visits(space: staff_pages.Workspace) -> list[tuple[str, str, dict]]:
    """(who, endpoint, URL values) for each page to open; admins see nearly everything."""
    lead, demo, erased = space.lead_id, space.demo_lead_id, space.erased_lead_id
    admin = [
        ("leads.home", {}), ("leads.index", {}),
        ("leads.detail", {"lead_id": lead}), ("leads.detail", {"lead_id": demo}), ("leads.detail", {"lead_id": erased}),
        ("leads.edit", {"lead_id": lead}), ("leads.new_lead", {}), ("leads.search", {}),
        ("admin.users", {}), ("admin.user", {"user_id": space.users["coordinator"].id}), ("admin.user_new", {}),
        ("admin.audit", {}), ("admin.lead_access", {"lead_id": lead}), ("admin.import_leads", {}),
        ("alerts.index", {}), ("alerts.failed", {}), ("alerts.on_call", {}),
        ("auth.account", {}), ("auth.change_password", {}), ("auth.reauth", {}),
    ]
    others = [
        ("coordinator", "leads.home", {}), ("coordinator", "leads.detail", {"lead_id": lead}),
        ("coordinator", "alerts.index", {}), ("coordinator", "auth.enrol", {}),
        ("clinician", "leads.home", {}), ("clinician", "leads.detail", {"lead_id": lead}),
        ("manager", "reports.index", {}),
        ("admin_second_step", "auth.second_factor", {}), ("admin_second_step", "auth.recovery", {}),
        ("nobody", "auth.login", {}), ("nobody", "auth.accept_invitation", {"token": space.invitation_token}),
        ("nobody", "auth.accept_invitation", {"token": "no-such-invitation"}),
    ]
    return [("admin", endpoint, values) for endpoint, values in admin] + others


def session_cookies(app, space, login_as) -> dict[str, str | None]:
    """A signed-in session cookie for each kind of visitor (``nobody`` has none)."""
    give_totp(app, space.users["admin"])
    cookies: dict[str, str | None] = {"nobody": None}
    for who, user, second_factor in (("admin", "admin", True), ("admin_second_step", "admin", False),
                                     ("coordinator", "coordinator", True), ("clinician", "clinician", True),
                                     ("manager", "manager", True)):
        client = app.test_client()
        login_as(client, space.users[user], second_factor=second_factor)
        cookies[who] = session_cookie(app, client)
    return cookies


def page_problems(page, where: str) -> list:
    """Sideways scrolling, spilling tables and axe-core violations (any impact) on the page as it is now."""
    problems = []
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        problems.append((where, "scrolls sideways", scroll, inner))
    if spilled := page.evaluate(OVERFLOWING_TABLES):
        problems.append((where, "tables wider than their box", spilled))
    violations = axe_violations(page, impacts=("minor", "moderate", "serious", "critical"))
    problems += [(where, v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5], len(v["nodes"]))
                 for v in violations]
    return problems


def focus_problems(page, where: str) -> list:
    """Focus rings missing or under 3:1 against the colours beside them."""
    rings = page.evaluate(FOCUS_RING_CONTRASTS)
    assert rings, f"{where}: nothing focusable was checked"
    return [(where, ring["element"], ring["ratio"], ring.get("why", "")) for ring in rings
            if ring["ratio"] < MIN_FOCUS_CONTRAST]


def become(context, app, live_server: str, cookie: str | None) -> None:
    """Swap the browser's session cookie for ``cookie`` (none: signed out)."""
    context.clear_cookies()
    if cookie:
        context.add_cookies([{"name": app.config["SESSION_COOKIE_NAME"], "value": cookie, "url": live_server}])


def check_page(page, where: str) -> list:
    """Layout and axe-core at each width, then the focus rings (after a Tab, so focus shows as from a keyboard)."""
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        problems += page_problems(page, f"{where} at {width}px")
    page.keyboard.press("Tab")
    problems += focus_problems(page, where)
    page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})
    return problems


def test_every_staff_page_fits_and_is_accessible(app, live_server, chromium, workspace, login_as):
    planned = visits(workspace)
    unvisited = staff_get_endpoints(app) - set(DOWNLOADS) - {endpoint for _, endpoint, _ in planned}
    assert not unvisited, f"staff pages this test does not open yet: {sorted(unvisited)}"
    cookies = session_cookies(app, workspace, login_as)
    context = chromium.new_context(viewport={"width": WIDTHS[0], "height": HEIGHT}, bypass_csp=True)
    page = context.new_page()
    page.set_default_navigation_timeout(NAVIGATION_MS)
    problems, current = [], None
    for who, endpoint, values in planned:
        if who != current:
            become(context, app, live_server, cookies[who])
            current = who
        with app.test_request_context():
            path = url_for(endpoint, **values)
        response = page.goto(live_server + path)
        expected = 404 if values.get("token") == "no-such-invitation" else 200
        assert (response.status, page.url) == (expected, live_server + path), (who, path)
        problems += check_page(page, f"{who} {path}")
    context.close()
    assert not problems, "\n".join(map(repr, problems))
