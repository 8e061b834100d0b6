"""Fuzz the staff forms as the public form is fuzzed: sign-in, second factor, lead actions and user
administration take any text (NUL bytes, controls, any script, huge values) and never answer 500."""

from __future__ import annotations

import os

from hypothesis import event, given, settings
from hypothesis import strategies as st

from crm.forms.admin import InviteForm, RoleForm
from crm.forms.auth import CodeForm, LoginForm, PasswordChangeForm, ReauthForm, RecoveryForm
from crm.forms.leads import AttemptForm, CallbackForm, NoteForm, ScreeningForm, SearchForm, StageForm, VobForm
from crm.models import Insurance, Lead, Role, db
from tests.auth_helpers import PASSWORD, PASSWORD_HASH, give_totp

EXAMPLES = 200 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 40
NASTY = ("\x00", "a\x00b", "\r\n", "\u202e", "\ufeff", "' OR 1=1 --", "<script>", "9" * 400, "٨٨٨٨٨٨", "-1",
         "2026-13-45", "99999999999999999999", "1e309", "NaN", "", " ", "yes", "no", "ppo", "call", "me", "none")
values = st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=80), st.sampled_from(NASTY),
                   st.dates().map(lambda d: d.isoformat()), st.integers().map(str))


def field_names(app, *forms) -> tuple[str, ...]:
    """The posted names of every field of ``forms`` (as a browser would send them)."""
    with app.test_request_context():
        return tuple(sorted({name for form in forms for name in form(meta={"csrf": False})._fields}))


def fuzz_post(client, url: str, names: tuple[str, ...], data) -> int:
    """POST arbitrary values for some of ``names``; the answer must never be a server error."""
    response = client.post(url, data=data)
    event(f"{url.split('/')[-1] or url}: {response.status_code}")
    assert response.status_code < 500, (url, data, response.status_code)
    return response.status_code


def payloads(names: tuple[str, ...]):
    return st.dictionaries(st.sampled_from(names), values, max_size=len(names))


def test_sign_in_and_second_factor_forms_never_fail(app, client, make_user, login_as):
    user = make_user(email="fuzz@clinic.test", password_hash=PASSWORD_HASH)
    give_totp(app, user)
    login_names = field_names(app, LoginForm)
    code_names = field_names(app, CodeForm, RecoveryForm, ReauthForm)
    password_names = field_names(app, PasswordChangeForm)
    half_signed_in, signed_in = app.test_client(), app.test_client()
    login_as(half_signed_in, user, second_factor=False)
    login_as(signed_in, user)

    @settings(max_examples=EXAMPLES)
    @given(login=payloads(login_names), code=payloads(code_names), password=payloads(password_names))
    def run(login, code, password):
        fuzz_post(client, "/auth/login", login_names, login)
        for url in ("/auth/second-factor", "/auth/second-factor/recovery", "/auth/reauth"):
            fuzz_post(half_signed_in, url, code_names, code)
        fuzz_post(signed_in, "/auth/password", password_names, password)

    run()
    assert client.post("/auth/login", data={"email": "fuzz@clinic.test", "password": PASSWORD}).status_code < 500


def test_lead_action_forms_never_fail(app, client, make_user, make_lead, login_as):
    coordinator = make_user()
    login_as(client, coordinator)
    lead_id = make_lead(phone="(949) 555-0142")
    with app.app_context():
        db.session.add(Insurance(lead=db.session.get(Lead, lead_id), coverage_type="ppo"))
        db.session.commit()
    actions = {
        "attempts": field_names(app, AttemptForm), "callbacks": field_names(app, CallbackForm),
        "notes": field_names(app, NoteForm), "assign": ("assignee",), "stage": field_names(app, StageForm),
        "insurance": field_names(app, VobForm), "screenings": field_names(app, ScreeningForm),
    }
    search_names = field_names(app, SearchForm)

    @settings(max_examples=EXAMPLES)
    @given(action=st.sampled_from(sorted(actions)), data=st.data())
    def run(action, data):
        names = actions[action]
        fuzz_post(client, f"/leads/{lead_id}/{action}", names, data.draw(payloads(names)))
        fuzz_post(client, "/leads/search", search_names, data.draw(payloads(search_names)))
        query = data.draw(st.dictionaries(st.sampled_from(("stage", "assignee", "source", "urgency", "created_from",
                                                           "created_to", "sort", "page", "query")), values, max_size=4))
        response = client.get("/leads/", query_string=query)
        assert response.status_code < 500, (query, response.status_code)

    run()
    assert client.get(f"/leads/{lead_id}").status_code == 200


def test_user_administration_forms_never_fail(app, client, make_user, login_as):
    admin = make_user(role=Role.ADMIN)
    target = make_user()
    login_as(client, admin)
    invite_names = field_names(app, InviteForm)
    role_names = field_names(app, RoleForm)
    audit_names = ("user", "lead", "action", "date_from", "date_to", "before", "after")

    @settings(max_examples=EXAMPLES)
    @given(invite=payloads(invite_names), role=payloads(role_names), audit=payloads(audit_names))
    def run(invite, role, audit):
        fuzz_post(client, "/admin/users/new", invite_names, invite)
        fuzz_post(client, f"/admin/users/{target.id}/role", role_names, role)
        fuzz_post(client, "/admin/audit/export", audit_names, audit)
        response = client.get("/admin/audit", query_string=audit)
        assert response.status_code < 500, (audit, response.status_code)

    run()
    assert client.get("/admin/users").status_code == 200


HUGE = "9" * 400  # WTForms' NumberRange turned this into a float (OverflowError); PostgreSQL refuses a BIGINT


def test_numbers_too_long_to_use_are_a_field_error_not_a_500(app, client, make_user, make_lead, login_as):
    login_as(client, make_user(role=Role.ADMIN))
    lead_id = make_lead()
    assert client.get("/leads/", query_string={"page": HUGE}).status_code < 500
    audit = client.get("/admin/audit", query_string={"before": HUGE})
    assert audit.status_code < 500 and "Enter a smaller number." in audit.get_data(as_text=True)
    assert client.post("/admin/audit/export", data={"after": HUGE}).status_code == 302
    vob = client.post(f"/leads/{lead_id}/insurance", data={"pa_units": HUGE, "inn_coinsurance": "-" + HUGE})
    assert vob.status_code < 500
