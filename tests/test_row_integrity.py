"""A database writer without the keyring cannot make an admin or move audit history (issue 12, item 9).

The security columns of accounts, sessions and emergency grants carry a MAC under a key
derived from the keyring; every load checks it and a wrong one fails closed with an audit
event. Each audit event records its actor's e-mail inside the chain's MAC.
"""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select, text

from crm import audit, create_app, crypto
from crm.models import AuditEvent, Role, User, UserSession, db, utcnow
from crm.passwords import hash_password
from tests.auth_helpers import PASSWORD_HASH, audit_events, sign_in

ATTACKER_PASSWORD = "attacker chose this long phrase"


def raw(app, sql: str, **params) -> None:
    """Run SQL as someone who can write to the database but holds no keyring."""
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text(sql), params)


def _integrity_failures(app) -> list[str]:
    return [e.details for e in audit_events(app, "integrity_failed")]


def test_writing_hash_and_role_into_users_does_not_make_an_admin(app, client, make_user, login_as):
    user = make_user(email="coord@clinic.test", password_hash=PASSWORD_HASH)
    raw(app, "UPDATE users SET role = 'admin', password_hash = :h WHERE id = :id",
        h=hash_password(ATTACKER_PASSWORD), id=user.id)
    refused = sign_in(client, "coord@clinic.test", ATTACKER_PASSWORD)
    assert refused.status_code == 200
    assert "don&#39;t match an active account" in refused.get_data(as_text=True)
    assert client.get("/admin/users").status_code == 302
    assert _integrity_failures(app) == ['{"table":"users"}']
    admin = app.test_client()
    login_as(admin, make_user(role=Role.ADMIN))
    assert "Tampered</span>" in admin.get("/admin/users").get_data(as_text=True)
    failure = audit_events(app, "sign_in")[-1]
    assert failure.outcome == "failure" and failure.object_id is None  # answered as for an unknown account


def test_a_tampered_account_loses_its_live_session(app, client, make_user, login_as):
    user = make_user(email="victim@clinic.test", password_hash=PASSWORD_HASH)
    login_as(client, user)
    assert client.get("/leads/home").status_code == 200
    raw(app, "UPDATE users SET role = 'admin' WHERE id = :id", id=user.id)
    assert client.get("/admin/users").headers["Location"].startswith("/auth/login")
    assert _integrity_failures(app) == ['{"table":"users"}']
    with app.app_context():
        assert db.session.scalar(select(UserSession.revoked_reason)) == "tampered"


def test_a_session_row_inserted_by_a_database_writer_is_refused(app, client, make_user):
    admin = make_user(email="boss@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH)
    token = crypto.random_token()
    now = utcnow()
    raw(app, "INSERT INTO user_sessions (id, user_id, created_at, last_seen_at, reauth_at, second_factor_at) "
             "VALUES (:id, :user, :now, :now, :now, :now)", id=crypto.token_digest(token), user=admin.id, now=now)
    with client.session_transaction() as sess:
        sess["_user_id"] = token
    assert client.get("/admin/users").headers["Location"].startswith("/auth/login")
    assert _integrity_failures(app) == ['{"table":"user_sessions"}']


def test_a_revoked_session_cannot_be_revived_in_the_database(app, client, make_user):
    make_user(email="leaver@clinic.test", password_hash=PASSWORD_HASH)
    sign_in(client, "leaver@clinic.test")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    client.post("/auth/logout")
    raw(app, "UPDATE user_sessions SET revoked_at = NULL, revoked_reason = NULL")
    replay = app.test_client()
    replay.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    assert replay.get("/leads/home").status_code == 302
    assert _integrity_failures(app) == ['{"table":"user_sessions"}']


def test_the_application_never_renews_the_mac_of_a_tampered_row(app, make_user):
    user = make_user(email="laundry@clinic.test", password_hash=PASSWORD_HASH)
    raw(app, "UPDATE users SET role = 'admin' WHERE id = :id", id=user.id)
    for _ in range(2):  # failed sign-ins write the account's failure count through the ORM
        sign_in(app.test_client(), "laundry@clinic.test", "wrong wrong wrong wrong")
    with app.app_context():
        row = db.session.get(User, user.id)
        row.display_name = "Renamed"
        row.is_active_flag = False  # a protected column: the stored row is checked before a new MAC
        db.session.commit()
        assert db.session.get(User, user.id).integrity_ok is False


def test_audit_verify_names_tampered_account_rows(app, runner, make_user):
    user = make_user(email="checked@clinic.test", password_hash=PASSWORD_HASH)
    intact = runner.invoke(args=["audit", "verify"])
    assert intact.exit_code == 0 and "accounts and sessions intact" in intact.output
    raw(app, "UPDATE users SET totp_secret_sealed = NULL, role = 'admin' WHERE id = :id", id=user.id)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"users {user.id[:16]}" in result.output and "fail their MAC" in result.output
    assert audit_events(app, "audit_verified")[-1].details.endswith('"tampered_rows":1}')


def test_swapping_two_users_e_mails_does_not_move_their_history(app, client, make_user, login_as):
    ana = make_user(email="ana@clinic.test", password_hash=PASSWORD_HASH)
    ben = make_user(email="ben@clinic.test", password_hash=PASSWORD_HASH)
    for email in ("ana@clinic.test", "ben@clinic.test"):
        sign_in(app.test_client(), email)
    raw(app, "UPDATE users SET email = 'swap@clinic.test' WHERE id = :id", id=ana.id)
    raw(app, "UPDATE users SET email = 'ana@clinic.test' WHERE id = :id", id=ben.id)
    raw(app, "UPDATE users SET email = 'ben@clinic.test' WHERE id = :id", id=ana.id)
    login_as(client, make_user(role=Role.ADMIN))
    page = client.get("/admin/audit", query_string={"user": ana.id}).get_data(as_text=True)
    assert "<td>ana@clinic.test</td>" in page and "<td>ben@clinic.test</td>" not in page
    exported = client.post("/admin/audit/export", data={"action": "sign_in"}).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {(r["actor_id"], r["actor_email"]) for r in rows} == {(ana.id, "ana@clinic.test"),
                                                                  (ben.id, "ben@clinic.test")}
    assert len(_integrity_failures(app)) == 0  # nobody loaded those accounts yet
    assert sign_in(app.test_client(), "ana@clinic.test").status_code == 200  # both rows fail closed


def test_the_recorded_actor_e_mail_is_inside_the_chain_mac(app, make_user):
    user = make_user(email="signed@clinic.test", password_hash=PASSWORD_HASH)
    sign_in(app.test_client(), "signed@clinic.test")
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.actor_id == user.id))
        assert event.actor_email == "signed@clinic.test"
        assert b'"actor_email":"signed@clinic.test"' in audit.canonical(event)
        key = app.extensions["crm_keyring"].audit_key
        assert audit.compute_mac(key, event.prev_mac, event) == bytes(event.mac)
        event.actor_email = "other@clinic.test"
        assert audit.compute_mac(key, event.prev_mac, event) != bytes(event.mac)
        event.actor_email = None  # events written before e-mails were recorded keep their old form
        assert b"actor_email" not in audit.canonical(event)
        db.session.rollback()


@pytest.fixture
def restart(config, tmp_path):
    """Start another application on the same database, as a restart would."""
    started = []

    def start():
        app = create_app(config, instance_path=str(tmp_path / f"restart{len(started)}"))
        started.append(app)
        return app

    yield start
    for app in started:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_first_start_after_the_upgrade_seals_existing_accounts_once(app, make_user, restart):
    users = [make_user(email=f"old{n}@clinic.test", password_hash=PASSWORD_HASH) for n in range(3)]
    raw(app, "UPDATE users SET security_mac = NULL")  # as the 0003 migration leaves them
    restart()
    assert [e.details for e in audit_events(app, "accounts_sealed")] == ['{"accounts":3}']
    assert sign_in(app.test_client(), users[0].email).status_code == 302
    raw(app, "UPDATE users SET security_mac = NULL, role = 'admin' WHERE id = :id", id=users[1].id)
    restart()  # a missing MAC after the one sealing is tampering, never sealed again
    assert len(audit_events(app, "accounts_sealed")) == 1
    assert sign_in(app.test_client(), users[1].email).status_code == 200
