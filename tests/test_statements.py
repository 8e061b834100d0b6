"""Statements run on the driver cursor: defaults, type conversion, errors and transactions match SQLAlchemy's."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from crm import statements
from crm.models import Lead, LeadEvent, Stage, db, new_id, new_reference, table_row

NEWEST_EVENT = statements.Lookup(
    lambda: select(LeadEvent.kind, LeadEvent.at).where(LeadEvent.lead_id == bindparam("lead_id")).order_by(
        LeadEvent.at.desc())
)
BY_PHONE_INDEX = statements.Lookup(lambda: select(Lead.id).where(Lead.phone_bidx == bindparam("bidx")))


def _lead_row(**extra) -> dict:
    return {"id": new_id(), "reference": new_reference(), **extra}


def test_insert_fills_column_defaults_like_the_orm(app):
    with app.app_context():
        row = _lead_row()
        statements.insert_rows(Lead.__table__, [row])
        db.session.commit()
        lead = db.session.get(Lead, row["id"])
        assert (lead.stage, lead.attempt_count, lead.urgent, lead.marketing_consent) == (Stage.NEW, 0, False, False)
        assert dt.timedelta(0) <= dt.datetime.now(dt.UTC).replace(tzinfo=None) - lead.created_at < dt.timedelta(
            minutes=1)


def test_values_round_trip_through_the_columns_types(app, make_lead):
    lead_id = make_lead()
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 891011)
    with app.app_context():
        statements.insert_rows(LeadEvent.__table__, [
            {"id": new_id(), "lead_id": lead_id, "at": at, "kind": "returned"},
            {"id": new_id(), "lead_id": lead_id, "at": at - dt.timedelta(days=1), "kind": "created"},
        ])
        db.session.commit()
        stored = db.session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead_id)
                                    .order_by(LeadEvent.at)).all()
        assert [(e.kind, e.at) for e in stored] == [("created", at - dt.timedelta(days=1)), ("returned", at)]
        kind, newest = NEWEST_EVENT.first(lead_id=lead_id)
        assert kind == "returned" and str(newest).startswith("2026-03-04")


def test_lookup_returns_every_match_and_none_for_a_null_parameter(app):
    with app.app_context():
        rows = [_lead_row(phone_bidx=7), _lead_row(phone_bidx=7), _lead_row(phone_bidx=8)]
        statements.insert_rows(Lead.__table__, rows)
        db.session.commit()
        assert sorted(r[0] for r in BY_PHONE_INDEX.rows(bidx=7)) == sorted([rows[0]["id"], rows[1]["id"]])
        assert BY_PHONE_INDEX.rows(bidx=None) == []
        assert BY_PHONE_INDEX.first(bidx=9) is None


def test_a_constraint_violation_is_sqlalchemys_integrity_error_and_rolls_back(app):
    with app.app_context():
        row = _lead_row()
        statements.insert_rows(Lead.__table__, [_lead_row()])
        statements.insert_rows(Lead.__table__, [row])
        with pytest.raises(IntegrityError):
            statements.insert_rows(Lead.__table__, [{**row, "reference": "OTHER"}])
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 0


def test_a_violation_among_pipelined_inserts_is_sqlalchemys_and_nothing_of_them_stays(app):
    """On PostgreSQL the inserts go out in one pipeline and the error arrives at its end; the caller sees the same."""
    with app.app_context():
        row, other = _lead_row(), _lead_row()
        with pytest.raises(IntegrityError):
            with statements.pipelined():
                statements.insert_rows(Lead.__table__, [other])
                statements.insert_rows(Lead.__table__, [row])
                statements.insert_rows(Lead.__table__, [{**row, "reference": "OTHER"}])
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 0
        with statements.pipelined():  # the connection is usable again, and a clean pipeline stores its rows
            statements.insert_rows(Lead.__table__, [row, other])
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 2


def test_a_driver_error_is_sqlalchemys_and_the_session_recovers(app):
    with app.app_context():
        broken = statements.Lookup(lambda: select(Lead.id).where(Lead.phone_bidx == bindparam("bidx")))
        broken._build = lambda: select(func.no_such_function(Lead.id))
        with pytest.raises(DBAPIError):
            broken.rows()
        db.session.rollback()
        statements.insert_rows(Lead.__table__, [_lead_row()])
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 1


def test_table_rows_carry_every_column_and_insert_as_the_orm_would(app):
    with app.app_context():
        first, second = (table_row(Lead, id=new_id(), reference=new_reference(), urgent=urgent)
                         for urgent in (True, False))
        assert first.keys() == second.keys() == {c.key for c in Lead.__table__.columns}
        assert (first["stage"], first["attempt_count"], first["assignee_id"]) == (Stage.NEW, 0, None)
        statements.insert_rows(Lead.__table__, [first, second])
        db.session.commit()
        assert db.session.get(Lead, first["id"]).urgent and not db.session.get(Lead, second["id"]).urgent
        with pytest.raises(KeyError):
            table_row(Lead, id=new_id(), no_such_column=1)


def test_queries_run_in_turn_each_return_their_rows_and_see_what_went_before(app):
    """One round trip on PostgreSQL, inside a pipeline of inserts or not; each query still sees the rows before it."""
    with app.app_context():
        row = _lead_row(phone_bidx=4242)
        with statements.pipelined():
            statements.insert_rows(Lead.__table__, [row])
            found, none = statements.rows_in_turn((BY_PHONE_INDEX, {"bidx": 4242}), (BY_PHONE_INDEX, {"bidx": 7}))
            (alone,) = statements.rows_in_turn((BY_PHONE_INDEX, {"bidx": 4242}))
        assert (found, none, alone) == ([(row["id"],)], [], [(row["id"],)])
        assert statements.rows_in_turn() == []
        db.session.commit()


def test_an_error_among_queries_run_in_turn_is_sqlalchemys_and_the_session_recovers(app):
    with app.app_context():
        broken = statements.Lookup(lambda: select(func.no_such_function(Lead.id)))
        with pytest.raises(DBAPIError):
            statements.rows_in_turn((BY_PHONE_INDEX, {"bidx": 1}), (broken, {}))
        db.session.rollback()
        assert statements.rows_in_turn((BY_PHONE_INDEX, {"bidx": 1}), (BY_PHONE_INDEX, {"bidx": 2})) == [[], []]
