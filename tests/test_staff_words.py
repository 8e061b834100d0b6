"""Staff pages speak words, not codes, and every word they show goes through the translation calls.

The guard renders every staff page under a pseudo-catalog that brackets each translated message
(``‹Stage›``): any visible text left outside brackets, once data values (names, references, dates,
numbers) are set aside, is a string that would stay English in another staff language.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from babel.support import NullTranslations
from flask_babel import Domain
from sqlalchemy import select

from crm import payers
from crm.models import Lead, Role, db

from . import sentinels as s
from .auth_helpers import sample_url
from .test_clinicians import NEEDS_REVIEW
from .test_public_form import submit
from .test_staff_intake import call_form

OPEN, CLOSE = "‹", "›"
MONTHS = r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b"
STAFF_PREFIXES = ("/leads", "/admin", "/alerts", "/reports", "/auth/account", "/auth/password")
#: Pages that are files or redirects, not pages of words.
NOT_PAGES = ("/reports/export/", ".ics", "/cards/", "/export")


class Pseudo(NullTranslations):
    """A catalog that brackets every message, so translated text can be told from text that is not."""

    def gettext(self, message):
        return f"{OPEN}{message}{CLOSE}"

    def ngettext(self, singular, plural, n):
        return f"{OPEN}{singular if n == 1 else plural}{CLOSE}"

    def pgettext(self, context, message):
        return self.gettext(message)

    def npgettext(self, context, singular, plural, n):
        return self.ngettext(singular, plural, n)

    ugettext, ungettext, upgettext, unpgettext = gettext, ngettext, pgettext, npgettext


class _Text(HTMLParser):
    """The visible text of a page (and its labelling attributes), without scripts and styles."""

    ATTRIBUTES = ("aria-label", "title", "placeholder", "alt")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._closes: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "title") or ("translate", "no") in attrs:
            self._skip += 1
            self._closes.append(tag)
        self.parts += [f" {value} " for name, value in attrs if name in self.ATTRIBUTES and value]
        if tag == "option" or tag == "td" or tag == "th" or tag == "li" or tag == "dd" or tag == "dt":
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if self._closes and tag == self._closes[-1]:
            self._skip -= 1
            self._closes.pop()

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def untranslated(page: str, data: list[str]) -> list[str]:
    """Words of ``page`` outside any bracketed (translated) message and not one of the ``data`` values."""
    parser = _Text()
    parser.feed(page)
    text = "".join(parser.parts)
    inner = re.compile(f"{OPEN}[^{OPEN}{CLOSE}]*{CLOSE}")
    while inner.search(text):
        text = inner.sub(" ", text)
    for value in sorted(data, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", " ", text)
    text = re.sub(MONTHS, " ", text)
    text = re.sub(r"\b[0-9a-f]{8}\b", " ", text)  # request ids
    return [phrase.strip() for phrase in re.split(r"\s{2,}|\n", text) if re.search(r"[^\W\d_]{2,}", phrase)]


@pytest.fixture
def pseudo(monkeypatch):
    """Every translation call of the app answers from the bracketing pseudo-catalog."""
    monkeypatch.setattr(Domain, "get_translations", lambda self: Pseudo())


def _lead(app) -> Lead:
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        db.session.expunge(lead)
        return lead


@pytest.fixture
def busy_lead(app, client, make_user, login_as):
    """A web enquiry worked on by a coordinator: attempts, a note, a callback, a stage move."""
    assert submit(client, app).status_code == 303
    lead = _lead(app)
    coordinator = make_user(email="dana@clinic.test", role=Role.COORDINATOR, display_name="Dana Reyes")
    login_as(client, coordinator)
    base = f"/leads/{lead.id}"
    client.post(f"{base}/claim")
    client.post(f"{base}/attempts", data={"channel": "call", "outcome": "no_answer"})
    client.post(f"{base}/attempts", data={"channel": "call", "outcome": "reached", "confirm_repeat": "y"})
    client.post(f"{base}/notes", data={"body": s.NOTE})
    client.post(f"{base}/callbacks", data={"due_at": "2031-05-04T10:30"})
    client.post(f"{base}/stage", data={"target": "contacted", "expected": "contacting"})
    client.post(f"{base}/stage", data={"target": "contacted", "expected": "new"})
    moderate_risk = {**NEEDS_REVIEW, "cssrs_q1": "yes", "cssrs_q2": "yes", "cssrs_q3": "yes", "cssrs_q4": "no",
                     "cssrs_q5": "no"}  # its reasons and triage steps are rule-file words on the lead page
    assert client.post(f"{base}/screenings", data=moderate_risk).status_code == 302
    return lead


def _data_values(lead: Lead) -> list[str]:
    return [s.FIRST_NAME, s.LAST_NAME, s.EMAIL, s.MESSAGE, s.NOTE, s.MEMBER_ID, s.GROUP_NUMBER, lead.reference,
            "Dana Reyes", "dana@clinic.test", "admin@clinic.test", "Aetna", "Zebulonia Q.", "Intake Clinic",
            "America/Los_Angeles", "PHQ-9", "C-SSRS", "Spravato", "GAD-7", "PPO", "HMO", "EPO", "REMS", "NPI",
            "Mozilla", "Werkzeug", "werkzeug", "localhost", "UTC", "CSV", "AM", "PM", "Medicare", "VA / TRICARE",
            "Quillcarrier Mutual", *(name for _code, name in payers.PAYERS)]


def test_every_staff_page_shows_only_translated_words(app, client, busy_lead, make_user, login_as, pseudo):
    admin = make_user(email="admin@clinic.test", role=Role.ADMIN, display_name="Ada Admin")
    login_as(client, admin)
    client.get(f"/leads/{busy_lead.id}")
    data = [*_data_values(busy_lead), "Ada Admin"]
    problems = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        url = sample_url(rule).replace("00000000-0000-4000-8000-000000000000", busy_lead.id)
        if "GET" not in rule.methods or not url.startswith(STAFF_PREFIXES) or any(n in url for n in NOT_PAGES):
            continue
        response = client.get(url)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        words = untranslated(response.get_data(as_text=True), data)
        if words:
            problems[url] = sorted(set(words))[:60]
    assert not problems, "\n".join(f"{url}: {phrases}" for url, phrases in problems.items())


def test_the_guard_catches_an_unwrapped_string():
    page = "<p>‹Stage› New</p><p>‹Saved: ‹phone› changed.›</p><td>Dana Reyes</td>"
    assert untranslated(page, ["Dana Reyes"]) == ["New"]
    assert untranslated("<p>‹Due› Dec 4, 2031</p>", []) == []


def visible(markup: str) -> str:
    """The text of some markup, tags removed."""
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def test_the_lead_page_shows_words_not_codes(app, client, busy_lead):
    page = client.get(f"/leads/{busy_lead.id}").get_data(as_text=True)
    timeline = visible(page[page.index('id="timeline"'):].split("</ol>")[0])
    assert "2 or more" in timeline  # the public form's own words for meds_tried=two_plus
    assert "My doctor or therapist" in timeline and "Spravato (esketamine)" in timeline
    for code in ("two_plus", "spravato", "not_sure", "(doctor)", "no_answer", "False", "True", "_"):
        assert code not in timeline, code
    assert "Call: No answer" in timeline and "Stage Contacting → Contacted" in timeline
    contact = visible(page[page.index('id="contact"'):page.index('id="timeline"')])
    assert "Text OK: Yes" in contact and "False" not in contact and "True" not in contact
    consent = page[page.index('id="consent"'):]
    consent = visible(consent[:consent.index("</dd>")])
    assert "on the web form" in consent and "English" in consent and app.config["CONSENT_VERSION"] in consent
    assert "agreed" in consent


def test_a_verbal_consent_is_shown_as_verbal(app, client, make_user, login_as):
    coordinator = make_user(role=Role.COORDINATOR)
    login_as(client, coordinator)
    response = client.post("/leads/new", data=call_form())
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    consent = page[page.index('id="consent"'):]
    consent = visible(consent[:consent.index("</dd>")])
    assert "verbally, on the phone" in consent and app.config["CONSENT_VERSION"] in consent


def test_the_audit_viewer_shows_names_references_and_summaries(app, client, busy_lead, make_user, login_as):
    admin = make_user(email="admin@clinic.test", role=Role.ADMIN, display_name="Ada Admin")
    client.get("/leads/")  # a listing by the coordinator
    login_as(client, admin)
    page = html.unescape(client.get("/admin/audit").get_data(as_text=True))
    table = page[page.index("<table"):page.index("</table>")]
    assert "Dana Reyes" in table and busy_lead.reference in table
    assert "Leads listed" in table and "1 lead listed" in table and "<details>" in table
    assert "Contact attempt logged" in table
    assert busy_lead.id not in table.replace(f"/admin/leads/{busy_lead.id}/access", "")
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}", table.replace(f"/leads/{busy_lead.id}", ""))
    assert "{" not in table and "attempt_logged" not in table and "leads_listed" not in table
