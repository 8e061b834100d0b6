"""A Spanish-speaking patient fills in the form in a real browser: accessible, and no sideways scrolling."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.models import Enquiry, Lead, db
from tests import sentinels as s
from tests.browser import PHONE, assert_accessible, new_page

NARROW = {"width": 320, "height": 640}


@pytest.fixture
def browser_config(config):
    """The real thing: CSRF on, as in production."""
    config["WTF_CSRF_ENABLED"] = True
    return config


def fill_in_spanish(page) -> None:
    """Answer the questions by their Spanish labels, as the patient reads them."""
    page.get_by_label("Nombre", exact=True).fill(s.FIRST_NAME)
    page.get_by_label("Apellido").fill(s.LAST_NAME)
    page.get_by_label("Fecha de nacimiento", exact=False).first.fill("1984-03-09")
    page.get_by_label("Teléfono celular").fill(s.PHONE)
    page.locator("#preferred_contact").get_by_label("Llamada telefónica").check()
    page.locator("#need_help_now").get_by_label("No").check()
    page.locator("#coverage_type").get_by_label("No estoy seguro").check()
    page.get_by_label("se comunique conmigo al número indicado arriba", exact=False).check()
    page.get_by_label("He leído el", exact=False).check()


def scroll_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.mark.parametrize("viewport", [PHONE, NARROW], ids=["phone", "320px"])
def test_spanish_form_errors_and_thanks_are_accessible_and_fit(browser_config, app, live_server, chromium, viewport):
    page = new_page(chromium, viewport)
    page.goto(f"{live_server}/")
    page.get_by_role("link", name="Español").click()  # the switch link, no JavaScript involved
    page.wait_for_url(f"{live_server}/?lang=es")
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.get_by_role("heading", name="Consúltenos sobre el tratamiento").is_visible()
    assert scroll_width(page) <= viewport["width"]
    assert_accessible(page, "Spanish form")

    page.get_by_role("button", name="Enviar mi consulta").click()
    page.wait_for_selector("#error-summary")
    assert page.locator("#error-summary a[href='#first_name']").inner_text() == "Escriba su nombre."
    assert page.locator("#first_name").get_attribute("aria-describedby") == "first_name-error"
    assert page.locator("html").get_attribute("lang") == "es"
    assert scroll_width(page) <= viewport["width"]
    assert_accessible(page, "Spanish form with errors")

    fill_in_spanish(page)
    page.get_by_role("button", name="Enviar mi consulta").click()
    page.wait_for_url(f"{live_server}/thanks?lang=es")
    assert page.get_by_role("heading", name="Gracias. Hemos recibido su consulta.").is_visible()
    assert page.locator("html").get_attribute("lang") == "es"
    assert scroll_width(page) <= viewport["width"]
    assert_accessible(page, "Spanish thank-you page")
    page.goto(f"{live_server}/privacy")  # the cookie remembers the choice
    assert page.locator("html").get_attribute("lang") == "es"
    page.context.close()

    with app.app_context():
        assert db.session.scalars(select(Lead)).one().preferred_language == "es"
        assert db.session.scalars(select(Enquiry)).one().consent_language == "es"


def test_spanish_crisis_thanks_is_accessible_and_fits_320px(browser_config, live_server, chromium):
    page = new_page(chromium, NARROW)
    page.goto(f"{live_server}/?lang=es")
    fill_in_spanish(page)
    page.locator("#need_help_now").get_by_label("Sí").check()
    page.get_by_role("button", name="Enviar mi consulta").click()
    page.wait_for_url(f"{live_server}/thanks?lang=es")
    assert page.get_by_role("heading", name="Hay ayuda disponible ahora mismo").is_visible()
    assert page.locator("main a[href^='tel:']").first.inner_text() == "911"
    assert scroll_width(page) <= NARROW["width"]
    assert_accessible(page, "Spanish urgent thank-you page")
    page.context.close()
