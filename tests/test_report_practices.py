"""Referrals per referring practice: one sealed practice row however it is typed, counts by hand, no PHI."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from sqlalchemy import select

from crm.models import Lead, ReferringPractice, Role, Stage, db
from crm.operations import practices
from tests import sentinels as s
from tests.conftest import phi_sentinels_in
from tests.test_report_definitions import utc
from tests.test_reports import THIS_WEEK, by_first_cell, export, signed_in
from tests.test_staff_intake import VALID_NPI, call_form

NOW = utc("2026-03-04 12:00")
PROVIDER = "Dr Ignatius Referwell"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW.replace(tzinfo=dt.UTC), tick=False):
        yield


def referral(practice: str | None, last_name: str, phone: str) -> dict:
    """A referral lead as a coordinator types it, from ``practice`` (None: no practice given)."""
    return call_form(source="referral", referrer_name=PROVIDER, referrer_practice=practice, referrer_npi=VALID_NPI,
                     last_name=last_name, phone=phone, email=f"{last_name.lower()}@example.org")


def test_one_practice_row_however_it_is_typed_with_its_name_sealed(app, client, login_as, make_user):
    login_as(client, make_user())
    for practice, name, phone in (("Ames Psychiatry", "Alpha", "(714) 555-0101"),
                                  ("  ames   PSYCHIATRY ", "Bravo", "(714) 555-0102"),
                                  ("Coast Family Medicine", "Charlie", "(714) 555-0103"),
                                  (None, "Delta", "(714) 555-0104")):
        assert client.post("/leads/new", data=referral(practice, name, phone)).status_code == 302
    with app.app_context():
        rows = db.session.scalars(select(ReferringPractice)).all()
        assert len(rows) == 2
        for row in rows:
            assert len(row.practice_key) == 64 and b"Ames" not in row.name_sealed and b"Coast" not in row.name_sealed
        names = practices.practice_names(row.id for row in rows)
        assert sorted(names.values()) == ["Ames Psychiatry", "Coast Family Medicine"]  # as first typed
        ames, coast = (next(key for key, name in names.items() if name == wanted)
                       for wanted in ("Ames Psychiatry", "Coast Family Medicine"))
        pointed = db.session.scalars(select(Lead.referring_practice_id)).all()
        assert sorted(pointed, key=str) == sorted([ames, ames, coast, None], key=str)


@pytest.fixture
def people(make_user):
    return {"c1": make_user(display_name="Casey", role=Role.COORDINATOR),
            "c2": make_user(display_name="Robin", role=Role.COORDINATOR),
            "manager": make_user(display_name="Morgan", role=Role.MANAGER)}


def _lead(created: str, *, practice: str | None, stage: Stage, reached: int, who, source="referral", reason=None):
    db.session.add(Lead(first_name=s.FIRST_NAME, last_name=s.LAST_NAME, phone=s.PHONE, email=s.EMAIL,
                        source=source, stage=stage, stage_reason=reason, reached_step=reached,
                        assignee_id=who.id if who else None, created_at=utc(created),
                        referring_practice_id=practice,
                        source_details={"referrer_name": PROVIDER, "referrer_npi": VALID_NPI}))


@pytest.fixture
def referrals(app, people):
    """This week: Ames 3 leads (converted, contacted, new) plus a duplicate; Coast 1 eligible; one naming none.

    Outside the week, Ames has one more lead and Harbor one lead only; a web-form lead is no referral.
    """
    c1, c2 = people["c1"], people["c2"]
    with app.app_context():
        ids = {name: practices.practice_id({"referrer_practice": name})
               for name in ("Ames Psychiatry", "Coast Family Medicine", "Harbor Behavioral Health")}
        ames, coast, harbor = ids.values()
        _lead("2026-03-02 09:00", practice=ames, stage=Stage.CONVERTED, reached=6, who=c1)
        _lead("2026-03-02 10:00", practice=ames, stage=Stage.CONTACTED, reached=2, who=c2)
        _lead("2026-03-03 11:00", practice=ames, stage=Stage.NEW, reached=0, who=None)
        _lead("2026-03-03 12:00", practice=ames, stage=Stage.CLOSED, reason="duplicate", reached=2, who=c1)
        _lead("2026-03-03 13:00", practice=coast, stage=Stage.ELIGIBLE, reached=4, who=c1)
        _lead("2026-03-03 14:00", practice=None, stage=Stage.CONTACTING, reached=1, who=c2)
        _lead("2026-02-10 09:00", practice=ames, stage=Stage.CONVERTED, reached=6, who=c1)
        _lead("2026-02-11 09:00", practice=harbor, stage=Stage.CONVERTED, reached=6, who=c1)
        _lead("2026-03-03 15:00", practice=None, stage=Stage.CONVERTED, reached=6, who=c1, source="web_form")
        db.session.commit()
        return ids


def test_referrals_per_practice_match_a_hand_count(client, login_as, people, referrals):
    signed_in(client, login_as, people["manager"])
    rows = export(client, "referral_practices", **THIS_WEEK)
    assert rows[0] == ["Referring practice", "Enquiries", "Contact rate (%)", "Eligible rate (%)", "Conversion (%)"]
    # Ames: 3 (the duplicate not counted), contacted 2, eligible 1, converted 1; Coast: 1 eligible;
    # the referral naming no practice: 1, not yet contacted. Harbor has no lead this week.
    assert rows[1:] == [["Ames Psychiatry", "3", "66.7", "33.3", "33.3"],
                        ["Coast Family Medicine", "1", "100.0", "100.0", "0.0"],
                        ["No practice given", "1", "0.0", "0.0", "0.0"]]
    sources = by_first_cell(export(client, "sources", **THIS_WEEK))
    assert sources["Referral"][0] == "5" and sum(int(row[1]) for row in rows[1:]) == 5


def test_the_page_unseals_only_the_practices_it_shows(app, client, login_as, people, referrals, monkeypatch):
    asked = []
    real = practices.practice_names
    monkeypatch.setattr("crm.reports.views.practice_names", lambda ids: asked.extend(ids) or real(ids))
    signed_in(client, login_as, people["manager"])
    page = client.get("/reports/", query_string=THIS_WEEK)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="table-referral_practices"' in text and "Ames Psychiatry" in text and "Coast Family Medicine" in text
    assert "Harbor Behavioral Health" not in text
    assert sorted(asked) == sorted([referrals["Ames Psychiatry"], referrals["Coast Family Medicine"]])


def test_no_phi_or_referrer_details_on_the_page_or_in_the_export(client, login_as, people, referrals):
    signed_in(client, login_as, people["manager"])
    texts = [client.get("/reports/", query_string=THIS_WEEK).get_data(as_text=True),
             client.get("/reports/export/referral_practices.csv", query_string=THIS_WEEK).get_data(as_text=True)]
    assert phi_sentinels_in(texts) == []
    assert all(PROVIDER not in text and VALID_NPI not in text for text in texts)


def test_filters_and_own_leads_narrow_the_practices(client, login_as, people, referrals):
    signed_in(client, login_as, people["c1"])  # Casey's own leads: Ames converted, Coast eligible
    assert export(client, "referral_practices", **THIS_WEEK)[1:] == [
        ["Ames Psychiatry", "1", "100.0", "100.0", "100.0"], ["Coast Family Medicine", "1", "100.0", "100.0", "0.0"]]
    signed_in(client, login_as, people["manager"])
    assert export(client, "referral_practices", period="this_week", source="web_form")[1:] == []
    assert export(client, "referral_practices", period="last_90")[1:3] == [
        ["Ames Psychiatry", "4", "75.0", "50.0", "50.0"], ["Coast Family Medicine", "1", "100.0", "100.0", "0.0"]]
