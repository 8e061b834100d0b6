"""PostgreSQL: the audit chain's lock is the last thing a request takes; only COMMIT follows it.

Every audited change appends to one hash chain, so :func:`crm.audit.record` takes the advisory
lock ``locks.AUDIT_CHAIN`` and keeps it until the transaction ends: every audited request of every
worker queues on it, and whatever a request runs after taking it, every other one waits for.

Each test sends one common staff request through the test client and records, with engine events,
every statement SQLAlchemy sends, every COMMIT and ROLLBACK, and every connection the pool takes
back unfinished. The lock may be taken through SQLAlchemy (``SELECT pg_advisory_xact_lock(727274001)``)
or on the driver's cursor, unseen by those events, so before each step PostgreSQL is also asked
(``pg_locks``, from a connection of the test's own) which of the app's backends hold it. From the
moment a backend holds it to the end of that transaction, only these may run:

- the audit lock again: a later event in the same transaction takes it again, at once;
- the flush the audit append runs before taking the lock. It writes the change that event
  records, which the chain must never get ahead of: for a request's first event it comes before
  the lock; for a later one it comes after the first event's lock, and is part of that event's append.

Anything else while the lock is held (a query, the autoflush it sets off, an UPDATE run directly,
a lazy load while rendering, a row ``record()`` loads after locking, or the flush of
``Session.commit()`` writing changes made after the last event) could have run before the lock,
and fails the test with each statement and the code that issued it. What runs on the driver's
cursor (``crm.statements``: the chain's head read and the event insert, the public intake) is not
seen here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.pool import NullPool

import crm
from crm import audit, locks
from crm.models import AuditEvent, Insurance, InsuranceCard, Lead, Role, User, db
from crm.operations import leads as lead_ops
from tests.auth_helpers import PASSWORD, PASSWORD_HASH
from tests.conftest import TEST_DATABASE_URL
from tests.screening import PASSING
from tests.test_public_form import fresh_token, valid_form

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL,
                                reason="PostgreSQL only: SQLite takes no advisory lock (BEGIN IMMEDIATE)")

CRM_DIR = Path(crm.__file__).parent
REPO_DIR = CRM_DIR.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PHONE = "9495550123"
SCREENING = {  # the screening form's fields, as a browser posts them: eligible, no risk
    **{name: str(answer) for name, answer in PASSING.items()},
    **{f"phq9_{i}": "2" for i in range(8)}, "phq9_8": "0",
    "cssrs_q1": "no", "cssrs_q2": "no", "cssrs_q6": "no",
}


# --- recording what the engine runs ------------------------------------------------------

#: Backends holding the audit chain lock (a bigint key shows as classid = high half, objid = low half, objsubid 1).
CHAIN_HOLDERS = text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 "
                     "AND objid::bigint = :id AND objsubid = 1")


@dataclass(frozen=True)
class Step:
    """A statement SQLAlchemy sent (with where it came from), or the end of a transaction."""

    kind: str  # "sql", "commit", "rollback" or "reset" (the pool resetting a connection it takes back)
    pid: int  # the backend's process id: a transaction's statements share it
    holders: frozenset[int]  # the app's backends holding the audit lock just before this step, per PostgreSQL
    sql: str = ""
    parameters: Any = None
    in_append: bool = False  # issued by the flush the audit append runs before it locks the chain
    how: str = ""  # "flush", "flush in commit", "autoflush" or "statement"
    origin: tuple[str, ...] = ()  # the application's frames that issued it, innermost first

    @property
    def is_audit_lock(self) -> bool:
        """True for ``pg_advisory_xact_lock(AUDIT_CHAIN)`` sent through SQLAlchemy."""
        values = self.parameters.values() if isinstance(self.parameters, dict) else self.parameters or ()
        return "pg_advisory_xact_lock" in self.sql and locks.AUDIT_CHAIN in tuple(values)

    def describe(self) -> str:
        """The statement on one line, how it ran and the code that issued it."""
        where = " < ".join(self.origin) or "(no application frame)"
        return f"[{self.how}] {' '.join(self.sql.split())[:160]}  {self.parameters!r:.120}\n        from {where}"


def _is_sqlalchemy_flush(frame: FrameType | None) -> bool:
    return frame is not None and frame.f_code.co_name == "flush" and "sqlalchemy" in frame.f_code.co_filename


def _shown(frame: FrameType) -> str | None:
    """``path:line function`` for an application frame (Python or template), else None."""
    path = Path(frame.f_code.co_filename)
    if not path.is_relative_to(CRM_DIR):
        return None
    return f"{path.relative_to(REPO_DIR)}:{frame.f_lineno} {frame.f_code.co_name}"


def trace(frame: FrameType | None) -> tuple[bool, str, tuple[str, ...]]:
    """Walk the stack outwards: inside the append's own flush?, how the statement ran, and its origin."""
    in_append, names, origin, callee = False, set(), [], None
    while frame is not None:
        if frame.f_code is audit._append.__code__ and _is_sqlalchemy_flush(callee):
            in_append = True
        if "sqlalchemy" in frame.f_code.co_filename:
            names.add(frame.f_code.co_name)
        elif (shown := _shown(frame)) is not None:
            origin.append(shown)
        callee, frame = frame, frame.f_back
    how = ("autoflush" if "_autoflush" in names else "statement" if "_flush" not in names
           else "flush in commit" if "commit" in names else "flush")
    return in_append, how, tuple(origin[:6])


def _pid(dbapi_connection: Any) -> int:
    return dbapi_connection.info.backend_pid


@contextmanager
def recorded(app: Flask) -> Iterator[list[Step]]:
    """Record every statement, COMMIT, ROLLBACK and pool reset of the app's engine while the block runs.

    The lock may be taken on the driver's cursor, unseen by SQLAlchemy, so each step also asks
    PostgreSQL, on a connection of its own, which of the app's backends hold it at that moment.
    """
    steps: list[Step] = []
    pids: set[int] = set()
    with app.app_context():
        engine = db.engine
    watcher = create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def add(kind: str, pid: int, *rest: Any) -> None:
        pids.add(pid)
        holders = frozenset(watch.scalars(CHAIN_HOLDERS, {"id": locks.AUDIT_CHAIN})) & pids
        steps.append(Step(kind, pid, holders, *rest))

    def statement(conn, _cursor, sql, parameters, _context, _many) -> None:
        add("sql", _pid(conn.connection.dbapi_connection), sql, parameters, *trace(sys._getframe(1)))

    def ended(kind: str) -> Callable[[Any], None]:
        return lambda conn: add(kind, _pid(conn.connection.dbapi_connection))

    listeners = [("checkout", lambda dbapi_connection, *_: pids.add(_pid(dbapi_connection))),
                 ("before_cursor_execute", statement), ("commit", ended("commit")), ("rollback", ended("rollback")),
                 ("reset", lambda dbapi_connection, *_: add("reset", _pid(dbapi_connection)))]
    with watcher.connect() as watch:
        for name, listener in listeners:
            event.listen(engine, name, listener)
        try:
            yield steps
        finally:
            for name, listener in listeners:
                event.remove(engine, name, listener)
    watcher.dispose()


@dataclass
class Held:
    """What ran while one of the app's connections held the audit lock."""

    retakes: int = 0  # the lock taken again through SQLAlchemy (a later event of the same transaction)
    appended: list[Step] = field(default_factory=list)  # flushes the append ran for a later event
    other: list[Step] = field(default_factory=list)  # everything else: the violations
    ends: list[str] = field(default_factory=list)  # how each locked transaction ended


def while_locked(steps: list[Step]) -> Held:
    """Sort what ran from each audit lock to the end of its transaction (on any of the app's connections)."""
    held, holders = Held(), set()
    for step in steps:
        holders |= step.holders
        if step.kind != "sql":
            if step.pid in holders:
                holders.discard(step.pid)
                held.ends.append(step.kind)
        elif step.is_audit_lock:
            held.retakes += step.pid in holders
            holders.add(step.pid)
        elif holders:
            (held.appended if step.in_append and step.pid in holders else held.other).append(step)
    return held


# --- the requests --------------------------------------------------------------------------


@dataclass
class Scene:
    """What a case builds its request from: the app, a client and the user and lead factories."""

    app: Flask
    client: FlaskClient
    make_user: Callable[..., User]
    make_lead: Callable[..., str]
    login_as: Callable[..., str]

    def as_coordinator(self) -> User:
        """Sign the client in as a coordinator."""
        user = self.make_user(display_name="Casey Coordinator")
        self.login_as(self.client, user)
        return user

    def as_admin(self) -> User:
        """Sign the client in as an admin (second factor given)."""
        user = self.make_user(role=Role.ADMIN)
        self.login_as(self.client, user)
        return user

    def insured_lead(self) -> tuple[str, str]:
        """A lead with PPO insurance and a card image; returns the lead's and the card's ids."""
        lead_id = self.make_lead(phone=PHONE)
        with self.app.app_context():
            lead = db.session.get(Lead, lead_id)
            with db.session.no_autoflush:
                insurance = Insurance(lead=lead, coverage_type="ppo", carrier="Aetna", member_id="W123",
                                      group_number="G45")
                card = InsuranceCard(insurance=insurance, side="front", media_type="image/png", size=len(PNG),
                                     content=PNG)
                db.session.add_all([insurance, card])
            db.session.commit()
            return lead_id, card.id


Request = tuple[str, str, dict[str, Any] | None]  # method, path, form data


def home(scene: Scene) -> Request:
    """The home queues, showing a new unassigned lead."""
    scene.as_coordinator()
    scene.make_lead()
    return "get", "/leads/home", None


def lead_list(scene: Scene) -> Request:
    """The lead list."""
    scene.as_coordinator()
    scene.make_lead()
    return "get", "/leads/", None


def search_results(scene: Scene) -> Request:
    """The results page after a search that found two leads (a single hit opens the lead page)."""
    scene.as_coordinator()
    scene.make_lead(phone=PHONE)
    scene.make_lead(phone=PHONE)
    assert scene.client.post("/leads/search", data={"query": PHONE}).headers["Location"] == "/leads/search"
    return "get", "/leads/search", None


def lead_page(scene: Scene) -> Request:
    """One lead's page."""
    scene.as_coordinator()
    lead_id, _card = scene.insured_lead()
    return "get", f"/leads/{lead_id}", None


def add_note(scene: Scene) -> Request:
    """A note on a lead."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead()}/notes", {"body": "Called back"}


def log_attempt_no_answer(scene: Scene) -> Request:
    """An unanswered call: the lead moves to contacting and the cadence books the next call."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead()}/attempts", {"channel": "call", "outcome": "no_answer"}


def log_attempt_reached(scene: Scene) -> Request:
    """A call that reached the patient: the lead moves to contacted."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead()}/attempts", {"channel": "call", "outcome": "reached"}


def move_stage(scene: Scene) -> Request:
    """A stage change from new to contacted."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead()}/stage", {"target": "contacted", "expected": "new"}


def schedule_callback(scene: Scene) -> Request:
    """A callback in clinic time."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead()}/callbacks", {"due_at": "2099-01-01T10:00"}


def claim(scene: Scene) -> Request:
    """Taking an unassigned lead."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead()}/claim", {}


def acknowledge_urgent(scene: Scene) -> Request:
    """Acknowledging an urgent lead."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead(urgent=True)}/acknowledge", {}


def reveal_insurance(scene: Scene) -> Request:
    """Revealing the member ID, group number and cards."""
    scene.as_coordinator()
    lead_id, _card = scene.insured_lead()
    return "post", f"/leads/{lead_id}/reveal", {}


def card_image(scene: Scene) -> Request:
    """A card image, after a reveal."""
    scene.as_coordinator()
    lead_id, card_id = scene.insured_lead()
    assert scene.client.post(f"/leads/{lead_id}/reveal").status_code == 302
    return "get", f"/leads/{lead_id}/cards/{card_id}", None


def record_vob(scene: Scene) -> Request:
    """A benefits check."""
    scene.as_coordinator()
    lead_id, _card = scene.insured_lead()
    return "post", f"/leads/{lead_id}/insurance", {"coverage_type": "self_pay", "vob_status": "in_progress"}


def record_screening(scene: Scene) -> Request:
    """A pre-screen."""
    scene.as_coordinator()
    return "post", f"/leads/{scene.make_lead()}/screenings", SCREENING


def audit_viewer(scene: Scene) -> Request:
    """The admin audit log viewer."""
    scene.as_admin()
    return "get", "/admin/audit", None


def lead_access_history(scene: Scene) -> Request:
    """An admin's view of who accessed one lead."""
    scene.as_admin()
    return "get", f"/admin/leads/{scene.make_lead()}/access", None


def sign_in(scene: Scene) -> Request:
    """Signing in with e-mail and password (no second factor required)."""
    user = scene.make_user(password_hash=PASSWORD_HASH)
    return "post", "/auth/login", {"email": user.email, "password": PASSWORD}


def sign_out(scene: Scene) -> Request:
    """Signing out."""
    scene.as_coordinator()
    return "post", "/auth/logout", {}


def public_enquiry(scene: Scene) -> Request:
    """A patient's enquiry on the public form (the busiest audited write)."""
    return "post", "/", {**valid_form(), "form_token": fresh_token(scene.app)}


CASES = [  # (prepare, the audit action the request must record)
    (home, "leads_listed"), (lead_list, "leads_listed"), (search_results, "leads_listed"),
    (lead_page, "lead_viewed"), (add_note, "note_added"), (log_attempt_no_answer, "attempt_logged"),
    (log_attempt_reached, "attempt_logged"), (move_stage, "stage_changed"),
    (schedule_callback, "callback_scheduled"), (claim, "lead_assigned"), (acknowledge_urgent, "urgent_acknowledged"),
    (reveal_insurance, "field_revealed"), (card_image, "card_viewed"), (record_vob, "vob_recorded"),
    (record_screening, "screening_recorded"), (audit_viewer, "audit_viewed"), (lead_access_history, "audit_viewed"),
    (sign_in, "sign_in"), (sign_out, "sign_out"), (public_enquiry, "enquiry_received"),
]


def actions_after(app: Flask, seq: int) -> list[str]:
    """The actions of audit events after ``seq``, in chain order."""
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.action).where(AuditEvent.seq > seq).order_by(AuditEvent.seq)))


def last_seq(app: Flask) -> int:
    """The newest audit seq (0 for an empty log)."""
    with app.app_context():
        return db.session.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize(("prepare", "action"), CASES, ids=[prepare.__name__ for prepare, _ in CASES])
def test_nothing_but_commit_follows_the_audit_lock(app, client, make_user, make_lead, login_as, prepare, action):
    """After the audit lock a request runs nothing through SQLAlchemy but that lock again and the append's flush."""
    method, path, data = prepare(Scene(app, client, make_user, make_lead, login_as))
    before = last_seq(app)
    with recorded(app) as steps:
        response = getattr(client, method)(path, data=data)
    assert response.status_code < 400, response.status_code
    assert action in actions_after(app, before), "the request did not record the event it is meant to"
    held = while_locked(steps)
    assert held.ends, "the audit lock was never seen held: the recorder saw nothing"
    assert set(held.ends) == {"commit"}, f"a locked transaction ended by {held.ends}, not COMMIT"
    if held.other:
        pytest.fail(f"{len(held.other)} statement(s) ran while the audit lock was held:\n"
                    + "\n".join(f"  {n}. {step.describe()}" for n, step in enumerate(held.other, 1)))


def test_a_later_event_in_the_transaction_may_flush_its_own_change(app, make_lead):
    """Two events in one transaction: the second's own flush runs under the first's lock, and is allowed."""
    lead_id = make_lead()
    with app.app_context(), recorded(app) as steps:
        lead = db.session.get(Lead, lead_id)
        audit.record("lead_viewed", object_type="lead", object_id=lead_id)
        lead.attempt_count = 1  # a change the second event records: its append flushes it
        audit.record("attempt_logged", object_type="lead", object_id=lead_id)
        db.session.commit()
    held = while_locked(steps)
    assert (held.ends, held.other) == (["commit"], [])
    assert [step.sql.split()[0] for step in held.appended] == ["UPDATE"]


def test_the_lock_taken_through_sqlalchemy_is_seen_and_may_be_taken_again(app, make_lead):
    """The lock statement itself opens the window; taking it again is allowed, a query after it is not."""
    lead_id = make_lead()
    take = text("SELECT pg_advisory_xact_lock(:id)")
    with app.app_context(), recorded(app) as steps:
        db.session.execute(take, {"id": locks.AUDIT_CHAIN})
        db.session.execute(take, {"id": locks.AUDIT_CHAIN})
        db.session.get(Lead, lead_id)
        db.session.commit()
    held = while_locked(steps)
    assert (held.retakes, held.ends) == (1, ["commit"])
    assert ["FROM leads" in step.sql for step in held.other] == [True]


def test_a_query_after_the_lock_is_caught_with_its_origin(app, make_lead):
    """The recorder is not blind: a read after record() is reported, from the code that ran it."""
    lead_id = make_lead()
    with app.app_context(), recorded(app) as steps:
        lead = db.session.get(Lead, lead_id)
        audit.record("attempt_logged", object_type="lead", object_id=lead_id)
        lead_ops.calls_made(lead)
        db.session.commit()
    [late] = while_locked(steps).other
    assert "FROM contact_attempts" in late.sql and late.how == "statement"
    assert late.origin[0].startswith("crm/operations/leads.py:") and late.origin[0].endswith(" calls_made")
