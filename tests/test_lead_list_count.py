"""The lead list shows how many leads match its filters in all, not just the page."""

from __future__ import annotations

import datetime as dt

import pytest

from crm.models import Role, Stage


@pytest.fixture
def staff(client, make_user, login_as):
    user = make_user(role=Role.COORDINATOR)
    login_as(client, user)
    return user


@pytest.mark.parametrize("args,count,text", [
    ({}, 7, "<strong>7</strong> leads match these filters."),
    ({"source": "phone"}, 1, "<strong>1</strong> lead matches these filters."),
    ({"stage": "contacting"}, 2, "<strong>2</strong> leads match these filters."),
    ({"assignee": "me"}, 3, "<strong>3</strong> leads match these filters."),
    ({"stage": "converted"}, 0, "<strong>0</strong> leads match these filters."),
])
def test_list_shows_the_total_for_its_filters_across_pages(app, client, staff, make_lead, args, count, text):
    app.config["LEADS_PAGE_SIZE"] = 2
    start = dt.datetime(2026, 3, 2, 17, 0)
    for n in range(7):
        make_lead(stage=Stage.CONTACTING if n < 2 else Stage.NEW, source="phone" if n == 3 else "web_form",
                  assignee_id=staff.id if n % 2 else None, created_at=start + dt.timedelta(minutes=n))
    html = client.get("/leads/", query_string=args).get_data(as_text=True)
    assert text in html
    assert html.count('<span class="muted ref">') == min(count, 2)  # the page itself still holds one page
