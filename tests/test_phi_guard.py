"""The suite-wide PHI guard itself: it must see a sentinel wherever one lands."""

import logging
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from crm import audit, create_app
from crm.models import db
from tests import sentinels
from tests.conftest import phi_in_audit_rows, phi_sentinels_in


def test_every_sentinel_is_found_in_text():
    for value in sentinels.GUARDED:
        assert phi_sentinels_in(["prefix " + value + " suffix", None]) == [value]
        assert phi_sentinels_in(iter(["clean", None, value])) == [value]  # a one-pass iterable
    assert phi_sentinels_in(["nothing here", ""]) == []


def test_date_of_birth_and_zip_are_guarded_and_zip_only_as_a_whole_token():
    assert {sentinels.DOB, sentinels.DOB_US, sentinels.ZIP_CODE} <= set(sentinels.GUARDED)
    assert phi_sentinels_in([f'{{"dob":"{sentinels.DOB}"}}']) == [sentinels.DOB]
    assert phi_sentinels_in([f"born {sentinels.DOB_US}"]) == [sentinels.DOB_US]
    assert phi_sentinels_in([f"zip={sentinels.ZIP_CODE}", None]) == [sentinels.ZIP_CODE]
    assert phi_sentinels_in([f"{sentinels.ZIP_CODE}-1234"]) == [sentinels.ZIP_CODE]
    assert phi_sentinels_in([f"request 3fa{sentinels.ZIP_CODE}b1-77c2", f"seq 1{sentinels.ZIP_CODE}"]) == []


@pytest.fixture
def bare_app(config, tmp_path) -> Iterator[None]:
    """An app context whose audit rows the conftest guard does not see (this test reads them itself)."""
    app = create_app(config, instance_path=str(tmp_path / "guard-instance"))
    with app.app_context():
        db.create_all()
        try:
            yield
        finally:
            db.session.remove()
            if db.engine.dialect.name == "postgresql":
                with db.engine.begin() as conn:
                    conn.execute(text("TRUNCATE audit_events"))
            db.engine.dispose()


def test_a_date_of_birth_or_zip_in_an_audit_detail_is_reported(bare_app):
    audit.record("lead_viewed", object_type="lead", details={"born": sentinels.DOB})
    audit.record("lead_viewed", object_type="lead", details={"area": sentinels.ZIP_CODE})
    db.session.commit()
    assert phi_in_audit_rows() == [(1, [sentinels.DOB]), (2, [sentinels.ZIP_CODE])]


def test_a_sentinel_in_an_audit_id_column_is_reported(bare_app):
    """``check_details`` guards details; ids are the callers' job, and the guard checks them."""
    audit.record("lead_viewed", object_type="lead", object_id=sentinels.MEMBER_ID)
    audit.record("lead_viewed", object_type="lead", object_id="clean")
    db.session.commit()
    assert phi_in_audit_rows() == [(1, [sentinels.MEMBER_ID])]


def test_a_sentinel_in_a_log_record_or_its_traceback_is_found():
    formatter = logging.Formatter()
    record = logging.LogRecord("crm", logging.ERROR, __file__, 1, "lookup failed for %s", (sentinels.PHONE,), None)
    assert phi_sentinels_in([formatter.format(record)]) == [sentinels.PHONE]
    try:
        raise ValueError(sentinels.EMAIL)
    except ValueError:
        failing = logging.LogRecord("crm", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert phi_sentinels_in([formatter.format(failing)]) == [sentinels.EMAIL]
