"""Every query of the intake, home, list, search and lead pages is served by an index.

The database holds thousands of demo leads whose enquiries carry no idempotency digest
(seeded, imported or migrated rows), and the planner has statistics (``ANALYZE``, ``PRAGMA
optimize``): the state in which an index on a mostly-NULL column stopped being chosen and
the duplicate-submission check became a full scan. Each test serves one page, explains
every statement it ran, and fails naming the statement and its plan if any reads a table
that grows with the leads in full.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, insert, inspect, select, text

from crm import audit, create_app, crypto
from crm.jobs import periodic
from crm.models import Enquiry, Insurance, InsuranceCard, Lead, Role, Screening, User, db, new_id, utcnow
from tests import plans
from tests.conftest import TEST_DATABASE_URL, database_config, phi_in_audit_rows
from tests.test_public_form import fresh_token, valid_form

DEMO_LEADS = 20_000
AUDIT_EVENTS = 5_000


@pytest.fixture(scope="module")
def seeded_app(tmp_path_factory, pg_schema) -> Iterator[Flask]:
    """One database for the module: demo leads without digests, a long audit log, statistics.

    Seeded once (tens of thousands of leads, so that PostgreSQL's planner weighs an index
    against a table of realistic size); the tests add only a few rows to it.
    """
    tmp_path = tmp_path_factory.mktemp("plans")
    schema = None
    if pg_schema is not None:
        schema = f"plans_{uuid.uuid4().hex[:12]}"
        _admin(f'CREATE SCHEMA "{schema}"')
    config = {"TESTING": True, "SECRET_KEY": secrets.token_urlsafe(48), "KEYRING": crypto.Keyring.generate().to_json(),
              "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False, "ENQUIRY_MIN_FILL_SECONDS": 0,
              "BLIND_INDEX_ROWS": 100_000, **database_config(tmp_path, schema)}
    application = create_app(config, instance_path=str(tmp_path / "instance"))
    with application.app_context():
        db.create_all()
        for _ in range(3):
            db.session.add(User(email=f"{uuid.uuid4().hex[:8]}@clinic.test", role=Role.COORDINATOR))
        db.session.add(User(email="zz-clinician@clinic.test", role=Role.CLINICIAN))  # books the demo visits
        for _ in range(AUDIT_EVENTS):
            audit.record("settings_changed", actor_kind="system", object_type="settings")
        db.session.commit()
    result = application.test_cli_runner().invoke(args=["seed-demo", "--leads", str(DEMO_LEADS), "--seed", "21"])
    assert result.exit_code == 0, result.output
    with application.app_context():
        _fill_tables_demo_data_leaves_empty()
        undigested = db.session.scalar(select(func.count()).select_from(Enquiry)
                                       .where(Enquiry.idempotency_digest.is_(None)))
        assert undigested == DEMO_LEADS
        db.session.rollback()
        plans.analyze()
    yield application
    with application.app_context():
        db.session.remove()
        leaks = phi_in_audit_rows()
        db.engine.dispose()
    if schema:
        _admin(f'DROP SCHEMA "{schema}" CASCADE')
    assert not leaks


@pytest.fixture
def app(seeded_app) -> Flask:
    """The module's seeded application, in place of an empty one per test."""
    return seeded_app


@pytest.fixture
def seeded(app, login_as, client) -> User:
    """A coordinator of the seeded database, signed in on ``client``."""
    with app.app_context():
        user = db.session.scalars(select(User).order_by(User.email).limit(1)).one()
        db.session.expunge(user)
    login_as(client, user)
    return user


def _fill_tables_demo_data_leaves_empty() -> None:
    """A screening per demo lead and a card per insurance (no ciphertext: no page decrypts them here).

    Demo data has neither; on an empty table any plan is cheap, so it would prove nothing.
    """
    now = utcnow()
    lead_ids = db.session.scalars(select(Lead.id)).all()
    db.session.execute(insert(Screening), [{"id": new_id(), "lead_id": lead_id, "performed_at": now,
                                           "outcome": "eligible"} for lead_id in lead_ids])
    insurance_ids = db.session.scalars(select(Insurance.id)).all()
    db.session.execute(insert(InsuranceCard), [{"id": new_id(), "insurance_id": insurance_id, "side": "front",
                                                "media_type": "image/png", "size": 0}
                                               for insurance_id in insurance_ids])
    db.session.commit()


def _admin(statement: str) -> None:
    engine = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def assert_index_served(app, monkeypatch, request_page) -> list[plans.Statement]:
    """Serve a page and fail if any statement it ran scans a growing table in full."""
    with app.app_context(), plans.captured(monkeypatch) as seen:
        response = request_page()
    assert response.status_code in (200, 302, 303), response.status_code
    with app.app_context():
        scans = plans.scans_in(seen)
        assert plans.explainable(seen), "no statement was captured"
    assert not scans, "full scans:\n" + "\n\n".join(f"{sql}\n  -> {lines}" for sql, lines in scans.items())
    return seen


def _a_new_patients_lead(app, client) -> str:
    """A lead of the patient's own enquiry (demo leads carry placeholder screenings and cards)."""
    data = {**valid_form(phone="+1 628 555 0142", email="plans@example.org"), "form_token": fresh_token(app)}
    assert client.post("/", data=data).status_code == 303
    with app.app_context():
        return db.session.scalar(select(Enquiry.lead_id).where(Enquiry.idempotency_digest.is_not(None))
                                 .order_by(Enquiry.received_at.desc()).limit(1))


def test_enquiry_new_patient_is_index_served(app, client, seeded, monkeypatch):
    data = {**valid_form(), "form_token": fresh_token(app)}
    seen = assert_index_served(app, monkeypatch, lambda: client.post("/", data=data))
    assert any("idempotency_digest" in s.sql for s in seen), "the duplicate-submission check did not run"


def test_enquiry_repeat_of_the_same_form_is_index_served(app, client, seeded, monkeypatch):
    data = {**valid_form(), "form_token": fresh_token(app)}
    assert client.post("/", data=data).status_code == 303
    assert_index_served(app, monkeypatch, lambda: client.post("/", data=data))
    with app.app_context():
        digest = db.session.scalar(select(Enquiry.idempotency_digest).order_by(Enquiry.received_at.desc()).limit(1))
        assert db.session.scalar(select(func.count()).select_from(Enquiry)
                                 .where(Enquiry.idempotency_digest == digest)) == 1


def test_enquiry_returning_patient_is_index_served(app, client, seeded, monkeypatch):
    assert client.post("/", data={**valid_form(), "form_token": fresh_token(app)}).status_code == 303
    with app.app_context():
        leads_before = db.session.scalar(select(func.count()).select_from(Lead))
    again = {**valid_form(message="Writing again"), "form_token": fresh_token(app)}
    assert_index_served(app, monkeypatch, lambda: client.post("/", data=again))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Lead)) == leads_before


def test_home_is_index_served(app, client, seeded, monkeypatch):
    assert_index_served(app, monkeypatch, lambda: client.get("/leads/home"))


def test_home_new_leads_queue_reads_its_own_index(app, client, seeded, monkeypatch):
    """New leads are the newest: an index walked in date order would reach them only after nearly every lead."""
    seen = assert_index_served(app, monkeypatch, lambda: client.get("/leads/home"))
    with app.app_context():
        [queue] = [s for s in plans.explainable(seen) if "leads.assignee_id IS NULL" in s.sql]
        assert "ix_leads_stage_assignee_created" in plans.indexes_used([queue]), plans.plan(queue)


LIST_QUERIES = [
    "", "?sort=oldest", "?sort=callback", "?stage=new", "?stage=contacting&sort=oldest", "?assignee=me",
    "?assignee=none", "?source=phone", "?urgency=urgent", "?urgency=unacknowledged", "?page=3",
    "?created_from=2026-01-01&created_to=2026-12-31", "?language=es", "?stage=new&source=phone",
]
SEARCHES = [{"query": "(555) 010-4477"}, {"query": "someone@example.org"}, {"query": "Garcia", "dob": "1980-01-01"}]


@pytest.mark.parametrize("query", LIST_QUERIES)
def test_list_is_index_served(app, client, seeded, monkeypatch, query):
    assert_index_served(app, monkeypatch, lambda: client.get(f"/leads/{query}"))


COUNTED_LISTS = ["", "?stage=new", "?source=phone", "?stage=new&source=phone", "?assignee=me", "?language=es",
                 "?created_from=2026-01-01&created_to=2026-12-31", "?sort=callback"]


@pytest.mark.parametrize("query", COUNTED_LISTS)
def test_list_count_reads_the_index_alone(app, client, seeded, monkeypatch, query):
    """The capped total of a filtered list never fetches the wide rows: the index carries ``erased_at`` too."""
    seen = assert_index_served(app, monkeypatch, lambda: client.get(f"/leads/{query}"))
    with app.app_context():
        [count] = [s for s in plans.explainable(seen) if s.sql.lstrip().startswith("SELECT count(*)")
                   and "erased_at IS NULL" in s.sql]
        lines = plans.plan(count)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):  # PostgreSQL's index-only scans wait for VACUUM
        assert any("COVERING INDEX" in line for line in lines), lines


@pytest.mark.parametrize("search", SEARCHES)
def test_search_is_index_served(app, client, seeded, monkeypatch, search):
    assert_index_served(app, monkeypatch, lambda: client.post("/leads/search", data=search))


def test_lead_page_is_index_served(app, client, seeded, monkeypatch):
    lead_id = _a_new_patients_lead(app, client)
    assert_index_served(app, monkeypatch, lambda: client.get(f"/leads/{lead_id}"))


def _manager_client(app, login_as):
    """A manager signed in on a client of its own: the clinic-wide reports read their own index."""
    with app.app_context():
        manager = User(email=f"{uuid.uuid4().hex[:8]}@clinic.test", role=Role.MANAGER)
        db.session.add(manager)
        db.session.commit()
        db.session.refresh(manager)
        db.session.expunge(manager)
    manager_client = app.test_client()
    login_as(manager_client, manager)
    return manager_client


def test_copy_request_reminders_are_index_served(app, monkeypatch):
    """The worker reads the open copy requests every minute: from their partial index, not the whole table."""
    with app.app_context(), plans.captured(monkeypatch) as seen:
        periodic.access_request_reminders(utcnow())
        db.session.rollback()
    with app.app_context():
        assert plans.explainable(seen), "no statement was captured"
        assert plans.scans_in(seen) == {}
        assert "ix_leads_access_open" in plans.indexes_used(seen)


def test_every_index_on_leads_serves_some_page(app, client, seeded, monkeypatch, login_as):
    """No index on ``leads`` is written by every enquiry for nothing: each one serves a page's query
    (or the worker's reminder of open copy requests, a partial index no enquiry writes into).

    Unique indexes are left out: they keep references and ids unique, whether or not a query reads them.
    """
    pages = [lambda: client.post("/", data={**valid_form(), "form_token": fresh_token(app)}),
             lambda: periodic.access_request_reminders(utcnow()),  # the worker's minute-by-minute read
             lambda: client.get("/leads/home"),
             lambda: _manager_client(app, login_as).get("/reports/?period=last_90"),
             *[lambda q=q: client.get(f"/leads/{q}") for q in LIST_QUERIES],
             *[lambda s=s: client.post("/leads/search", data=s) for s in SEARCHES]]
    used: set[str] = set()
    for page in pages:
        with app.app_context(), plans.captured(monkeypatch) as seen:
            page()
        with app.app_context():
            used |= plans.indexes_used(seen)
    with app.app_context():
        on_leads = {index["name"] for index in inspect(db.engine).get_indexes("leads") if not index["unique"]}
    assert on_leads, "no index found on leads"
    assert on_leads <= used, f"indexes no page uses: {sorted(on_leads - used)}"


BLIND_INDEXES = {"ix_leads_phone_bidx", "ix_leads_email_bidx", "ix_leads_name_dob_bidx"}


def _demo_people(count: int) -> list[Lead]:
    """Demo leads with a phone and an e-mail, read through the models."""
    query = select(Lead).where(Lead.phone_bidx.is_not(None), Lead.email_bidx.is_not(None)).limit(count)
    return list(db.session.scalars(query))


def test_match_lookup_reads_each_blind_index_and_nothing_in_full(app, monkeypatch):
    """The new-lead screen's check: phone, e-mail and last name + date of birth, each an index lookup."""
    from crm.operations.intake import Identity, possible_matches

    with app.app_context():
        [lead] = _demo_people(1)
        who = Identity(lead.last_name.upper(), lead.dob, lead.phone, lead.email.upper())
        with plans.captured(monkeypatch) as seen:
            found = possible_matches(who)
        assert lead.id in {match.id for match in found}
        db.session.rollback()
        assert BLIND_INDEXES <= plans.indexes_used(seen), [plans.plan(s) for s in plans.explainable(seen)]
        assert not plans.scans_in(seen)


def test_import_slice_lookups_read_the_indexes_and_nothing_in_full(app, monkeypatch):
    """The import's per-slice lookups (earlier rows, existing people, do-not-contact) are index lookups."""
    import csv
    import io

    from crm.operations import imports

    with app.app_context():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["First name", "Last name", "DOB", "Phone", "Email"])
        for lead in _demo_people(50):
            writer.writerow([lead.first_name, lead.last_name, lead.dob.isoformat(), lead.phone, lead.email])
        importer = imports.Importer("referral", None, dry_run=True)
        rows = list(imports.parsed_rows(out.getvalue(), "referral"))
        with plans.captured(monkeypatch) as seen:
            importer.batch(rows)
        db.session.rollback()
        assert importer.summary.attached == 50
        assert {"ix_leads_phone_bidx", "ix_leads_email_bidx"} <= plans.indexes_used(seen)
        scans = plans.scans_in(seen)
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            # At this fixture's 20,000 keys PostgreSQL costs a hash join over lead_keys (cost ~560) below ~100
            # primary-key probes; the leads themselves must still come from the blind indexes, never a scan.
            scans = {sql: lines for sql, lines in scans.items()
                     if not all("Seq Scan on lead_keys" in line for line in lines)}
        assert not scans


def test_referrals_per_practice_read_their_partial_index_alone(app, seeded, monkeypatch, login_as):
    """The per-practice query of the Sources report reads only its covering partial index, never the wide rows."""
    with app.app_context(), plans.captured(monkeypatch) as seen:
        assert _manager_client(app, login_as).get("/reports/?period=last_90").status_code == 200
    with app.app_context():
        [statement] = [s for s in plans.explainable(seen) if "referring_practice_id IS NOT NULL" in s.sql]
        lines = plans.plan(statement)
    assert any("ix_leads_practice_report" in line for line in lines), lines
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        assert any("COVERING INDEX ix_leads_practice_report" in line for line in lines), lines
