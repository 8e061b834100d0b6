"""A manager in a real browser: sign in, open Reports, switch to the last 30 days, read the funnel
chart and its table, export CSV; axe-core finds nothing serious or critical."""

from __future__ import annotations

import datetime as dt

import pytest

from crm.models import Lead, Role, Stage, db, utcnow
from tests import sentinels
from tests.auth_helpers import PASSWORD, PASSWORD_HASH
from tests.browser import DESKTOP, assert_accessible, new_page, sign_in_page


@pytest.fixture
def config(config):
    """The browser posts the real sign-in form, so CSRF protection stays on."""
    return {**config, "WTF_CSRF_ENABLED": True}


def test_manager_reads_the_funnel_and_exports_it(app, live_server, chromium, make_user):
    make_user(email="morgan@clinic.test", display_name="Morgan", role=Role.MANAGER, password_hash=PASSWORD_HASH)
    with app.app_context():
        now = utcnow()
        for days, stage, step in ((2, Stage.CONVERTED, 6), (10, Stage.CONTACTED, 2), (20, Stage.NEW, 0),
                                  (60, Stage.NEW, 0)):
            db.session.add(Lead(first_name=sentinels.FIRST_NAME, phone=sentinels.PHONE, stage=stage,
                                reached_step=step, created_at=now - dt.timedelta(days=days)))
        db.session.commit()
    page = new_page(chromium, DESKTOP)
    sign_in_page(page, live_server, "morgan@clinic.test", PASSWORD, "**/reports/")
    assert_accessible(page, "reports")

    page.select_option("#period", "last_30")
    page.click("text=Apply")
    page.wait_for_url("**/reports/?period=last_30*")
    chart = page.locator("figure.chart-horizontal svg[aria-labelledby='funnel-title funnel-desc']")
    assert chart.count() == 1 and chart.locator("rect.chart-bar").count() == 7
    assert "New: 3; Contacting: 2; Contacted: 2;" in chart.locator("desc").text_content()  # the 60-day lead is out
    funnel = page.locator("#table-funnel")
    assert funnel.locator("tbody tr").first.inner_text().split("\t")[:2] == ["New", "3"]
    assert sentinels.FIRST_NAME not in page.content() and sentinels.PHONE not in page.content()
    assert_accessible(page, "reports, last 30 days")

    with page.expect_download() as download_info:
        funnel.locator("a.export").click()
    download = download_info.value
    assert download.suggested_filename.startswith("report-funnel-")
    text = open(download.path(), encoding="utf-8").read()
    assert text.splitlines()[1].startswith("New,3,100.0,")
    page.context.close()
