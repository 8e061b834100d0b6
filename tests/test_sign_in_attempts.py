"""Second-factor guessing and one-time codes under concurrency (issue 12, items 5 and 6).

Wrong codes are counted apart from passwords, so a correct password never resets them; on
PostgreSQL, parallel requests with one code, one recovery code or many wrong passwords get
exactly as far as sequential ones would. SQLite serialises every transaction, so there the
threaded tests are skipped and the same rules are proved one request after another.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from crm.models import LoginAttempt, RecoveryCode, Role, User, db
from crm.operations import users as accounts
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events, code_at, give_totp, sign_in

START = dt.datetime(2026, 3, 2, 15, 0, 10, tzinfo=dt.UTC)
NOW = START.timestamp()
WRONG = "not the password at all, sorry"
PARALLEL = 8


def _path(response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def _totp_user(app, make_user, email="guess@clinic.test"):
    user = make_user(email=email, role=Role.COORDINATOR, password_hash=PASSWORD_HASH)
    return user, give_totp(app, user)


def _postgres_only(app) -> None:
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite serialises every transaction; the sequential test covers it")


def _in_parallel(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls in threads released together by a barrier; results in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _run(calls: list[Callable[[], object]], parallel: bool) -> list[object]:
    """All calls released together in threads, or one after another."""
    return _in_parallel(calls) if parallel else [call() for call in calls]


def _half_signed_in(app, email: str, count: int) -> list:
    clients = [app.test_client() for _ in range(count)]
    for client in clients:
        assert _path(sign_in(client, email)) == "/auth/second-factor"
    return clients


# --- item 5: codes are counted on their own ----------------------------------------------


def test_a_correct_password_never_resets_a_run_of_wrong_codes(app, make_user, login_as, time_machine):
    app.config.update(LOGIN_LOCK_AFTER=8, LOGIN_BACKOFF_AFTER=100)
    time_machine.move_to(START, tick=False)
    user, secret = _totp_user(app, make_user)
    for _ in range(8):  # the attacker holds the password and guesses one code per sign-in
        client = app.test_client()
        assert _path(sign_in(client, user.email)) == "/auth/second-factor"
        assert client.post("/auth/second-factor", data={"code": "000000"}).status_code == 200
    locked = sign_in(app.test_client(), user.email)
    assert locked.status_code == 429
    assert "Ask an administrator to unlock it" in locked.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user.id).failed_logins == 8
    admin = app.test_client()
    login_as(admin, make_user(role=Role.ADMIN))
    admin.post(f"/admin/users/{user.id}/reactivate")
    client = app.test_client()
    sign_in(client, user.email)
    assert _path(client.post("/auth/second-factor", data={"code": code_at(secret, NOW)})) == "/leads/home"


def test_wrong_codes_back_off_across_sign_ins(app, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user, secret = _totp_user(app, make_user)
    client = app.test_client()
    sign_in(client, user.email)
    for _ in range(5):
        assert client.post("/auth/second-factor", data={"code": "000000"}).status_code == 200
    time_machine.shift(dt.timedelta(seconds=31))
    again = app.test_client()
    assert _path(sign_in(again, user.email)) == "/auth/second-factor"  # the 30 s wait is over
    assert again.post("/auth/second-factor", data={"code": "000000"}).status_code == 200
    # Six wrong codes in a row now: the next try waits 60 s, right code or not.
    kicked = again.post("/auth/second-factor", data={"code": code_at(secret, NOW + 31)})
    assert _path(kicked) == "/auth/login"
    assert sign_in(app.test_client(), user.email).status_code == 429


def test_wrong_passwords_and_wrong_codes_are_separate_runs(app, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user, _secret = _totp_user(app, make_user)
    for _ in range(3):
        sign_in(app.test_client(), user.email, WRONG)
    client = app.test_client()
    sign_in(client, user.email)  # the password run ends here
    for _ in range(3):
        client.post("/auth/second-factor", data={"code": "000000"})
    with app.app_context():
        assert db.session.get(User, user.id).failed_logins == 3  # the code run, not 6, not 0


# --- item 6: one-time codes and the throttle under concurrency ------------------------------


def _same_code_from_many_sessions(app, make_user, parallel: bool) -> list[str]:
    user, secret = _totp_user(app, make_user)
    clients = _half_signed_in(app, user.email, PARALLEL)
    code = code_at(secret, time.time())
    calls = [lambda c=c: _path(c.post("/auth/second-factor", data={"code": code})) for c in clients]
    return _run(calls, parallel)


def test_one_totp_code_signs_in_one_of_eight_parallel_sessions(app, make_user):
    _postgres_only(app)
    outcomes = _same_code_from_many_sessions(app, make_user, parallel=True)
    assert outcomes.count("/leads/home") == 1, outcomes


def test_one_totp_code_signs_in_one_of_eight_sessions_in_turn(app, make_user):
    outcomes = _same_code_from_many_sessions(app, make_user, parallel=False)
    assert outcomes.count("/leads/home") == 1, outcomes


def _same_recovery_code_from_many_sessions(app, make_user, parallel: bool) -> list[str]:
    user, _secret = _totp_user(app, make_user)
    with app.app_context():
        codes = accounts.replace_recovery_codes(db.session.get(User, user.id))
        db.session.commit()
    clients = _half_signed_in(app, user.email, PARALLEL)
    calls = [lambda c=c: _path(c.post("/auth/second-factor/recovery", data={"code": codes[0]})) for c in clients]
    outcomes = _run(calls, parallel)
    with app.app_context():
        used = db.session.scalar(select(func.count()).where(RecoveryCode.used_at.is_not(None)))
    assert used == 1
    return outcomes


def test_one_recovery_code_is_accepted_once_from_eight_parallel_sessions(app, make_user):
    _postgres_only(app)
    outcomes = _same_recovery_code_from_many_sessions(app, make_user, parallel=True)
    assert outcomes.count("/auth/account") == 1, outcomes


def test_one_recovery_code_is_accepted_once_from_eight_sessions_in_turn(app, make_user):
    outcomes = _same_recovery_code_from_many_sessions(app, make_user, parallel=False)
    assert outcomes.count("/auth/account") == 1, outcomes


def _wrong_passwords(app, make_user, parallel: bool) -> list[int]:
    # A cheap hash keeps 30 parallel checks light; the throttle does not depend on the cost.
    cheap = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    make_user(email="sprayed@clinic.test", password_hash=cheap)
    clients = [app.test_client() for _ in range(30)]
    calls = [lambda c=c: sign_in(c, "sprayed@clinic.test", WRONG).status_code for c in clients]
    return _run(calls, parallel)


def _checked_passwords(app) -> int:
    return sum(1 for e in audit_events(app, "sign_in") if '"credentials"' in e.details)


def test_thirty_parallel_wrong_passwords_are_checked_at_most_five_times(app, make_user):
    _postgres_only(app)
    app.config.update(LOGIN_IP_LIMIT=1000)
    statuses = _wrong_passwords(app, make_user, parallel=True)
    assert statuses.count(200) <= 5 and statuses.count(429) >= 25, statuses
    assert _checked_passwords(app) == statuses.count(200)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LoginAttempt)) == statuses.count(200)


def test_thirty_wrong_passwords_in_turn_are_checked_five_times(app, make_user):
    app.config.update(LOGIN_IP_LIMIT=1000)
    statuses = _wrong_passwords(app, make_user, parallel=False)
    assert statuses == [200] * 5 + [429] * 25
    assert _checked_passwords(app) == 5
