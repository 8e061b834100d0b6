"""Error pages for signed-in staff: the staff layout with a way back to the workspace, no trace, no PHI."""

from __future__ import annotations

import html
import uuid

import pytest

from tests import sentinels

BACK = "Back to the workspace"


@pytest.fixture
def live_config(config):
    """TESTING off, as in a real deployment, so a raising view reaches the last-resort handler."""
    config.update(TESTING=False, AUTO_MIGRATE=False)
    return config


@pytest.fixture
def staff(client, make_user, login_as):
    login_as(client, make_user(display_name="Casey Coordinator"))
    return client


def test_a_missing_lead_shows_the_staff_404(staff):
    response = staff.get(f"/leads/{uuid.uuid4()}")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and "We couldn't find that page" in html.unescape(page)
    assert BACK in page and 'href="/leads/home"' in page and "Casey Coordinator" in page
    assert "This form is not monitored" not in page


def test_a_refused_page_shows_the_staff_403(staff):
    response = staff.get("/admin/users")
    page = response.get_data(as_text=True)
    assert response.status_code == 403 and BACK in page and "ask an administrator" in page


def test_a_failing_staff_view_shows_the_staff_500_without_a_trace(live_config, request, make_user, login_as):
    app = request.getfixturevalue("app")

    def failing():
        raise RuntimeError(f"lookup failed for {sentinels.EMAIL}")

    app.add_url_rule("/leads/failing", "leads.failing_probe", failing)
    client = app.test_client()
    login_as(client, make_user(display_name="Casey Coordinator"))
    response = client.get("/leads/failing")
    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "Something went wrong on our side" in page and BACK in page
    for trace in ("Traceback", "RuntimeError", "lookup failed", sentinels.EMAIL):
        assert trace not in page


def test_the_public_still_gets_the_public_error_page(client):
    response = client.get("/no-such-page")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and BACK not in page and "We couldn't find that page" in html.unescape(page)
