"""Staff see and set the language a patient prefers, filter the lead list by it, and see which consent
wording (language and version) the patient agreed to; staff pages stay English."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from crm.forms.leads import LANGUAGE_NAMES
from crm.models import PREFERRED_LANGUAGES, Lead, LeadEvent, db
from tests.auth_helpers import audit_events
from tests.test_i18n import SPANISH
from tests.test_leads import _names
from tests.test_public_form import fresh_token, valid_form


@pytest.fixture
def staff(client, make_user, login_as):
    """A client signed in as a coordinator."""
    login_as(client, make_user(display_name="Casey Coordinator"))
    return client


def spanish_enquiry(app) -> str:
    """Send the form as a Spanish-speaking patient would; return the new lead's id."""
    patient = app.test_client()
    assert patient.post("/", data={**valid_form(), "form_token": fresh_token(app)}, headers=SPANISH).status_code == 303
    with app.app_context():
        return db.session.scalars(select(Lead.id)).one()


def test_every_preferred_language_has_a_name_staff_read():
    assert set(LANGUAGE_NAMES) == set(PREFERRED_LANGUAGES)


def test_the_lead_page_shows_the_preferred_language_and_the_consent_agreed_to(app, staff):
    lead_id = spanish_enquiry(app)
    page = staff.get(f"/leads/{lead_id}", headers=SPANISH).get_data(as_text=True)
    heading = re.search(r"<h1>(.*?)</h1>", page, re.S).group(1)
    assert '<span class="badge badge-language" id="preferred-language">Speaks Spanish</span>' in heading
    consent = re.search(r'<dd id="consent">(.*?)</dd>', page, re.S).group(1)
    assert f"wording version {app.config['CONSENT_VERSION_ES']}, in Spanish" in consent and "agreed" in consent
    assert '<html lang="en">' in page and "Log a contact attempt" in page  # staff pages stay English


def test_staff_change_the_preferred_language_audited_and_on_the_timeline(app, staff):
    lead_id = spanish_enquiry(app)
    response = staff.post(f"/leads/{lead_id}/language", data={"language": "vi"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/leads/{lead_id}#contact")
    with app.app_context():
        assert db.session.get(Lead, lead_id).preferred_language == "vi"
        event = db.session.scalars(select(LeadEvent).where(LeadEvent.kind == "language_changed")).one()
        assert event.reason == "vi"
    changed = audit_events(app, "preferred_language_changed", object_id=lead_id)
    assert len(changed) == 1 and json.loads(changed[0].details) == {"from": "es", "to": "vi"}
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "Speaks Vietnamese" in page and "Preferred language: Vietnamese" in page


@pytest.mark.parametrize("language", ["", "xx", "es"], ids=["blank", "unknown", "unchanged"])
def test_a_refused_language_changes_nothing(app, staff, language):
    lead_id = spanish_enquiry(app)
    response = staff.post(f"/leads/{lead_id}/language", data={"language": language})
    assert response.status_code in (200, 302)
    if response.status_code == 200:  # a field error on the re-rendered page
        assert 'id="language-error"' in response.get_data(as_text=True)
    else:  # refused by the operation, explained in a flash
        assert "already has that preferred language" in staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Lead, lead_id).preferred_language == "es"
        assert not db.session.scalars(select(LeadEvent).where(LeadEvent.kind == "language_changed")).all()
    assert audit_events(app, "preferred_language_changed") == []


def test_the_lead_list_filters_by_preferred_language(app, staff, make_lead):
    make_lead(first_name="Ana", last_name="Garcia", preferred_language="es")
    make_lead(first_name="Bob", last_name="Smith", preferred_language="en")
    make_lead(first_name="Cal", last_name="Unknown")
    assert _names(staff.get("/leads/?language=es")) == ["Ana G."]
    assert _names(staff.get("/leads/?language=en")) == ["Bob S."]
    assert sorted(_names(staff.get("/leads/"))) == ["Ana G.", "Bob S.", "Cal U."]
    listing = staff.get("/leads/?language=es").get_data(as_text=True)
    assert '<option selected value="es">Spanish</option>' in listing
    assert '<span class="badge badge-language">Spanish</span>' in listing
    assert sorted(_names(staff.get("/leads/?language=zz"))) == ["Ana G.", "Bob S.", "Cal U."]  # ignored
