"""A patient fills in the enquiry form in a real browser, on a phone and on a desktop."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crm.models import Enquiry, InsuranceCard, Lead, db
from tests import sentinels as s
from tests.browser import DESKTOP, PHONE, assert_accessible, new_page
from tests.test_public_form import PNG, same_pixels


@pytest.fixture
def browser_config(config):
    """The real thing: CSRF on, as in production."""
    config["WTF_CSRF_ENABLED"] = True
    return config


def fill_as_a_patient(page) -> None:
    """Answer the questions the way a patient would, finding each one by its label."""
    page.get_by_label("First name").fill(s.FIRST_NAME)
    page.get_by_label("Last name").fill(s.LAST_NAME)
    page.get_by_label("Date of birth", exact=False).first.fill("1984-03-09")
    page.get_by_label("Mobile phone").fill(s.PHONE)
    page.get_by_label("E-mail address").fill(s.EMAIL)
    page.get_by_label("ZIP code").fill(s.ZIP_CODE)
    page.locator("#preferred_contact").get_by_label("Text message").check()
    page.get_by_label("It's OK to text me").check()
    page.locator("#interest").get_by_label("Spravato (esketamine)").check()
    page.locator("#concerns").get_by_label("Depression").check()
    page.get_by_label("How did you hear about us?").select_option("doctor")
    page.locator("#need_help_now").get_by_label("No").check()
    page.locator("#coverage_type").get_by_label("PPO").check()
    page.get_by_label("Insurance company").fill("Aetna")
    page.get_by_label("Member ID").fill(s.MEMBER_ID)
    page.locator("#is_policyholder").get_by_label("Yes").check()
    page.get_by_label("Front of your card (optional)").set_input_files(
        {"name": "front.png", "mimeType": "image/png", "buffer": PNG})
    page.get_by_label("Anything else you'd like us to know? (optional)").fill(s.MESSAGE)
    page.get_by_label("may contact me at the number above", exact=False).check()
    page.get_by_label("I have read the privacy notice", exact=False).check()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_patient_fills_the_form_and_sees_the_thank_you_page(browser_config, app, live_server, chromium, viewport):
    page = new_page(chromium, viewport)
    page.goto(f"{live_server}/")
    assert page.get_by_role("heading", name="Ask us about treatment").is_visible()
    assert_accessible(page, "form")

    page.get_by_role("button", name="Send my enquiry").click()
    page.wait_for_selector("#error-summary")
    assert page.locator("#error-summary a[href='#first_name']").inner_text() == "Enter your first name."
    assert page.locator("#first_name").get_attribute("aria-describedby") == "first_name-error"
    assert_accessible(page, "form with errors")

    fill_as_a_patient(page)
    page.get_by_role("button", name="Send my enquiry").click()
    page.wait_for_url(f"{live_server}/thanks")
    assert page.get_by_role("heading", name="Thank you. We have received your enquiry.").is_visible()
    assert s.FIRST_NAME not in page.content()
    assert_accessible(page, "thank-you page")
    page.context.close()

    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        assert (lead.first_name, lead.phone, lead.email) == (s.FIRST_NAME, s.PHONE, s.EMAIL)
        assert db.session.scalar(select(func.count(Enquiry.id))) == 1
        assert same_pixels(db.session.scalars(select(InsuranceCard)).one().content, PNG)


def test_form_reads_at_320px_without_sideways_scrolling(browser_config, live_server, chromium):
    page = new_page(chromium, {"width": 320, "height": 640})
    page.goto(f"{live_server}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    page.get_by_role("button", name="Send my enquiry").click()
    page.wait_for_selector("#error-summary")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    page.context.close()


def test_crisis_answer_shows_help_first_in_the_browser(browser_config, live_server, chromium):
    page = new_page(chromium, PHONE)
    page.goto(f"{live_server}/")
    fill_as_a_patient(page)
    page.locator("#need_help_now").get_by_label("Yes").check()
    page.get_by_role("button", name="Send my enquiry").click()
    page.wait_for_url(f"{live_server}/thanks")
    first_heading = page.locator("main h1, main h2").first.inner_text()
    assert first_heading == "Help is available right now"
    assert_accessible(page, "urgent thank-you page")
    page.context.close()
