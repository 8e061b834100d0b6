"""Verifying the chain: tampering through raw SQL (triggers out of the way) names the first bad seq."""

import datetime as dt
import hashlib
import hmac
import json
import os

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from crm import audit, crypto
from crm.models import AuditEvent, db
from tests.auth_helpers import audit_events

EVENTS = 12


@pytest.fixture
def chain(app, make_user):
    """Record ``EVENTS`` events of mixed kinds; return a function reading (seq, mac) pairs."""
    admin = make_user()
    actions = [("sign_in", "user"), ("lead_viewed", "lead"), ("stage_changed", "lead"), ("audit_viewed", "audit")]
    with app.app_context():
        for n in range(EVENTS):
            action, object_type = actions[n % len(actions)]
            audit.record(action, actor=admin if n % 3 else None, object_type=object_type,
                         object_id=f"obj-{n}", details={"n": n, "code": "c" + str(n % 5)})
        db.session.commit()

    def macs() -> dict[int, bytes]:
        with app.app_context():
            return {r.seq: bytes(r.mac) for r in db.session.execute(select(AuditEvent.seq, AuditEvent.mac))}

    return macs


def tamper(app, *statements: tuple[str, dict]) -> None:
    """Run raw SQL as someone with write access to the database file or superuser role."""
    with app.app_context(), db.engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_events_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_events_no_delete")
        for sql, params in statements:
            conn.execute(text(sql), params)
        if postgres:
            conn.exec_driver_sql("ALTER TABLE audit_events ENABLE TRIGGER USER")


def verdict(app, **kwargs) -> audit.Verdict:
    """Verify in one process, then in three (stretches of 4 events for the intact log): both must agree."""
    with app.app_context():
        key = app.extensions["crm_keyring"].audit_key
        alone = audit.verify_chain(key, workers=1, **kwargs)
        shared = audit.verify_chain(key, workers=3, **kwargs)
    assert shared == alone
    return alone


def forged_row(seq: int, prev_mac: bytes, key: bytes) -> dict:
    """A plausible event row with a MAC made under ``key``."""
    row = {"seq": seq, "at": dt.datetime(2026, 3, 1, 9, 30), "actor_kind": "system", "actor_id": None,
           "action": "lead_viewed", "object_type": "lead", "object_id": "forged", "outcome": "success",
           "ip": None, "request_id": None, "details": "{}", "prev_mac": prev_mac}
    event = AuditEvent(**row)
    row["mac"] = hmac.digest(key, prev_mac + audit.canonical(event), hashlib.sha256)
    return row


INSERT = (
    "INSERT INTO audit_events (seq, at, actor_kind, actor_id, action, object_type, object_id, outcome, ip, "
    "request_id, details, prev_mac, mac) VALUES (:seq, :at, :actor_kind, :actor_id, :action, :object_type, "
    ":object_id, :outcome, :ip, :request_id, :details, :prev_mac, :mac)"
)


def test_an_intact_chain_verifies_with_count_and_head(app, chain):
    result = verdict(app)
    assert (result.ok, result.count, result.head_seq, result.head_mac) == (True, EVENTS, EVENTS, chain()[EVENTS])


def test_an_empty_log_verifies(app):
    result = verdict(app)
    assert (result.ok, result.count, result.head_mac) == (True, 0, audit.GENESIS_MAC)


@pytest.mark.parametrize("column, value", [
    ("details", '{"code":"c0","n":99}'),
    ("details", '{"n":4, "code":"c4"}'),  # same meaning, different text
    ("actor_id", None),
    ("outcome", "failure"),
    ("object_id", "obj-7"),
    ("at", dt.datetime(2026, 1, 1, 0, 0)),
])
def test_a_modified_row_is_named(app, chain, column, value):
    tamper(app, (f"UPDATE audit_events SET {column} = :v WHERE seq = 5", {"v": value}))
    result = verdict(app)
    assert (result.bad_seq, result.reason, result.count) == (5, "mac_mismatch", 4)


def test_a_replaced_mac_is_named(app, chain):
    tamper(app, ("UPDATE audit_events SET mac = :m WHERE seq = 9", {"m": os.urandom(32)}))
    assert (verdict(app).bad_seq, verdict(app).reason) == (9, "mac_mismatch")


def test_a_deleted_middle_row_is_named(app, chain):
    tamper(app, ("DELETE FROM audit_events WHERE seq = 6", {}))
    result = verdict(app)
    assert (result.bad_seq, result.reason, result.count) == (6, "missing", 5)


@pytest.mark.parametrize("seq", [4, 5, 8, 12])
def test_a_deleted_row_at_a_stretch_end_or_start_is_named(app, chain, seq):
    tamper(app, ("DELETE FROM audit_events WHERE seq = :s", {"s": seq}))
    result = verdict(app)
    expected = (seq, "missing", seq - 1) if seq < EVENTS else (None, None, EVENTS - 1)  # a cut tail needs a head
    assert (result.bad_seq, result.reason, result.count) == expected


def test_a_long_log_is_walked_by_several_processes(app, chain, monkeypatch):
    walked = []
    monkeypatch.setattr(audit, "PARALLEL_FROM", EVENTS)
    monkeypatch.setattr(audit, "_walk_in_processes", lambda key, stretches: walked.append(stretches) or [
        audit.walk(key, stretch) for stretch in stretches])
    monkeypatch.setattr(audit.os, "sched_getaffinity", lambda _pid: {0, 1})
    with app.app_context():
        result = audit.verify_chain(app.extensions["crm_keyring"].audit_key)
    assert result.ok and result.count == EVENTS
    assert [(s.after, s.end) for s in walked[0]] == [(audit.BEFORE_ANY_SEQ, 6), (6, EVENTS)]


def test_a_parallel_walk_refuses_to_fork_a_connection_in_use(app, chain):
    with app.app_context():
        db.session.execute(select(AuditEvent.seq).limit(1))  # the session now holds a connection
        with pytest.raises(RuntimeError, match="end the session's transaction"):
            audit.verify_chain(app.extensions["crm_keyring"].audit_key, workers=2)
        db.session.rollback()
        assert audit.verify_chain(app.extensions["crm_keyring"].audit_key, workers=2).ok


def test_swapping_two_rows_order_is_named(app, chain):
    tamper(
        app,
        ("UPDATE audit_events SET seq = -1 WHERE seq = 4", {}),
        ("UPDATE audit_events SET seq = 4 WHERE seq = 8", {}),
        ("UPDATE audit_events SET seq = 8 WHERE seq = -1", {}),
    )
    result = verdict(app)
    assert (result.bad_seq, result.reason) == (4, "prev_mac_mismatch")


def test_a_forged_row_inserted_in_the_middle_is_named(app, chain):
    macs = chain()
    wrong_key = os.urandom(32)
    tamper(
        app,
        ("UPDATE audit_events SET seq = -seq WHERE seq >= 7", {}),
        ("UPDATE audit_events SET seq = 1 - seq WHERE seq < 0", {}),
        (INSERT, forged_row(7, macs[6], wrong_key)),
    )
    result = verdict(app)
    assert (result.bad_seq, result.reason, result.count) == (7, "mac_mismatch", 6)


def test_a_forged_tail_row_macd_with_another_key_is_named(app, chain):
    macs = chain()
    tamper(app, (INSERT, forged_row(EVENTS + 1, macs[EVENTS], crypto.Keyring.generate().audit_key)))
    result = verdict(app)
    assert (result.bad_seq, result.reason, result.count) == (EVENTS + 1, "mac_mismatch", EVENTS)


def test_a_forged_row_with_a_wrong_prev_mac_is_named(app, chain):
    key = app.extensions["crm_keyring"].audit_key
    tamper(app, (INSERT, forged_row(EVENTS + 1, os.urandom(32), key)))
    assert (verdict(app).bad_seq, verdict(app).reason) == (EVENTS + 1, "prev_mac_mismatch")


def test_a_stray_row_below_seq_one_is_named(app, chain):
    tamper(app, (INSERT, forged_row(0, audit.GENESIS_MAC, os.urandom(32))))
    assert (verdict(app).bad_seq, verdict(app).reason) == (0, "out_of_order")


def test_batches_join_up_and_a_late_defect_is_still_found(app, chain):
    assert verdict(app, batch=5).count == EVENTS
    tamper(app, ("UPDATE audit_events SET details = '{}' WHERE seq = 11", {}))
    result = verdict(app, batch=5)
    assert (result.bad_seq, result.reason) == (11, "mac_mismatch")


def test_a_cut_tail_passes_the_chain_but_not_the_signed_head(app, chain):
    macs = chain()
    with app.app_context():
        head = audit.sign_head(app.extensions["crm_keyring"], db.session.get(AuditEvent, EVENTS))
    checkpoint = (head["seq"], bytes.fromhex(head["mac"]))
    assert checkpoint == (EVENTS, macs[EVENTS])
    tamper(app, ("DELETE FROM audit_events WHERE seq > :s", {"s": EVENTS - 3}))
    assert verdict(app).ok  # a chain alone cannot see the cut
    result = verdict(app, checkpoint=checkpoint)
    assert (result.bad_seq, result.reason, result.count) == (EVENTS - 2, "truncated", EVENTS - 3)


def test_a_head_whose_mac_differs_from_the_log_is_named(app, chain):
    result = verdict(app, checkpoint=(5, os.urandom(32)))
    assert (result.bad_seq, result.reason) == (5, "head_mac_mismatch")


# --- signed heads ----------------------------------------------------------------------


def test_a_signed_head_round_trips_and_refuses_edits_and_other_keys(app, chain):
    ring = app.extensions["crm_keyring"]
    with app.app_context():
        doc = audit.sign_head(ring, db.session.get(AuditEvent, 3))
    assert set(doc) == {"format", "seq", "mac", "at", "public_key", "signature"}
    assert audit.check_signed_head(ring, doc) == (3, chain()[3])
    with pytest.raises(ValueError, match="does not verify"):
        audit.check_signed_head(ring, {**doc, "seq": 12})
    with pytest.raises(ValueError, match="not signed by this keyring"):
        audit.check_signed_head(crypto.Keyring.generate(), doc)
    with pytest.raises(ValueError, match="malformed"):
        audit.check_signed_head(ring, {"seq": 3})


# --- the CLI -------------------------------------------------------------------------------


def test_cli_verify_prints_count_and_head_then_audits_itself(app, chain, runner):
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert f"{EVENTS} events, head seq {EVENTS} mac {chain()[EVENTS].hex()}" in result.output
    last = audit_events(app)[-1]
    assert (last.seq, last.action, last.outcome, last.actor_kind) == (EVENTS + 1, "audit_verified", "success", "system")
    assert json.loads(last.details) == {"events": EVENTS, "head_seq": EVENTS}
    again = runner.invoke(args=["audit", "verify"])
    assert again.exit_code == 0 and f"{EVENTS + 1} events" in again.output


def test_cli_verify_with_workers_names_the_same_first_bad_seq(app, chain, runner):
    tamper(app, ("UPDATE audit_events SET details = '{}' WHERE seq = 9", {}))
    result = runner.invoke(args=["audit", "verify", "--workers", "2"])
    assert result.exit_code == 1
    assert "broken at seq 9: mac_mismatch" in result.output and "8 events before it verified" in result.output


def test_cli_verify_that_cannot_read_the_log_exits_1_and_audits_it(app, chain, runner, monkeypatch):
    def refused(*_args):
        raise OperationalError("SELECT", {}, Exception("too many connections"))

    monkeypatch.setattr(audit, "_walk_in_processes", refused)
    result = runner.invoke(args=["audit", "verify", "--workers", "2"])
    assert result.exit_code == 1
    assert "could not be read: OperationalError" in result.output and "Traceback" not in result.output
    last = audit_events(app)[-1]
    assert (last.seq, last.action, last.outcome) == (EVENTS + 1, "audit_verified", "failure")
    assert json.loads(last.details) == {"reason": "unreadable"}


def test_cli_verify_exits_1_naming_the_first_bad_seq(app, chain, runner):
    tamper(app, ("DELETE FROM audit_events WHERE seq = 3", {}),
           ("UPDATE audit_events SET details = '{}' WHERE seq = 9", {}))
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "broken at seq 3: missing" in result.output
    last = audit_events(app)[-1]
    assert (last.action, last.outcome) == ("audit_verified", "failure")
    assert json.loads(last.details) == {"events": 2, "head_seq": 2, "bad_seq": 3, "reason": "missing"}


def test_cli_head_then_verify_against_detects_a_cut_tail(app, chain, runner, tmp_path):
    head_file = tmp_path / "head.json"
    result = runner.invoke(args=["audit", "head", "--out", str(head_file)])
    assert result.exit_code == 0, result.output
    doc = json.loads(head_file.read_text())
    assert doc["seq"] == EVENTS + 1  # the head covers its own export event
    assert audit_events(app)[-1].action == "audit_exported"
    ok = runner.invoke(args=["audit", "verify", "--against", str(head_file)])
    assert ok.exit_code == 0 and f"reaches signed head seq {EVENTS + 1}" in ok.output

    # Cut the tail: everything after seq 9, including the events written since the head.
    tamper(app, ("DELETE FROM audit_events WHERE seq > 9", {}))
    assert verdict(app).ok
    cut = runner.invoke(args=["audit", "verify", "--against", str(head_file)])
    assert cut.exit_code == 1
    assert "broken at seq 10: truncated" in cut.output


def test_cli_head_prints_to_stdout_without_out(app, chain, runner):
    result = runner.invoke(args=["audit", "head"])
    assert result.exit_code == 0
    assert json.loads(result.output)["seq"] == EVENTS + 1


@pytest.mark.parametrize("edit", [
    lambda doc: {**doc, "mac": "00" * 32},
    lambda doc: {**doc, "public_key": "11" * 32},
    lambda doc: "not json",
])
def test_cli_verify_refuses_a_tampered_head_file(app, chain, runner, tmp_path, edit):
    head_file = tmp_path / "head.json"
    runner.invoke(args=["audit", "head", "--out", str(head_file)])
    edited = edit(json.loads(head_file.read_text()))
    head_file.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    result = runner.invoke(args=["audit", "verify", "--against", str(head_file)])
    assert result.exit_code == 1
    assert "cannot use head.json" in result.output
    last = audit_events(app)[-1]
    assert (last.action, last.outcome) == ("audit_verified", "failure")
    assert json.loads(last.details) == {"reason": "bad_head"}
