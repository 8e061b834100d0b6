"""A coordinator's day in a real browser: sign in, find a lead by phone, log two attempts,
verify insurance, screen, schedule the callback; axe-core finds nothing serious on the pages."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from crm.models import Callback, Insurance, Lead, Screening, db
from tests import sentinels
from tests.auth_helpers import PASSWORD, PASSWORD_HASH
from tests.browser import DESKTOP, assert_accessible, new_page, sign_in_page


@pytest.fixture
def config(config):
    """The browser posts real forms, so CSRF protection stays on."""
    return {**config, "WTF_CSRF_ENABLED": True}


def test_coordinators_day(app, live_server, chromium, make_user, make_lead):
    make_user(email="casey@clinic.test", display_name="Casey", password_hash=PASSWORD_HASH)
    lead_id = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, phone=sentinels.PHONE,
                        dob=dt.date(1980, 5, 4), email=sentinels.EMAIL)
    page = new_page(chromium, DESKTOP)
    sign_in_page(page, live_server, "casey@clinic.test", PASSWORD, "**/leads/home")
    assert "Zebulonia Q." in page.content() and sentinels.PHONE not in page.content()
    assert_accessible(page)

    page.goto(f"{live_server}/leads/")
    assert_accessible(page)

    page.goto(f"{live_server}/leads/home")
    page.fill("#query", "949.555.0142")
    page.press("#query", "Enter")
    page.wait_for_url(f"**/leads/{lead_id}")
    assert page.locator("a.tel").get_attribute("href") == "tel:+19495550142"
    assert_accessible(page)

    for outcome in ("voicemail_left", "reached"):
        page.select_option("#channel", "call")
        page.select_option("#outcome", outcome)
        page.click("text=Log attempt")
        if outcome == "reached":  # the second attempt within two minutes asks for confirmation first
            page.check("#confirm_repeat")
            page.click("text=Log attempt")
        page.wait_for_selector(".flash-success")
    assert "Stage is now contacted." in page.content()

    page.click("summary:has-text('Verify benefits')")
    page.fill("#carrier", "Aetna")
    page.fill("#member_id", sentinels.MEMBER_ID)
    page.select_option("#vob_status", "verified")
    page.select_option("#vob_outcome", "in_network_no_pa")
    page.fill("#reference_number", "REF-77")
    page.click("text=Save benefits check")
    page.wait_for_selector("text=Benefits check saved.")
    assert sentinels.MEMBER_ID not in page.content()

    page.click("summary:has-text('Screen now')")
    for name in ("adult", "mdd", "transport", "availability"):
        page.select_option(f"#{name}", "yes")
    for name in ("acute_si", "aneurysmal_vascular_disease", "arteriovenous_malformation", "intracerebral_hemorrhage",
                 "hypersensitivity", "caution_bp", "caution_cardio", "caution_psychosis", "caution_pregnancy",
                 "caution_medications"):
        page.select_option(f"#{name}", "no")
    page.select_option("#sud", "none")
    page.fill("#adequate_trials", "2")
    for i in range(9):
        page.select_option(f"#phq9_{i}", "2" if i < 8 else "0")
    for name in ("q1", "q2", "q6"):
        page.select_option(f"#cssrs_{name}", "no")
    page.click("text=Record screening")
    page.wait_for_selector("text=Screening recorded: eligible.")

    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    page.fill("#due_at", f"{tomorrow}T10:30")
    page.click("text=Schedule callback")
    page.wait_for_selector("text=Callback scheduled.")
    assert_accessible(page)

    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert (lead.stage, lead.attempt_count) == ("contacted", 2)
        assert db.session.scalar(select(Insurance.vob_status)) == "verified"
        assert db.session.scalar(select(Screening.outcome)) == "eligible"
        assert db.session.scalar(select(Callback.due_at).where(Callback.done_at.is_(None))) == lead.next_callback_at
