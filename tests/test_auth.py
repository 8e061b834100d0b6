"""Sign-in: audit, rehash, no account enumeration, and throttling shared through the database."""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import time

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import func, select

from crm import create_app
from crm.models import LoginAttempt, Role, User, db
from crm.passwords import HASHER
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events, sign_in

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
WRONG = "not the password at all"


def _comparable(response, email: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers, with the typed e-mail (echoed in the form, so also the length) masked."""
    body = response.get_data().replace(email.encode(), b"EMAIL")
    varying = ("X-Request-Id", "Set-Cookie", "Content-Length")
    headers = sorted((k, v) for k, v in response.headers.items() if k not in varying)
    return response.status_code, body, headers


def test_sign_in_opens_a_session_and_is_audited(app, client, make_user):
    user = make_user(email="Pat.Staff@clinic.test", password_hash=PASSWORD_HASH)
    response = sign_in(client, "  pat.staff@CLINIC.test ")
    assert response.status_code == 302
    assert response.headers["Location"] == "/leads/home"
    assert client.get("/leads/home").status_code == 200
    events = audit_events(app, "sign_in")
    assert [(e.actor_id, e.outcome, e.details) for e in events] == [
        (user.id, "success", '{"second_factor":"not_required"}')
    ]


def test_signed_in_user_can_sign_out(app, client, make_user):
    make_user(email="out@clinic.test", password_hash=PASSWORD_HASH)
    sign_in(client, "out@clinic.test")
    response = client.post("/auth/logout")
    assert response.headers["Location"] == "/auth/login"
    assert "You have signed out" in client.get("/auth/login").get_data(as_text=True)
    assert client.get("/leads/home").status_code == 302


def test_failed_sign_ins_are_audited_without_the_typed_values(app, client, make_user, caplog):
    caplog.set_level(logging.DEBUG)
    user = make_user(email="known@clinic.test", password_hash=PASSWORD_HASH)
    sign_in(client, "known@clinic.test", WRONG)
    sign_in(client, "nobody@clinic.test", WRONG)
    events = audit_events(app, "sign_in")
    assert [(e.actor_kind, e.object_id, e.outcome) for e in events] == [
        ("public", user.id, "failure"), ("public", None, "failure")
    ]
    with app.app_context():
        stored = " ".join(str(row) for row in db.session.execute(select(LoginAttempt.__table__)).all())
    for text in (stored, *(e.details for e in events), caplog.text):
        assert WRONG not in text
        assert "nobody@" not in text and "known@" not in text


def test_unknown_account_and_wrong_password_get_identical_responses(app, make_user):
    make_user(email="real@clinic.test", password_hash=PASSWORD_HASH)
    make_user(email="gone@clinic.test", password_hash=PASSWORD_HASH, is_active_flag=False)
    make_user(email="invited@clinic.test")
    answers = {
        email: _comparable(sign_in(app.test_client(), email, password), email)
        for email, password in [
            ("real@clinic.test", WRONG),
            ("nope@clinic.test", WRONG),
            ("gone@clinic.test", PASSWORD),
            ("invited@clinic.test", WRONG),
        ]
    }
    first = answers["real@clinic.test"]
    assert first[0] == 200
    assert b"don&#39;t match an active account" in first[1]
    for email, answer in answers.items():
        assert answer == first, email


def test_unknown_account_takes_about_as_long_as_a_wrong_password(config, app, make_user):
    app.config.update(LOGIN_BACKOFF_AFTER=1000, LOGIN_IP_LIMIT=1000)
    make_user(email="timing@clinic.test", password_hash=PASSWORD_HASH)
    client = app.test_client()

    samples: dict[str, list[float]] = {"timing@clinic.test": [], "ghost@clinic.test": []}
    for _ in range(25):  # interleaved, so load on the machine affects both alike
        for email, times in samples.items():
            started = time.perf_counter()
            sign_in(client, email, WRONG)
            times.append(time.perf_counter() - started)
    known, unknown = (statistics.median(times) for times in samples.values())
    assert abs(known - unknown) / max(known, unknown) < 0.2


def test_sign_in_rehashes_a_password_made_with_old_parameters(app, client):
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with app.app_context():
        user = User(email="old@clinic.test", role=Role.COORDINATOR, password_hash=weak)
        db.session.add(user)
        db.session.commit()
    assert sign_in(client, "old@clinic.test").status_code == 302
    with app.app_context():
        stored = db.session.scalar(select(User.password_hash).where(User.email == "old@clinic.test"))
    assert stored != weak
    assert stored.startswith("$argon2id$")
    params = extract_parameters(stored)
    assert (params.memory_cost, params.time_cost) == (HASHER.memory_cost, HASHER.time_cost)
    assert sign_in(app.test_client(), "old@clinic.test").status_code == 302


def test_current_hash_is_not_rewritten(app, client, make_user):
    make_user(email="fresh@clinic.test", password_hash=PASSWORD_HASH)
    sign_in(client, "fresh@clinic.test")
    with app.app_context():
        assert db.session.scalar(select(User.password_hash)) == PASSWORD_HASH


# --- throttling ------------------------------------------------------------------------


def test_backoff_starts_after_five_failures_and_success_resets_it(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user = make_user(email="slow@clinic.test", password_hash=PASSWORD_HASH)
    for _ in range(5):
        assert sign_in(client, "slow@clinic.test", WRONG).status_code == 200
    refused = sign_in(client, "slow@clinic.test")  # even the right password waits
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    assert "Too many sign-in attempts" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user.id).failed_logins == 5
    time_machine.shift(dt.timedelta(seconds=31))
    assert sign_in(client, "slow@clinic.test", WRONG).status_code == 200
    assert sign_in(client, "slow@clinic.test").status_code == 429  # the wait doubled to 60 s
    time_machine.shift(dt.timedelta(seconds=61))
    assert sign_in(client, "slow@clinic.test").status_code == 302
    with app.app_context():
        assert db.session.get(User, user.id).failed_logins == 0
    assert sign_in(app.test_client(), "slow@clinic.test", WRONG).status_code == 200


def test_unknown_accounts_are_throttled_exactly_like_real_ones(app, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    make_user(email="real@clinic.test", password_hash=PASSWORD_HASH)
    for email in ("real@clinic.test", "ghost@clinic.test"):
        client = app.test_client()
        statuses = [sign_in(client, email, WRONG).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429], email
    real = _comparable(sign_in(app.test_client(), "real@clinic.test", WRONG), "real@clinic.test")
    ghost = _comparable(sign_in(app.test_client(), "ghost@clinic.test", WRONG), "ghost@clinic.test")
    assert real == ghost


def test_lockout_is_shared_by_two_app_instances_on_one_database(config, app, make_user, tmp_path, time_machine):
    time_machine.move_to(START, tick=False)
    make_user(email="shared@clinic.test", password_hash=PASSWORD_HASH)
    other_app = create_app(config, instance_path=str(tmp_path / "second-instance"))
    first, second = app.test_client(), other_app.test_client()
    for client in (first, second, first, second, first):
        assert sign_in(client, "shared@clinic.test", WRONG).status_code == 200
    assert sign_in(second, "shared@clinic.test").status_code == 429
    assert sign_in(first, "shared@clinic.test").status_code == 429
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LoginAttempt)) == 5
    with other_app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_account_locks_after_the_configured_run_of_failures_until_an_admin_unlocks(
    app, client, make_user, login_as, time_machine
):
    app.config.update(LOGIN_LOCK_AFTER=8, LOGIN_BACKOFF_AFTER=100)
    time_machine.move_to(START, tick=False)
    user = make_user(email="locked@clinic.test", password_hash=PASSWORD_HASH)
    for _ in range(8):
        assert sign_in(client, "locked@clinic.test", WRONG).status_code == 200
    time_machine.shift(dt.timedelta(days=3))
    refused = sign_in(client, "locked@clinic.test")
    assert refused.status_code == 429
    assert "Ask an administrator to unlock it" in refused.get_data(as_text=True)
    admin_client = app.test_client()
    login_as(admin_client, make_user(role=Role.ADMIN))
    assert "Locked after 8 failed sign-ins" in admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    admin_client.post(f"/admin/users/{user.id}/reactivate")
    assert audit_events(app, "user_reactivated")[0].details == '{"unlocked":true}'
    assert sign_in(client, "locked@clinic.test").status_code == 302


def test_default_hard_lock_is_within_nist_limit(app):
    assert 5 < app.config["LOGIN_LOCK_AFTER"] <= 100


def test_one_address_is_limited_across_accounts(app, make_user, time_machine):
    app.config.update(LOGIN_IP_LIMIT=3, LOGIN_IP_WINDOW_MINUTES=15)
    time_machine.move_to(START, tick=False)
    make_user(email="victim@clinic.test", password_hash=PASSWORD_HASH)
    client = app.test_client()
    for n in range(3):
        assert sign_in(client, f"spray{n}@clinic.test", WRONG).status_code == 200
    assert sign_in(client, "victim@clinic.test").status_code == 429
    elsewhere = app.test_client()
    assert sign_in(elsewhere, "victim@clinic.test").status_code == 429  # same address: 127.0.0.1
    time_machine.shift(dt.timedelta(minutes=16))
    assert sign_in(client, "victim@clinic.test").status_code == 302


@pytest.mark.parametrize("attempts", [4])
def test_successful_sign_in_resets_the_run(app, client, make_user, attempts):
    user = make_user(email="reset@clinic.test", password_hash=PASSWORD_HASH)
    for _ in range(attempts):
        sign_in(client, "reset@clinic.test", WRONG)
    assert sign_in(client, "reset@clinic.test").status_code == 302
    with app.app_context():
        assert db.session.get(User, user.id).failed_logins == 0
    other = app.test_client()
    for _ in range(attempts):
        assert sign_in(other, "reset@clinic.test", WRONG).status_code == 200
