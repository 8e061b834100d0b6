"""TOTP second factor: enrolment with a local QR code, single-use codes, recovery codes, policy."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import select

from crm import totp
from crm.models import RecoveryCode, Role, User, UserSession, db
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, audit_events, code_at, give_totp, sign_in

START = dt.datetime(2026, 3, 2, 15, 0, 10, tzinfo=dt.UTC)
NOW = START.timestamp()


def _path(response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def _secret_on(page: str) -> str:
    match = re.search(r'class="setup-key">([A-Z2-7]+)<', page)
    assert match, "enrolment page shows no setup key"
    return match.group(1)


def _totp_user(app, make_user, email="totp@clinic.test", role=Role.COORDINATOR):
    user = make_user(email=email, role=role, password_hash=PASSWORD_HASH)
    return user, give_totp(app, user)


# --- unit: the step rules --------------------------------------------------------------


def test_current_and_previous_step_accepted_older_refused():
    secret = totp.new_secret()
    assert totp.matching_step(secret, code_at(secret, NOW), None, NOW) == totp.current_step(NOW)
    assert totp.matching_step(secret, code_at(secret, NOW - 30), None, NOW) == totp.current_step(NOW) - 1
    assert totp.matching_step(secret, code_at(secret, NOW - 60), None, NOW) is None
    assert totp.matching_step(secret, code_at(secret, NOW + 30), None, NOW) is None
    assert totp.matching_step(secret, "abcdef", None, NOW) is None


def test_a_step_at_or_before_the_last_used_one_is_refused():
    secret = totp.new_secret()
    step = totp.current_step(NOW)
    assert totp.matching_step(secret, code_at(secret, NOW), step, NOW) is None
    assert totp.matching_step(secret, code_at(secret, NOW - 30), step - 1, NOW) is None
    assert totp.matching_step(secret, code_at(secret, NOW), step - 1, NOW) == step


def test_qr_code_is_rendered_locally_as_a_data_uri():
    uri = totp.provisioning_uri(totp.new_secret(), "a@clinic.test", "Intake Clinic")
    assert uri.startswith("otpauth://totp/")
    image = totp.qr_data_uri(uri)
    assert image.startswith("data:image/svg+xml")
    assert "http%3A" not in image.replace("http%3A%2F%2Fwww.w3.org", "")


def test_recovery_codes_are_random_and_hashed():
    codes = totp.new_recovery_codes()
    assert len(set(codes)) == totp.RECOVERY_CODE_COUNT
    stored = totp.hash_recovery_code(codes[0])
    assert stored.startswith("$argon2id$") and codes[0] not in stored
    assert totp.recovery_code_matches(stored, codes[0].upper().replace("-", " "))
    assert not totp.recovery_code_matches(stored, codes[1])


# --- enrolment -------------------------------------------------------------------------


def test_enrolment_shows_a_local_qr_code_and_stores_the_seed_sealed(app, client, make_user, login_as,
                                                                     time_machine):
    time_machine.move_to(START, tick=False)
    user = make_user(email="enrol@clinic.test")
    login_as(client, user)
    page = client.get("/auth/second-factor/setup").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page
    assert "chart.googleapis" not in page and "api.qrserver" not in page
    secret = _secret_on(page)
    assert _secret_on(client.get("/auth/second-factor/setup").get_data(as_text=True)) == secret  # stable on reload
    wrong = client.post("/auth/second-factor/setup", data={"code": code_at(secret, NOW - 90)})
    assert "didn&#39;t match" in wrong.get_data(as_text=True)
    done = client.post("/auth/second-factor/setup", data={"code": code_at(secret, NOW)})
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-9-]{19})</code></li>", done.get_data(as_text=True))
    assert len(codes) == 10
    with app.app_context():
        stored = db.session.get(User, user.id)
        assert stored.has_totp and secret.encode() not in stored.totp_secret_sealed
        assert stored.totp_last_step == totp.current_step(NOW)
        hashes = list(db.session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)))
    assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
    assert not set(codes) & set(hashes)
    assert [e.details for e in audit_events(app, "second_factor")] == ['{"event":"enrolled"}']
    assert client.get("/auth/second-factor/setup").headers["Location"] == "/auth/account"


def test_an_admin_without_a_second_factor_must_enrol_before_anything_else(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    make_user(email="admin@clinic.test", role=Role.ADMIN, password_hash=PASSWORD_HASH)
    response = sign_in(client, "admin@clinic.test", next="/admin/users")
    assert _path(response) == "/auth/second-factor/setup"
    for url in ("/leads/home", "/admin/users", "/auth/account"):
        assert _path(client.get(url)) == "/auth/second-factor/setup", url
    secret = _secret_on(client.get(response.headers["Location"]).get_data(as_text=True))
    done = client.post(response.headers["Location"], data={"code": code_at(secret, NOW)})
    assert 'href="/admin/users"' in done.get_data(as_text=True)
    assert client.get("/admin/users").status_code == 200


def test_every_account_needs_a_second_factor_when_configured(app, client, make_user):
    app.config["REQUIRE_TOTP_FOR_ALL"] = True
    make_user(email="coord@clinic.test", password_hash=PASSWORD_HASH)
    assert _path(sign_in(client, "coord@clinic.test")) == "/auth/second-factor/setup"
    assert _path(client.get("/leads/home")) == "/auth/second-factor/setup"


def test_a_coordinator_without_a_second_factor_signs_in_with_the_password(app, client, make_user):
    make_user(email="plain@clinic.test", password_hash=PASSWORD_HASH)
    assert _path(sign_in(client, "plain@clinic.test")) == "/leads/home"


# --- sign-in with a code ---------------------------------------------------------------


def test_a_code_works_once_and_its_replay_is_refused(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user, secret = _totp_user(app, make_user)
    assert _path(sign_in(client, user.email, next="/auth/account")) == "/auth/second-factor"
    assert _path(client.get("/leads/home")) == "/auth/second-factor"
    code = code_at(secret, NOW)
    response = client.post("/auth/second-factor?next=/auth/account", data={"code": code})
    assert _path(response) == "/auth/account"
    assert client.get("/leads/home").status_code == 200
    client.post("/auth/logout")
    replay = app.test_client()
    sign_in(replay, user.email)
    refused = replay.post("/auth/second-factor", data={"code": code})
    assert refused.status_code == 200
    assert "didn&#39;t work" in refused.get_data(as_text=True)
    assert _path(replay.get("/leads/home")) == "/auth/second-factor"
    events = [(e.outcome, e.details) for e in audit_events(app, "second_factor")]
    assert events == [("success", '{"event":"verified"}'), ("failure", '{"event":"failed"}')]


def test_a_code_from_60_seconds_ago_is_refused_and_30_seconds_ago_accepted(app, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user, secret = _totp_user(app, make_user)
    old = app.test_client()
    sign_in(old, user.email)
    assert old.post("/auth/second-factor", data={"code": code_at(secret, NOW - 60)}).status_code == 200
    assert _path(old.get("/leads/home")) == "/auth/second-factor"
    recent = app.test_client()
    sign_in(recent, user.email)
    assert _path(recent.post("/auth/second-factor", data={"code": code_at(secret, NOW - 30)})) == "/leads/home"


def test_second_factor_failures_are_throttled(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user, secret = _totp_user(app, make_user)
    sign_in(client, user.email)
    for _ in range(5):
        assert client.post("/auth/second-factor", data={"code": "000000"}).status_code == 200
    kicked = client.post("/auth/second-factor", data={"code": code_at(secret, NOW)})
    assert _path(kicked) == "/auth/login"
    with app.app_context():
        assert db.session.get(User, user.id).failed_logins == 5
        assert db.session.scalar(select(UserSession.revoked_reason)) == "throttled"
    assert sign_in(app.test_client(), user.email).status_code == 429


def test_a_recovery_code_signs_in_once(app, client, make_user, login_as, time_machine):
    time_machine.move_to(START, tick=False)
    user = make_user(email="lost.phone@clinic.test", password_hash=PASSWORD_HASH)
    login_as(client, user)
    secret = _secret_on(client.get("/auth/second-factor/setup").get_data(as_text=True))
    page = client.post("/auth/second-factor/setup", data={"code": code_at(secret, NOW)}).get_data(as_text=True)
    code = re.findall(r"<li><code>([a-z2-9-]{19})</code></li>", page)[3]
    first = app.test_client()
    sign_in(first, user.email)
    assert first.post("/auth/second-factor/recovery", data={"code": "aaaa-bbbb-cccc-dddd"}).status_code == 200
    response = first.post("/auth/second-factor/recovery", data={"code": code.upper()})
    assert _path(response) == "/auth/account"
    assert "9 left" in first.get("/auth/account").get_data(as_text=True)
    again = app.test_client()
    sign_in(again, user.email)
    assert again.post("/auth/second-factor/recovery", data={"code": code}).status_code == 200
    assert _path(again.get("/leads/home")) == "/auth/second-factor"
    assert ("success", '{"event":"recovery_used"}') in [(e.outcome, e.details) for e in audit_events(app)
                                                        if e.action == "second_factor"]


# --- re-authentication -----------------------------------------------------------------


def test_reauthentication_asks_for_a_fresh_code_when_enrolled(app, client, make_user, time_machine):
    time_machine.move_to(START, tick=False)
    user, secret = _totp_user(app, make_user)
    sign_in(client, user.email)
    client.post("/auth/second-factor", data={"code": code_at(secret, NOW)})
    time_machine.shift(dt.timedelta(minutes=6))
    stale = client.post("/auth/second-factor/recovery-codes", data={"next": "/auth/account"})
    assert stale.headers["Location"] == "/auth/reauth?next=/auth/account"
    no_code = client.post(stale.headers["Location"], data={"password": PASSWORD})
    assert no_code.status_code == 200
    later = START + dt.timedelta(minutes=6)
    ok = client.post(stale.headers["Location"], data={"password": PASSWORD, "code": code_at(secret, later.timestamp())})
    assert ok.headers["Location"] == "/auth/account"
    page = client.post("/auth/second-factor/recovery-codes", data={"next": "/auth/account"})
    assert page.status_code == 200
    assert len(re.findall(r"<li><code>", page.get_data(as_text=True))) == 10
    outcomes = [e.outcome for e in audit_events(app, "reauthenticated")]
    assert outcomes == ["failure", "success"]


def test_a_code_typed_in_another_scripts_digits_is_read_as_those_digits():
    secret = totp.new_secret()
    code = pyotp.TOTP(secret).now()
    arabic_indic = "".join(chr(0x0660 + int(digit)) for digit in code)
    assert totp.matching_step(secret, arabic_indic, None) is not None
    assert totp.matching_step(secret, "\u0668" * 6, None) is None  # wrong digits: refused, never an error
