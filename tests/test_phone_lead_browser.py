"""A coordinator takes a call in a real browser: new lead, the match found, the call added to it;
then corrects a phone number and merges two records of the same person. axe-core finds nothing serious."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from crm.models import ContactAttempt, Lead, db
from tests import sentinels
from tests.auth_helpers import PASSWORD, PASSWORD_HASH
from tests.browser import DESKTOP, assert_accessible, new_page


@pytest.fixture
def config(config):
    """The browser posts real forms, so CSRF protection stays on."""
    return {**config, "WTF_CSRF_ENABLED": True}


def test_take_a_call_correct_a_phone_and_merge(app, live_server, chromium, make_user, make_lead):
    make_user(email="casey@clinic.test", display_name="Casey", password_hash=PASSWORD_HASH)
    lead_id = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, phone=sentinels.PHONE,
                        dob=dt.date(1980, 5, 4), reference="AAAA-2345")
    twin_id = make_lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, email=sentinels.EMAIL,
                        dob=dt.date(1980, 5, 4), reference="BBBB-2345")
    page = new_page(chromium, DESKTOP)
    page.goto(f"{live_server}/auth/login")
    page.fill("#email", "casey@clinic.test")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/leads/home")

    page.click("nav >> text=New lead")
    page.wait_for_url("**/leads/new")
    assert_accessible(page, "new lead")
    page.check("input[name=source][value=phone]")
    page.fill("#first_name", sentinels.FIRST_NAME)
    page.fill("#last_name", sentinels.LAST_NAME)
    page.fill("#dob", "1980-05-04")
    page.fill("#phone", "949.555.0142")
    page.check("input[name=coverage_type][value=self_pay]")
    page.check("#verbal_consent")
    page.fill("#note", "Called about Spravato")
    page.click("button:has-text('Create lead')")
    page.wait_for_selector("text=This person may already have a lead")
    assert "Zebulonia Q." in page.content() and sentinels.PHONE not in page.inner_text("#matches")
    assert_accessible(page, "match screen")
    assert page.locator("#matches tbody tr").count() == 2  # the phone's lead, and the twin by name + DOB
    page.locator("#matches tr:has-text('AAAA-2345') button:has-text('Add this call to this lead')").click()
    page.wait_for_selector("text=Call added to this lead.")
    assert f"/leads/{lead_id}" in page.url

    page.click("text=Correct details")
    page.wait_for_url(f"**/leads/{lead_id}/edit")
    assert_accessible(page, "correct details")
    page.fill("#phone", "(714) 555-0199")
    page.click("button:has-text('Save corrections')")
    page.wait_for_selector("text=Saved: phone changed.")
    assert "Phone changed by Casey" in page.content()

    page.click("summary:has-text('Merge')")
    page.fill("#other", "bbbb2345")
    page.check("#confirm")
    page.click("#merge button:has-text('Merge')")
    page.wait_for_selector("text=The two records are merged into this lead.")
    assert_accessible(page, "lead after merge")
    page.goto(f"{live_server}/leads/{twin_id}")
    page.wait_for_url(f"**/leads/{lead_id}")

    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert lead.phone == "(714) 555-0199" and lead.email == sentinels.EMAIL
        assert db.session.get(Lead, twin_id).merged_into_id == lead_id
        assert db.session.scalar(select(db.func.count(Lead.id))) == 2
        assert db.session.scalars(select(ContactAttempt)).one().note == "Called about Spravato"
