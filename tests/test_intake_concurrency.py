"""Concurrent enquiries on PostgreSQL: different patients never wait for each other; every guarantee holds.

Each test starts real threads, each with its own connection and transaction, the way
several gunicorn workers would. SQLite serialises every writer by design (BEGIN IMMEDIATE),
so these run on PostgreSQL only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, text

from crm.models import AuditEvent, Enquiry, Lead, db
from crm.operations import enquiries
from crm.operations.enquiries import Consent, Contact, Coverage, Receipt, Submission
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL only: SQLite has one writer by design")
PATIENTS = 6
WAIT = 20  # seconds a thread may wait at a barrier before the test fails


def form_digest(n: int) -> str:
    """A form token's digest as the public form computes it (SHA-256 of a random nonce)."""
    return hashlib.sha256(f"nonce-{n}".encode()).hexdigest()


def submission(n: int, digest: str | None = None, phone: str | None = None) -> Submission:
    """A distinct patient's enquiry (unless ``phone`` makes it the same person)."""
    return Submission(
        contact=Contact(first_name=f"Pat{n}", last_name="Concurrent", dob=dt.date(1980, 1, 1 + n % 28),
                        phone=phone or f"+1 415 555 {1000 + n:04d}", email=None if phone else f"p{n}@example.org"),
        coverage=Coverage("ppo", carrier="Carrier"),
        consent=Consent("v1", None, True, False),
        idempotency_digest=digest or form_digest(n),
    )


def run_threads(app, submissions: list[Submission], hold: Callable[[], None] | None = None) -> list[Receipt]:
    """Receive each submission in its own thread and transaction; ``hold`` runs while its locks are held."""
    receipts: list[Receipt | None] = [None] * len(submissions)
    errors: list[BaseException] = []
    start = threading.Barrier(len(submissions))

    def receive(index: int) -> None:
        try:
            with app.app_context():
                prepared = enquiries.prepare_enquiry(submissions[index])
                start.wait(WAIT)
                receipts[index] = enquiries.receive_enquiry(prepared)
                db.session.commit()
                db.session.remove()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    if hold is not None:
        original = enquiries.find_receipt_and_candidates

        def locked_then_hold(prepared):
            found = original(prepared)
            hold()
            return found

        enquiries.find_receipt_and_candidates = locked_then_hold
    try:
        threads = [threading.Thread(target=receive, args=(i,)) for i in range(len(submissions))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 3)
    finally:
        if hold is not None:
            enquiries.find_receipt_and_candidates = original
    assert errors == []
    return [receipt for receipt in receipts if receipt is not None]


def advisory_locks(app) -> list[tuple[int, bool]]:
    """Intake advisory locks held or awaited right now: (lock class, granted)."""
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(text("SELECT classid::bigint, granted FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND classid::bigint IN (:form, :phone, :email)"),
                            {"form": enquiries.FORM_LOCK, "phone": enquiries.PHONE_LOCK,
                             "email": enquiries.EMAIL_LOCK}).all()
        conn.rollback()
    return [(int(kind), bool(granted)) for kind, granted in rows]


def assert_chain_verifies(runner) -> None:
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


def test_different_patients_hold_their_intake_locks_at_the_same_time(app, runner):
    """All N enquiries are inside their locked section together: none waited for another."""
    inside = threading.Barrier(PATIENTS + 1)
    seen: list[list[tuple[int, bool]]] = []

    def hold() -> None:
        inside.wait(WAIT)  # every thread arrives only if no lock kept it out
        inside.wait(WAIT)  # …and stays until the locks were read

    watcher = threading.Thread(target=lambda: (inside.wait(WAIT), seen.append(advisory_locks(app)), inside.wait(WAIT)))
    watcher.start()
    receipts = run_threads(app, [submission(n) for n in range(PATIENTS)], hold)
    watcher.join(WAIT * 3)
    assert len(receipts) == PATIENTS
    locks = seen[0]
    assert len(locks) == PATIENTS * 3  # form, phone and e-mail locks of every patient at once
    assert all(granted for _kind, granted in locks)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Lead)) == PATIENTS
        assert db.session.scalar(select(func.count()).select_from(Enquiry)) == PATIENTS
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == PATIENTS
    assert_chain_verifies(runner)


def test_two_copies_of_one_form_racing_store_one_enquiry(app, runner):
    same = submission(1)
    receipts = run_threads(app, [same, same, same])
    assert len({receipt.reference for receipt in receipts}) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Enquiry)) == 1
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 1
    assert_chain_verifies(runner)


def test_same_person_racing_folds_into_one_lead(app, runner):
    phone = "+1 415 555 7777"
    receipts = run_threads(app, [submission(1, digest=form_digest(n), phone=phone) for n in range(1, 5)])
    assert len({receipt.reference for receipt in receipts}) == 4  # each enquiry its own code, never the lead's
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 1
        assert db.session.scalar(select(func.count()).select_from(Enquiry)) == 4
    assert_chain_verifies(runner)


def test_lock_keys_are_fixed_order_blind_indexes_never_values(app):
    with app.app_context():
        prepared = enquiries.prepare_enquiry(submission(3))
        keys = enquiries.intake_lock_keys(prepared)
    phone_bidx, email_bidx = prepared.contact_indexes
    assert [kind for kind, _ in keys] == [enquiries.FORM_LOCK, enquiries.PHONE_LOCK, enquiries.EMAIL_LOCK]
    assert keys[1:] == [(enquiries.PHONE_LOCK, phone_bidx), (enquiries.EMAIL_LOCK, email_bidx)]
    assert all(-(2**31) <= key < 2**31 for _, key in keys)
