"""Intake when blind indexes collide, as they do by design in a large database.

Each blind index is truncated so that several leads share every value (at a million leads,
some four per phone and four per e-mail). Here the index is three bits long, so every one of
a few dozen leads shares its phone index with others: a new patient's enquiry must reject all
those strangers by date of birth without loading any of them as a whole lead, and a returning
patient must still be found among them.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crm.models import Enquiry, Lead, db, phone_index
from tests import plans
from tests.test_public_form import submit

STRANGERS = 24


@pytest.fixture
def config(config):
    """Blind indexes of three bits: eight values for every lead of the database."""
    return {**config, "BLIND_INDEX_ROWS": 16}


def _strangers(client, app) -> None:
    """Patients with their own phone, e-mail and date of birth."""
    for n in range(STRANGERS):
        dob = (dt.date(1960, 1, 1) + dt.timedelta(days=400 * n)).isoformat()
        response = submit(client, app, phone=f"(949) 555-{100 + n:04d}", email=f"stranger{n}@example.org", dob=dob)
        assert response.status_code == 303


def _leads(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Lead))


def _phone_sharing_an_index(app) -> str:
    """A new number whose blind index some stranger's number already has (the index key is random)."""
    with app.app_context():
        taken = set(db.session.scalars(select(Lead.phone_bidx)))
        return next(phone for n in range(900, 1000) if phone_index(phone := f"(949) 555-{n:04d}") in taken)


def test_a_new_patient_rejects_every_colliding_stranger_without_loading_their_leads(client, app, monkeypatch):
    _strangers(client, app)
    phone = _phone_sharing_an_index(app)
    with app.app_context(), plans.captured(monkeypatch) as seen:
        response = submit(client, app, phone=phone, email="new.patient@example.org", dob="1999-09-09")
    assert response.status_code == 303
    assert _leads(app) == STRANGERS + 1
    whole_leads = [s.sql for s in seen if "FROM leads" in s.sql and "first_name_enc" in s.sql]
    assert whole_leads == []


def test_a_returning_patient_is_found_among_colliding_strangers(client, app):
    _strangers(client, app)
    again = submit(client, app, phone="(949) 555-0105", email="changed@example.org",
                   dob=(dt.date(1960, 1, 1) + dt.timedelta(days=400 * 5)).isoformat())
    assert again.status_code == 303
    assert _leads(app) == STRANGERS
    with app.app_context():
        per_lead = db.session.execute(select(Enquiry.lead_id, func.count()).group_by(Enquiry.lead_id)).all()
    assert sorted(count for _lead, count in per_lead) == [1] * (STRANGERS - 1) + [2]
