"""Merging two records of one person: children move and re-encrypt, metrics recompute, the old URL redirects."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import select

from crm.models import (
    Callback,
    ConsentRecord,
    ContactAttempt,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    LeadKey,
    Screening,
    Stage,
    db,
)
from crm.operations import merge as ops_merge
from tests import sentinels as s
from tests.auth_helpers import audit_events
from tests.conftest import TEST_DATABASE_URL

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
T0 = dt.datetime(2026, 11, 2, 9, 0)


@pytest.fixture
def coordinator(make_user):
    return make_user(display_name="Casey Coordinator")


@pytest.fixture
def staff(client, coordinator, login_as):
    login_as(client, coordinator)
    return client


@pytest.fixture
def pair(app, make_lead, coordinator):
    """Two records of one person: the older one from the web with a card, the newer one from a call with history."""
    older = make_lead(first_name=s.FIRST_NAME, last_name=s.LAST_NAME, email=s.EMAIL, dob=dt.date(1980, 5, 4),
                      created_at=T0, reference="PAST-2345")
    newer = make_lead(first_name=s.FIRST_NAME, last_name=s.LAST_NAME, phone=s.PHONE, dob=dt.date(1980, 5, 4),
                      created_at=T0 + dt.timedelta(days=3), first_attempt_at=T0 + dt.timedelta(days=3, minutes=4),
                      first_contact_at=T0 + dt.timedelta(days=3, minutes=4), attempt_count=1, reference="NEWR-2345")
    with app.app_context(), db.session.no_autoflush:
        old_lead, new_lead = db.session.get(Lead, older), db.session.get(Lead, newer)
        enquiry = Enquiry(lead=old_lead, consent_version="2026-01", received_at=T0, reference="PAST-2345",
                          answers={"message": s.MESSAGE})
        insurance = Insurance(lead=old_lead, coverage_type="ppo", carrier="Aetna", member_id=s.MEMBER_ID,
                              created_at=T0)
        db.session.add_all([enquiry, insurance, InsuranceCard(insurance=insurance, side="front",
                                                              media_type="image/png", size=len(PNG), content=PNG)])
        db.session.add_all([
            ContactAttempt(lead=new_lead, user_id=coordinator.id, at=T0 + dt.timedelta(days=3, minutes=4),
                           channel="call", outcome="reached", note=s.NOTE),
            Callback(lead=new_lead, due_at=T0 + dt.timedelta(days=9), created_by=coordinator.id),
            LeadEvent(lead=new_lead, kind="note", body="second record note"),
            Screening(lead=new_lead, outcome="eligible", answers={"x": 1}, result={"outcome": "eligible"}),
            ConsentRecord(lead=new_lead, method="verbal", wording_version="2026-01", taken_by=coordinator.id),
        ])
        db.session.commit()
    return older, newer


def merge(staff, lead_id, other_reference, survivor="this"):
    return staff.post(f"/leads/{lead_id}/merge", data={"other": other_reference, "survivor": survivor,
                                                        "confirm": "y"})


def test_merge_moves_every_child_and_recomputes_the_survivor(app, staff, pair):
    older, newer = pair
    response = merge(staff, older, "newr2345")
    assert response.status_code == 302 and response.headers["Location"] == f"/leads/{older}"
    with app.app_context():
        survivor, absorbed = db.session.get(Lead, older), db.session.get(Lead, newer)
        for model in (Enquiry, Insurance, ContactAttempt, Callback, Screening, ConsentRecord):
            assert {row.lead_id for row in db.session.scalars(select(model))} == {older}, model
        # moved rows decrypt under the survivor's key
        assert db.session.scalars(select(ContactAttempt)).one().note == s.NOTE
        assert db.session.scalars(select(Screening)).one().answers == {"x": 1}
        assert db.session.scalars(select(InsuranceCard)).one().content == PNG
        assert (survivor.created_at, survivor.first_attempt_at) == (T0, T0 + dt.timedelta(days=3, minutes=4))
        assert survivor.attempt_count == 1 and survivor.next_callback_at == T0 + dt.timedelta(days=9)
        assert survivor.phone == s.PHONE and survivor.email == s.EMAIL  # the gap filled from the other record
        assert survivor.phone_bidx is not None
        assert (absorbed.stage, absorbed.stage_reason, absorbed.merged_into_id) == (Stage.CLOSED, "duplicate", older)
        assert absorbed.phone_bidx is None and absorbed.key is not None
    for lead_id in (older, newer):
        [event] = audit_events(app, "lead_merged", object_id=lead_id)
        details = json.loads(event.details)
        assert (details["survivor"], details["absorbed"]) == (older, newer)
        assert details["moved"] == ["callbacks", "consents", "contact_attempts", "lead_events", "screenings"]
        assert details["moved_rows"] == 5
    old_url = staff.get(f"/leads/{newer}")
    assert old_url.status_code == 302 and old_url.headers["Location"] == f"/leads/{older}"
    page = staff.get(f"/leads/{older}").get_data(as_text=True)
    assert "Another record of this person merged in" in page and "second record note" in page
    assert "Call: Reached" in page and "Enquiry received (PAST-2345)" in page
    assert staff.post("/leads/search", data={"query": "NEWR-2345"}).headers["Location"] == f"/leads/{older}"


def test_survivor_can_be_the_other_lead(app, staff, pair):
    older, newer = pair
    assert merge(staff, older, "NEWR-2345", survivor="other").headers["Location"] == f"/leads/{newer}"
    with app.app_context():
        assert db.session.get(Lead, older).merged_into_id == newer
        assert db.session.scalars(select(Enquiry)).one().lead_id == newer


def test_merge_with_itself_or_a_shredded_lead_is_refused(app, staff, pair):
    older, newer = pair
    response = merge(staff, older, "PAST-2345")
    assert response.status_code == 200 and "A lead cannot be merged with itself." in response.get_data(as_text=True)
    with app.app_context():
        db.session.delete(db.session.get(LeadKey, newer))
        db.session.commit()
    with app.app_context(), pytest.raises(ValueError, match="shredded"):
        ops_merge.merge_leads(newer, older, None)
    assert merge(staff, older, "NEWR-2345").status_code == 200  # a shredded lead is not found by its code
    with app.app_context():
        assert db.session.get(Lead, older).merged_into_id is None
    assert audit_events(app, "lead_merged") == []


def test_merge_needs_the_confirmation(app, staff, pair):
    older, _newer = pair
    response = staff.post(f"/leads/{older}/merge", data={"other": "NEWR-2345", "survivor": "this"})
    assert response.status_code == 200 and "Confirm that both records are the same person." in response.get_data(
        as_text=True)
    assert audit_events(app, "lead_merged") == []


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="row locks are a PostgreSQL matter (SQLite has one writer)")
def test_concurrent_merges_of_the_same_pair_give_one_result(app, pair, make_user, login_as):
    older, newer = pair
    clients = []
    for _ in range(4):
        client = app.test_client()
        login_as(client, make_user())
        clients.append(client)
    barrier, statuses = threading.Barrier(len(clients)), []

    def send(index: int, client) -> None:
        barrier.wait()
        this, other = (older, "NEWR-2345") if index % 2 else (newer, "PAST-2345")
        statuses.append(merge(client, this, other).status_code)
    threads = [threading.Thread(target=send, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302] * 4  # one merge, the rest told it already happened: never a 500
    with app.app_context():
        merged = [lead for lead in db.session.scalars(select(Lead)) if lead.merged_into_id]
        assert len(merged) == 1
    assert len(audit_events(app, "lead_merged")) == 2
