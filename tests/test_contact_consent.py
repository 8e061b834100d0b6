"""The optional consent to calls and texts with automated technology: recorded either way, and honoured."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crm.forms.public import CONTACT_CONSENT
from crm.models import ContactAttempt, Enquiry, Lead, db
from crm.operations import leads as lead_ops
from crm.operations.guards import PrivacyRefusal, automated_contact_agreed
from crm.operations.intake import record_verbal_consent
from tests.test_public_form import fresh_token, submit, valid_form

SPANISH = {"Accept-Language": "es-US,es;q=0.9,en;q=0.5"}
#: A patient who wants a call, not texts: the only way to leave the box unticked
NO_TEXTS = {"contact_consent": None, "text_ok": None, "preferred_contact": "call"}


def _enquiry(app) -> Enquiry:
    with app.app_context():
        enquiry = db.session.scalars(select(Enquiry)).one()
        db.session.expunge(enquiry)
        return enquiry


def _lead_id(app) -> str:
    with app.app_context():
        return db.session.scalar(select(Lead.id))


def _attempts(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(ContactAttempt.id)))


@pytest.fixture
def staff(app, make_user, login_as):
    """A second client, signed in as a coordinator."""
    client = app.test_client()
    login_as(client, make_user(display_name="Casey Coordinator"))
    return client


def test_the_form_offers_the_box_as_optional_with_the_new_wording(client, app):
    page = client.get("/").get_data(as_text=True)
    assert CONTACT_CONSENT["2026-12b"].text.format(clinic=app.config["CLINIC_NAME"]).replace("&", "&amp;") in page
    assert app.config["CONSENT_VERSION"] == "2026-12b"
    consent_field = page[page.index('id="contact_consent"') - 200:page.index('id="contact_consent"') + 200]
    assert "required" not in consent_field
    assert "Sending this form asks us to contact you about your enquiry" in page


def test_the_spanish_form_has_its_own_new_wording(client, app):
    page = client.get("/", headers=SPANISH).get_data(as_text=True)
    assert app.config["CONSENT_VERSION_ES"] == "2026-12b-es"
    assert CONTACT_CONSENT["2026-12b-es"].text.format(clinic=app.config["CLINIC_NAME"]).replace("&", "&amp;") in page


def test_submitting_without_the_box_succeeds_and_records_not_agreed(client, app):
    assert submit(client, app, **NO_TEXTS).status_code == 303
    enquiry = _enquiry(app)
    assert enquiry.contact_consent is False
    assert (enquiry.consent_version, enquiry.consent_language) == ("2026-12b", "en")
    assert enquiry.consented_at is not None


def test_submitting_with_the_box_records_agreed(client, app):
    assert submit(client, app).status_code == 303
    enquiry = _enquiry(app)
    assert enquiry.contact_consent is True and enquiry.consent_version == "2026-12b"


def test_a_spanish_submission_records_its_answer_and_spanish_version(client, app):
    data = {**valid_form(**NO_TEXTS), "form_token": fresh_token(app)}
    assert client.post("/", data=data, headers=SPANISH).status_code == 303
    enquiry = _enquiry(app)
    assert (enquiry.contact_consent, enquiry.consent_version, enquiry.consent_language) == (False, "2026-12b-es", "es")


def test_the_lead_page_says_no_texts_and_the_attempt_form_offers_none(client, app, staff):
    submit(client, app, **NO_TEXTS)
    page = staff.get(f"/leads/{_lead_id(app)}").get_data(as_text=True)
    assert "version 2026-12b, in English;" in page and "automated technology not agreed" in page
    assert "Not agreed: no texts; calls from staff and e-mail only" in page
    attempt = page[page.index('id="attempt"'):page.index("Log attempt")]
    assert 'value="call"' in attempt and 'value="email"' in attempt
    assert 'value="text"' not in attempt


def test_a_forged_text_attempt_without_consent_is_refused(client, app, staff):
    submit(client, app, **NO_TEXTS)
    response = staff.post(f"/leads/{_lead_id(app)}/attempts", data={"channel": "text", "outcome": "no_answer"})
    assert response.status_code == 200
    assert "has not agreed to calls and texts with automated technology: call or e-mail instead" in (
        response.get_data(as_text=True))
    assert _attempts(app) == 0


def test_with_consent_the_text_channel_is_offered_and_logged(client, app, staff):
    submit(client, app)
    lead_id = _lead_id(app)
    page = staff.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert "version 2026-12b, in English;" in page and "automated technology agreed" in page
    assert "Agreed: texts allowed" in page
    assert '<option value="text"' in page
    assert staff.post(f"/leads/{lead_id}/attempts", data={"channel": "text", "outcome": "no_answer"}).status_code == 302
    assert _attempts(app) == 1


def test_the_operation_refuses_a_text_too_and_verbal_consent_later_allows_it(client, app, make_user):
    submit(client, app, **NO_TEXTS)
    actor = make_user()
    with app.test_request_context():
        lead = db.session.get(Lead, _lead_id(app))
        assert not automated_contact_agreed(lead)
        with pytest.raises(PrivacyRefusal, match="can't be texted"):
            lead_ops.log_attempt(lead, actor, "text", "no_answer")
        db.session.rollback()
        lead = db.session.get(Lead, _lead_id(app))
        record_verbal_consent(lead, actor, lead.created_at.replace(year=lead.created_at.year + 1))
        assert automated_contact_agreed(lead)
        lead_ops.log_attempt(lead, actor, "text", "no_answer")
        db.session.commit()
    assert _attempts(app) == 1


def test_the_latest_answer_counts(client, app):
    submit(client, app)
    submit(client, app, **NO_TEXTS)  # the same person again, this time without the box
    with app.app_context():
        [lead] = db.session.scalars(select(Lead)).all()
        assert [e.contact_consent for e in lead.enquiries] == [True, False]
        assert not automated_contact_agreed(lead)
