"""Recording audit events: fields, vocabulary, no PHI, append-only, atomic with the change, one writer."""

import threading
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from crm import audit
from crm.models import AuditEvent, Role, User, db
from crm.operations import users as user_ops
from tests import sentinels

#: Every action in the vocabulary with the object it is recorded against.
OBJECTS = {
    "sign_in": "user", "sign_out": "user", "session_expired": "session", "session_revoked": "user",
    "second_factor": "user", "password_changed": "user", "reauthenticated": "user", "user_created": "user",
    "user_invited": "user", "user_deactivated": "user", "user_reactivated": "user", "role_changed": "user",
    "access_denied": "endpoint", "enquiry_received": "lead", "leads_listed": "lead", "lead_viewed": "lead",
    "field_revealed": "lead",
    "card_viewed": "lead", "lead_exported": "lead", "stage_changed": "lead", "lead_assigned": "lead",
    "note_added": "lead", "attempt_logged": "lead", "callback_scheduled": "lead",
    "urgent_acknowledged": "lead", "crisis_escalated": "lead", "vob_recorded": "lead",
    "screening_recorded": "lead", "screening_signed_off": "lead", "screening_draft_saved": "lead",
    "decrypt_failed": "lead",
    "audit_viewed": "audit", "audit_exported": "audit", "audit_verified": "audit", "key_added": "key",
    "key_promoted": "key", "key_retired": "key", "keys_rotated": "key", "settings_changed": "settings",
    "lead_erased": "lead", "do_not_contact_set": "lead", "do_not_contact_lifted": "lead", "legal_hold_set": "lead",
    "legal_hold_released": "lead", "access_requested": "lead", "retention_applied": "lead", "backup_made": "backup",
    "restore_checked": "lead",
    "report_viewed": "report", "report_exported": "report",
    "preferred_language_changed": "lead",
    "lead_created": "lead", "call_added": "lead", "lead_corrected": "lead", "lead_edit_opened": "lead",
    "previous_values_revealed": "lead", "proposal_accepted": "lead", "proposal_dismissed": "lead",
    "lead_merged": "lead", "leads_imported": "lead", "import_previewed": "lead",

    "alert_resent": "alert",

    "integrity_failed": "user", "accounts_sealed": "user", "emergency_access_granted": "user",
    "emergency_access_used": "endpoint", "emergency_access_ended": "user",
    "appointment_booked": "lead", "appointment_rescheduled": "lead", "appointment_cancelled": "lead",
    "appointment_attended": "lead", "appointment_no_show": "lead", "appointment_exported": "lead",
    "lead_converted": "lead", "work_handed_over": "user",
}


def test_the_table_covers_the_whole_vocabulary():
    assert set(OBJECTS) == audit.ACTIONS


@pytest.mark.parametrize("action", sorted(OBJECTS))
def test_each_action_is_recorded_once_with_every_required_field(app, make_user, action):
    actor = make_user()
    object_id = str(uuid.uuid4())
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        from flask import g

        g.request_id = "req-" + action
        audit.record(action, actor=actor, object_type=OBJECTS[action], object_id=object_id,
                     outcome="success", details={"code": "x1"})
        db.session.commit()
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent)).all()
        assert len(rows) == 1
        event = rows[0]
        assert (event.seq, event.action, event.actor_kind, event.actor_id) == (1, action, "user", actor.id)
        assert (event.object_type, event.object_id, event.outcome) == (OBJECTS[action], object_id, "success")
        assert (event.ip, event.request_id, event.details) == ("203.0.113.9", "req-" + action, '{"code":"x1"}')
        assert event.at is not None and event.at.tzinfo is None  # naive UTC
        assert event.prev_mac == audit.GENESIS_MAC and len(event.mac) == 32


def test_a_real_request_fills_ip_and_request_id(client, app, make_user, login_as):
    coordinator = make_user(role=Role.COORDINATOR)
    login_as(client, coordinator)
    response = client.get("/admin/audit", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert response.status_code == 403
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "access_denied")).one()
        assert event.ip == "198.51.100.7"
        assert event.request_id == response.headers["X-Request-Id"]
        assert (event.actor_id, event.object_type, event.object_id, event.outcome) == (
            coordinator.id, "endpoint", "admin.audit", "denied")


def test_system_and_public_actors(app):
    with app.app_context():
        audit.record("keys_rotated", object_type="key", object_id="2")
        audit.record("enquiry_received", actor_kind="public", object_type="lead", object_id=str(uuid.uuid4()))
        db.session.commit()
        kinds = db.session.scalars(select(AuditEvent.actor_kind).order_by(AuditEvent.seq)).all()
        assert kinds == ["system", "public"]


@pytest.mark.parametrize("action, object_type", [("lead_deleted", "lead"), ("lead_viewed", "patient")])
def test_unknown_actions_and_object_types_are_refused(app, action, object_type):
    with app.app_context(), pytest.raises(ValueError, match="unknown audit"):
        audit.record(action, object_type=object_type)


@pytest.mark.parametrize("value", [*sentinels.ALL, "free text with spaces", "x" * 81, "Lead-Reference"])
def test_details_refuse_free_text_so_phi_cannot_enter(app, value):
    with app.app_context():
        with pytest.raises(ValueError, match="not free text"):
            audit.record("lead_viewed", object_type="lead", details={"field": value})
        with pytest.raises(ValueError, match="not a code"):
            audit.record("lead_viewed", object_type="lead", details={value: 1})
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0


@pytest.mark.parametrize("value", ["stage_changed", "2", str(uuid.uuid4()), "2026-01-02T08:00:00", "a/b:c.d-e"])
def test_details_accept_codes_ids_and_times(app, value):
    with app.app_context():
        event = audit.record("lead_viewed", object_type="lead", details={"code": value, "n": 12345678})
        assert value in event.details


def test_canonical_form_is_sorted_compact_json_with_utc_time(app):
    with app.app_context():
        event = audit.record("lead_viewed", object_type="lead", object_id="abc", details={"b": 1, "a": "z"})
        doc = audit.canonical(event).decode()
        assert doc.startswith('{"action":"lead_viewed","actor_id":null,"actor_kind":"system","at":"')
        assert '"details":{"a":"z","b":1},"ip":null,"object_id":"abc","object_type":"lead"' in doc
        assert doc.endswith('"outcome":"success","request_id":null,"seq":1}')
        assert f'"at":"{event.at.isoformat(timespec="microseconds")}Z"' in doc


# --- append-only ------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET outcome = 'failure' WHERE seq = 1",
    "UPDATE audit_events SET seq = 9 WHERE seq = 2",
    "DELETE FROM audit_events WHERE seq = 2",
    "DELETE FROM audit_events",
])
def test_triggers_refuse_update_and_delete(app, statement):
    with app.app_context():
        audit.record("sign_in", object_type="user")
        audit.record("sign_out", object_type="user")
        db.session.commit()
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
        rows = db.session.execute(select(AuditEvent.seq, AuditEvent.outcome).order_by(AuditEvent.seq)).all()
        assert [tuple(r) for r in rows] == [(1, "success"), (2, "success")]


# --- atomic with the change it records --------------------------------------------------


def _break_mac(*args, **kwargs):
    raise RuntimeError("audit key unavailable")


def _stale_head():
    """Claim the log is empty, so the audit INSERT collides with seq 1 in the database."""
    return 0, audit.GENESIS_MAC


@pytest.mark.parametrize("target, replacement, error", [
    ("compute_mac", _break_mac, RuntimeError),
    ("head", _stale_head, DBAPIError),
])
def test_a_failing_audit_write_rolls_back_the_business_change(app, monkeypatch, target, replacement, error):
    with app.app_context():
        audit.record("keys_rotated", object_type="key", object_id="1")
        db.session.commit()
        monkeypatch.setattr(audit, target, replacement)
        with pytest.raises(error):
            user_ops.create_user("new.person@clinic.test", Role.COORDINATOR)
            db.session.commit()
        db.session.rollback()
        monkeypatch.undo()
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        assert db.session.scalars(select(AuditEvent.action)).all() == ["keys_rotated"]
        assert audit.verify_chain(app.extensions["crm_keyring"].audit_key).ok


# --- one writer at a time -----------------------------------------------------------------


def test_concurrent_writers_never_fork_the_chain(app):
    threads, per_thread = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for i in range(per_thread):
                    audit.record("lead_viewed", object_type="lead", object_id=f"t{n}-{i}")
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with app.app_context():
        seqs = db.session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert seqs == list(range(1, threads * per_thread + 1))
        distinct_prev = db.session.scalar(select(func.count(func.distinct(AuditEvent.prev_mac))))
        assert distinct_prev == threads * per_thread
        verdict = audit.verify_chain(app.extensions["crm_keyring"].audit_key)
        assert (verdict.ok, verdict.count) == (True, threads * per_thread)
