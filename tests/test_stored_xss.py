"""Stored XSS (control 26): script, event-handler and javascript: payloads sent through the public form,
and held by staff records, come out escaped on every staff page; no template or module opts out of
autoescaping outside a reviewed allowlist."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.models import Enquiry, Lead, Role, db
from tests.test_public_form import PPO_NOT_HOLDER, fresh_token, submit, valid_form

SCRIPT = "<script>alert(1)</script>"
HOVER = '" onmouseover="alert(2)" x="'
JS_URL = "javascript:alert(3)"
IMAGE = "<img src=x onerror=alert(4)>"
#: Every free-text answer of the public form gets a payload; the others are refused by shape (below).
PAYLOADS = {
    "first_name": f"Ann{SCRIPT}",
    "last_name": f"Lee{HOVER}",
    "carrier": f"{JS_URL}//Aetna",
    "policyholder_name": f"Pat {IMAGE}",
    "message": f"{SCRIPT} {HOVER} {JS_URL} {IMAGE}",
}
USER_AGENT = f"Mozilla/5.0 {SCRIPT}"
#: Fields checked by shape, which must refuse a payload outright.
SHAPED_FIELDS = ("phone", "email", "zip_code", "member_id", "group_number", "dob", "policyholder_dob")

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href"}


class ActiveMarkup(HTMLParser):
    """Collect what a browser would run: inline scripts, event-handler attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=>")
            if name in URL_ATTRIBUTES and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:>")


def assert_escaped(page: str, *expected: str) -> None:
    """No payload is live markup in ``page``, and each ``expected`` text is there in escaped form."""
    parser = ActiveMarkup()
    parser.feed(page)
    parser.close()
    assert parser.found == []
    for text in expected:
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
        assert escaped in page, text


@pytest.fixture
def hostile_lead(client, app) -> str:
    """A lead made through the public form with a payload in every free-text field and the User-Agent."""
    data = {**valid_form(**{**PPO_NOT_HOLDER, **PAYLOADS}), "form_token": fresh_token(app)}
    response = client.post("/", data=data, environ_base={"HTTP_USER_AGENT": USER_AGENT})
    assert response.status_code == 303
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        assert (lead.first_name, lead.last_name) == (PAYLOADS["first_name"], PAYLOADS["last_name"])
        assert db.session.scalars(select(Enquiry)).one().answers["consent_user_agent"] == USER_AGENT
        return lead.id


@pytest.fixture
def hostile_coordinator(make_user):
    """A staff member whose name and e-mail hold payloads (as a database writer or careless invite could)."""
    return make_user(email=f'c{HOVER.replace(" ", "")}@clinic.test', display_name=f"Casey {SCRIPT}")


def test_shaped_public_fields_refuse_every_payload(client, app):
    for field in SHAPED_FIELDS:
        for payload in (SCRIPT, HOVER, JS_URL):
            overrides = {**PPO_NOT_HOLDER, field: payload} if field.startswith("policyholder") else {field: payload}
            response = submit(client, app, **overrides)
            assert response.status_code == 200, (field, payload)
            assert_escaped(response.get_data(as_text=True))
    with app.app_context():
        assert db.session.scalars(select(Lead)).first() is None


def test_staff_home_list_detail_timeline_and_audit_escape_stored_payloads(
        app, client, hostile_lead, hostile_coordinator, make_user, login_as):
    login_as(client, hostile_coordinator)
    home = client.get("/leads/home").get_data(as_text=True)  # the new lead waits in the unclaimed queue
    assert_escaped(home, PAYLOADS["first_name"], hostile_coordinator.display_name)
    assert client.post(f"/leads/{hostile_lead}/claim").status_code == 302
    note = f"Called back {SCRIPT} {JS_URL}"
    assert client.post(f"/leads/{hostile_lead}/notes", data={"body": note}).status_code == 302
    assert client.post(f"/leads/{hostile_lead}/reveal").status_code == 302

    listing = client.get("/leads/").get_data(as_text=True)
    assert_escaped(listing, PAYLOADS["first_name"], hostile_coordinator.display_name)
    detail = client.get(f"/leads/{hostile_lead}").get_data(as_text=True)
    assert_escaped(detail, PAYLOADS["first_name"], PAYLOADS["last_name"], PAYLOADS["carrier"],
                   PAYLOADS["message"], note, hostile_coordinator.display_name)

    admin = make_user(role=Role.ADMIN)
    login_as(client, admin)
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert_escaped(audit, hostile_coordinator.email, hostile_coordinator.display_name)
    access = client.get(f"/admin/leads/{hostile_lead}/access").get_data(as_text=True)
    assert_escaped(access, hostile_coordinator.display_name)  # events name staff by their shown name
    user_page = client.get(f"/admin/users/{hostile_coordinator.id}").get_data(as_text=True)
    assert_escaped(user_page, hostile_coordinator.email, hostile_coordinator.display_name)


def test_reflected_query_values_are_escaped_on_staff_pages(app, client, make_user, login_as):
    login_as(client, make_user(role=Role.ADMIN))
    for url in (f"/admin/audit?lead={HOVER}", f"/leads/?stage={SCRIPT}", f"/leads/search?query={SCRIPT}"):
        response = client.get(url)
        assert response.status_code in (200, 400), url
        assert_escaped(response.get_data(as_text=True))


# --- no opting out of autoescaping ----------------------------------------------------------------

CRM = Path(__file__).resolve().parent.parent / "crm"
UNESCAPING = re.compile(r"\|\s*safe\b|\bMarkup\s*\(|autoescape\s+false|render_template_string|"
                        r"\bmarkupsafe\b|\bjinja2\.Template\b|Environment\(")
#: Reviewed uses, by path under crm/ and the line's text; each needs a comment saying why it is safe.
ALLOWLIST: dict[tuple[str, str], str] = {}


def unescaping_uses() -> list[tuple[str, str]]:
    """Every line in crm/ that turns autoescaping off or marks text as safe HTML."""
    found = []
    for path in sorted(CRM.rglob("*")):
        if path.suffix not in (".py", ".html", ".txt", ".xml", ".js") or "__pycache__" in path.parts:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if UNESCAPING.search(line):
                found.append((str(path.relative_to(CRM)), line.strip()))
    return found


def test_no_safe_filter_or_markup_outside_the_reviewed_allowlist():
    assert [use for use in unescaping_uses() if use not in ALLOWLIST] == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    lines = ["{{ note|safe }}", "{{ note | safe }}", "return Markup(text)", "{% autoescape false %}",
             "render_template_string(body)", "from markupsafe import Markup"]
    assert all(UNESCAPING.search(line) for line in lines)
    assert not UNESCAPING.search("a URL-safe token; keep it somewhere safe")


def test_every_template_is_autoescaped(app):
    templates = [p for p in (CRM / "templates").rglob("*") if p.is_file()]
    assert templates and all(p.suffix == ".html" for p in templates)
    assert all(app.jinja_env.autoescape(p.name) is True for p in templates)
