"""Erasure and do-not-contact reach the flows built beside them: merge, correction, import, alerts."""

from __future__ import annotations

import pytest

from crm.models import Lead, Role, User, db
from crm.operations import leads as lead_ops
from crm.operations import merge, privacy, records
from crm.operations.guards import PrivacyRefusal
from crm.operations.imports import ParsedRow, do_not_contact_warning

PHONE = "(949) 555-0142"


@pytest.fixture
def coordinator(make_user) -> User:
    return make_user(role=Role.COORDINATOR)


def _erased(app, make_lead, coordinator) -> tuple[str, str]:
    """Two leads of one person, the second erased on a deletion request."""
    kept, erased = make_lead(phone=PHONE), make_lead(phone=PHONE)
    with app.test_request_context():
        privacy.erase_lead(db.session.get(Lead, erased), db.session.get(User, coordinator.id))
        db.session.commit()
    return kept, erased


@pytest.mark.parametrize("order", ["into_erased", "erased_into"])
def test_a_merge_with_an_erased_lead_is_refused_and_changes_nothing(app, make_lead, coordinator, order):
    kept, erased = _erased(app, make_lead, coordinator)
    survivor, absorbed = (erased, kept) if order == "into_erased" else (kept, erased)
    with app.test_request_context():
        with pytest.raises(PrivacyRefusal) as refused:
            merge.merge_leads(survivor, absorbed, db.session.get(User, coordinator.id))
        db.session.rollback()
        assert refused.value.code == "erased"
        assert db.session.get(Lead, kept).merged_into_id is None and db.session.get(Lead, kept).is_open


def test_correcting_an_erased_lead_is_refused(app, make_lead, coordinator):
    _kept, erased = _erased(app, make_lead, coordinator)
    with app.test_request_context():
        with pytest.raises(PrivacyRefusal):
            records.correct_lead(db.session.get(Lead, erased), db.session.get(User, coordinator.id),
                                 {"phone": "(949) 555-0143"})


def test_a_do_not_contact_lead_gets_no_alerts_or_booked_calls(app, make_lead, coordinator):
    lead_id = make_lead(phone=PHONE)
    with app.test_request_context():
        lead = db.session.get(Lead, lead_id)
        assert lead_ops.may_contact(lead)
        privacy.set_do_not_contact(lead, db.session.get(User, coordinator.id), "phone")
        db.session.commit()
        assert not lead_ops.may_contact(db.session.get(Lead, lead_id))


def test_an_import_row_with_a_do_not_contact_phone_is_flagged_in_any_format(app, make_lead, coordinator):
    lead_id = make_lead(phone=PHONE)
    with app.test_request_context():
        privacy.set_do_not_contact(db.session.get(Lead, lead_id), db.session.get(User, coordinator.id), "phone")
        db.session.commit()
        listed = ParsedRow(line=7, values={"phone": "949.555.0142"}, source_details=None, fingerprint="a")
        other = ParsedRow(line=8, values={"phone": "(949) 555-0199"}, source_details=None, fingerprint="b")
        assert do_not_contact_warning(listed) == "this phone or e-mail is on the do-not-contact list"
        assert do_not_contact_warning(other) is None
