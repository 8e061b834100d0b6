"""The public enquiry form: validation, storage, dedupe, abuse controls, durability, encryption."""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import itsdangerous.timed
import pytest
from PIL import Image
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from crm import statements
from crm.models import (
    AuditEvent,
    Enquiry,
    Insurance,
    InsuranceCard,
    Lead,
    LeadEvent,
    LeadProposal,
    Stage,
    User,
    db,
)
from crm.operations import enquiries as ops
from crm.public import issue_form_token
from crm.settings import DEFAULTS
from tests import cardfiles
from tests import sentinels as s
from tests.auth_helpers import hidden_value

CARRIER = "Quillcarrier Mutual"
DOB = s.DOB
PNG = cardfiles.png_with_text("CardFrontSentinel")  # a real PNG; its text chunk must not survive
PDF = cardfiles.plain_pdf(title="CardBackSentinel")  # a real PDF, kept as sent
SUBMITTED = (*s.ALL, CARRIER, DOB, b"CardFrontSentinel", b"CardBackSentinel")


def valid_form(**overrides) -> dict:
    """A complete, valid submission using PHI sentinels; ``None`` removes a field."""
    data = {
        "first_name": s.FIRST_NAME,
        "last_name": s.LAST_NAME,
        "dob": DOB,
        "phone": s.PHONE,
        "email": s.EMAIL,
        "zip_code": s.ZIP_CODE,
        "preferred_contact": "call",
        "best_time": "morning",
        "voicemail_ok": "y",
        "text_ok": "y",
        "interest": "spravato",
        "concerns": ["depression", "anxiety"],
        "meds_tried": "two_plus",
        "has_psychiatrist": "yes",
        "heard_about": "doctor",
        "veteran": "no",
        "need_help_now": "no",
        "coverage_type": "ppo",
        "carrier": CARRIER,
        "member_id": s.MEMBER_ID,
        "group_number": s.GROUP_NUMBER,
        "is_policyholder": "yes",
        "message": s.MESSAGE,
        "contact_consent": "y",
        "privacy_ack": "y",
    }
    for name, value in overrides.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def fresh_token(app) -> str:
    """A form token exactly as a rendering of the form would carry."""
    with app.test_request_context():
        return issue_form_token()


def submit(client, app, token: str | None = None, **overrides):
    """POST the form with a fresh (or given) token."""
    data = valid_form(**overrides)
    data["form_token"] = token or fresh_token(app)
    return client.post("/", data=data)


def row_counts(app) -> dict[str, int]:
    """Rows in every table."""
    with app.app_context():
        return {
            table.name: db.session.execute(text(f'SELECT COUNT(*) FROM "{table.name}"')).scalar_one()
            for table in db.metadata.sorted_tables
        }


def assert_nothing_stored(app) -> None:
    counts = row_counts(app)
    assert not any(counts.values()), counts


def the_lead(app) -> Lead:
    return db.session.scalars(select(Lead)).one()


def errors_in(response) -> list[tuple[str, str]]:
    found = re.findall(r'<p class="error" id="([^"]+)-error">([^<]+)</p>', response.get_data(as_text=True))
    return [(field, html.unescape(message)) for field, message in found]


def same_pixels(stored: bytes, sent: bytes) -> bool:
    """True when two image files show the same picture, pixel for pixel."""
    with Image.open(io.BytesIO(stored)) as first, Image.open(io.BytesIO(sent)) as second:
        return first.size == second.size and first.convert("RGB").tobytes() == second.convert("RGB").tobytes()


def years_ago(years: int, days: int = 0) -> str:
    """A date of birth ``years`` (and ``days``) before today in the clinic's zone, which is what the form checks."""
    today = dt.datetime.now(ZoneInfo(DEFAULTS["TIMEZONE"])).date()
    return (today.replace(year=today.year - years) - dt.timedelta(days=days)).isoformat()


# --- rendering ---------------------------------------------------------------------------


def test_form_shows_every_section_labelled_with_consent_wording(client, app):
    page = client.get("/").get_data(as_text=True)
    for legend in ("About you", "What you are looking for", "Do you need help right now?", "Insurance",
                   "Your message", "Your consent"):
        assert f"<legend><h2>{legend}</h2></legend>" in page
    ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', page))
    labelled = set(re.findall(r'<label for="([^"]+)"', page))
    assert ids - {"csrf_token", "form_token"} <= labelled
    assert "may contact me at the number above by call or text, including with automated technology" in page
    assert app.config["CLINIC_NAME"] + " may contact me" in page
    assert "Consent is not a condition of receiving services" in page
    assert 'href="/privacy"' in page
    assert "Share only what you're comfortable sharing" in page  # catalog text is trusted markup: no entity
    assert "This form is not monitored 24/7" in page
    assert "Your information is confidential" in page
    assert 'enctype="multipart/form-data"' in page and "novalidate" in page
    assert "<script" not in page


def test_each_rendering_gets_its_own_token(client):
    tokens = {re.search(r'name="form_token" type="hidden" value="([^"]+)"', client.get("/").get_data(as_text=True))
              .group(1) for _ in range(3)}
    assert len(tokens) == 3


# --- validation --------------------------------------------------------------------------

PPO_NOT_HOLDER = {"is_policyholder": "no", "policyholder_name": "Pat Holder", "policyholder_dob": "1960-01-02",
                  "policyholder_relationship": "spouse"}

VALIDATION_CASES = [
    ({"first_name": ""}, "first_name", "Enter your first name."),
    ({"first_name": "x" * 81}, "first_name", "Please keep this to 80 characters or fewer."),
    ({"last_name": "   "}, "last_name", "Enter your last name."),
    ({"dob": ""}, "dob", "Enter your date of birth."),
    ({"dob": "1984-02-31"}, "dob", "Enter your date of birth as a real date, for example 04/23/1985."),
    ({"dob": "yesterday"}, "dob", "Enter your date of birth as a real date, for example 04/23/1985."),
    ({"dob": "2999-01-01"}, "dob", "The date of birth can't be in the future."),
    ({"dob": "1880-01-01"}, "dob", "Please check the year of the date of birth."),
    ({"phone": "123"}, "phone", "Enter a phone number we can call, like (949) 555-0100."),
    ({"phone": "", "email": ""}, "phone", "Give us a phone number or an e-mail address so we can reach you."),
    ({"phone": "", "preferred_contact": "text"}, "phone",
     "To hear from us by phone or text, please enter your phone number."),
    ({"email": "", "preferred_contact": "email"}, "email",
     "To hear from us by e-mail, please enter your e-mail address."),
    ({"email": "not-an-address"}, "email", "Enter an e-mail address like name@example.com."),
    ({"zip_code": "9261"}, "zip_code", "Enter a 5-digit ZIP code."),
    ({"need_help_now": None}, "need_help_now", "Please tell us whether you need help right now."),
    ({"coverage_type": None}, "coverage_type", "Choose your kind of coverage, or “Not sure”."),
    ({"carrier": ""}, "carrier", "Enter the name of your insurance company."),
    ({"member_id": ""}, "member_id", "Enter the member ID from your insurance card."),
    ({"member_id": "<b>1</b>"}, "member_id",
     "The member ID can use letters, numbers, spaces and dashes (up to 30)."),
    ({"group_number": "G" * 31}, "group_number",
     "The group number can use letters, numbers, spaces and dashes (up to 30)."),
    ({"is_policyholder": None}, "is_policyholder", "Please tell us whether you are the policyholder."),
    ({**PPO_NOT_HOLDER, "policyholder_name": ""}, "policyholder_name", "Enter the policyholder's full name."),
    ({**PPO_NOT_HOLDER, "policyholder_dob": ""}, "policyholder_dob",
     "Enter the policyholder's date of birth."),
    ({**PPO_NOT_HOLDER, "policyholder_dob": "13/45/1960"}, "policyholder_dob",
     "Enter the policyholder's date of birth as a real date, for example 04/23/1985."),
    ({**PPO_NOT_HOLDER, "policyholder_relationship": ""}, "policyholder_relationship",
     "Choose the policyholder's relationship to you."),
    ({"message": "m" * 1001}, "message", "Please keep your message to 1,000 characters or fewer."),
    ({"contact_consent": None}, "contact_consent", "To hear from us by text, please tick the box agreeing to calls "
     "and texts, or choose another way to reach you."),
    ({"contact_consent": None, "text_ok": None, "preferred_contact": "text"}, "contact_consent",
     "To hear from us by text, please tick the box agreeing to calls and texts, or choose another way to reach you."),
    ({"privacy_ack": None}, "privacy_ack", "Please confirm you have read the privacy notice."),
    ({"card_front": (io.BytesIO(b"just text, not a picture"), "card.jpg", "image/jpeg")}, "card_front",
     "Card photos must be JPEG, PNG or PDF files."),
    ({"card_back": (io.BytesIO(b"\xff\xd8\xff\xe0" + b"0" * (5 * 1024 * 1024)), "big.jpg", "image/jpeg")},
     "card_back", "Each card photo must be 5 MB or smaller."),
]


@pytest.mark.parametrize(("overrides", "field", "message"), VALIDATION_CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(VALIDATION_CASES)])
def test_validation_message_next_to_field_and_in_summary(client, app, overrides, field, message):
    response = submit(client, app, **overrides)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert errors_in(response) == [(field, message)]
    assert f'<li><a href="#{field}">{message}</a></li>' in html.unescape(page)
    assert re.search(rf'id="{field}"[^>]*aria-describedby="[^"]*{field}-error|'
                     rf'aria-describedby="[^"]*{field}-error"[^>]*id="{field}"', page)
    assert_nothing_stored(app)


def test_commercial_details_are_optional_for_other_coverage(client, app):
    response = submit(client, app, coverage_type="medicare", carrier="", member_id="", is_policyholder=None)
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Insurance)).one().coverage_type == "medicare"


def test_values_are_kept_on_re_render_but_files_are_not(client, app):
    response = submit(client, app, privacy_ack=None,
                      card_front=(io.BytesIO(PNG), "front.png", "image/png"))
    page = response.get_data(as_text=True)
    assert f'value="{s.FIRST_NAME}"' in page and f'value="{s.EMAIL}"' in page and f'value="{DOB}"' in page
    assert s.MESSAGE in page
    assert re.search(r'id="need_help_now-1"[^>]*checked|checked[^>]*id="need_help_now-1"', page)
    assert "CardFrontSentinel" not in page
    assert "please choose them again" in page


def test_user_input_is_escaped_on_re_render(client, app):
    response = submit(client, app, first_name='"><script>alert(1)</script>', privacy_ack=None)
    page = response.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&#34;&gt;&lt;script&gt;" in page


# --- a stored enquiry ----------------------------------------------------------------------


def test_valid_submission_stores_lead_enquiry_insurance_cards_and_audit(client, app):
    files = {"card_front": (io.BytesIO(PNG), "front.png", "image/png"),
             "card_back": (io.BytesIO(PDF), "back.jpg", "image/jpeg")}
    response = submit(client, app, marketing_consent="y", **files)
    assert response.status_code == 303
    with app.app_context():
        lead = the_lead(app)
        assert (lead.first_name, lead.last_name, lead.dob) == (s.FIRST_NAME, s.LAST_NAME, dt.date(1984, 3, 9))
        assert (lead.phone, lead.email, lead.zip_code) == (s.PHONE, s.EMAIL, s.ZIP_CODE)
        assert lead.stage == Stage.NEW and lead.source == "web_form" and not lead.urgent
        assert lead.marketing_consent is True
        assert lead.preferences == {"contact_method": "call", "best_time": "morning", "voicemail_ok": True,
                                    "text_ok": True}
        enquiry = db.session.scalars(select(Enquiry)).one()
        assert enquiry.lead_id == lead.id and len(enquiry.idempotency_digest) == 64
        assert enquiry.consent_version == app.config["CONSENT_VERSION"]
        assert enquiry.privacy_ack and enquiry.marketing_consent and not enquiry.crisis
        assert enquiry.consent_ip == "127.0.0.1"
        assert abs(enquiry.consented_at - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(minutes=1)
        answers = enquiry.answers
        assert answers["concerns"] == ["depression", "anxiety"] and answers["message"] == s.MESSAGE
        assert answers["submitted"]["phone"] == s.PHONE
        insurance = db.session.scalars(select(Insurance)).one()
        assert (insurance.coverage_type, insurance.carrier, insurance.member_id, insurance.group_number) == (
            "ppo", CARRIER, s.MEMBER_ID, s.GROUP_NUMBER)
        assert insurance.patient_is_policyholder is True and insurance.policyholder is None
        cards = {card.side: card for card in db.session.scalars(select(InsuranceCard))}
        assert cards["front"].media_type == "image/png"
        assert same_pixels(cards["front"].content, PNG) and b"CardFrontSentinel" not in cards["front"].content
        assert cards["front"].size == len(cards["front"].content)
        assert cards["back"].media_type == "application/pdf" and cards["back"].content == PDF
        assert cards["back"].size == len(PDF)
        events = db.session.scalars(select(LeadEvent)).all()
        assert [(e.kind, e.to_stage) for e in events] == [("created", "new")]
        event = db.session.scalars(select(AuditEvent)).one()
        assert (event.action, event.actor_kind, event.object_type, event.object_id) == (
            "enquiry_received", "public", "lead", lead.id)
        assert json.loads(event.details) == {"returning": False, "urgent": False, "cards": 2}


def test_policyholder_details_are_stored_when_patient_is_not_the_policyholder(client, app):
    assert submit(client, app, **PPO_NOT_HOLDER).status_code == 303
    with app.app_context():
        insurance = db.session.scalars(select(Insurance)).one()
        assert insurance.patient_is_policyholder is False
        assert insurance.policyholder == {"name": "Pat Holder", "dob": "1960-01-02", "relationship": "spouse"}


def test_post_redirect_get_shows_reference_and_no_phi(client, app, caplog):
    response = submit(client, app)
    assert response.status_code == 303
    assert response.headers["Location"] == "/thanks"
    page = client.get("/thanks")
    body = page.get_data(as_text=True)
    with app.app_context():
        reference = the_lead(app).reference
    assert page.status_code == 200 and reference in body
    assert "We have received your enquiry" in body
    assert page.headers["Cache-Control"] == "no-store"
    for value in SUBMITTED:
        text_value = value.decode() if isinstance(value, bytes) else value
        assert text_value not in body
        assert text_value not in response.headers["Location"]
        assert all(text_value not in record.getMessage() for record in caplog.records)
    assert client.get("/thanks").status_code == 200  # a refresh still shows the receipt


def test_thanks_without_a_submission_goes_to_the_form(client):
    response = client.get("/thanks")
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_mass_assignment_is_ignored(client, app):
    response = submit(client, app, stage="eligible", role="admin", urgent="1", reference="HACK-0001",
                      source="referral", lead_id="x", id="00000000-0000-0000-0000-000000000000")
    assert response.status_code == 303
    with app.app_context():
        lead = the_lead(app)
        assert lead.stage == Stage.NEW and not lead.urgent and lead.source == "web_form"
        assert lead.reference != "HACK-0001" and lead.id != "00000000-0000-0000-0000-000000000000"
        assert db.session.scalar(select(db.func.count(User.id))) == 0


# --- deduplication -------------------------------------------------------------------------


@pytest.mark.parametrize("second_phone", ["+1 949.555.0142", "949-555-0142", "(949) 555 0142"])
def test_same_phone_in_another_format_joins_the_existing_lead(client, app, second_phone):
    assert submit(client, app).status_code == 303
    assert submit(client, app, phone=second_phone, email="other@example.net").status_code == 303
    with app.app_context():
        lead = the_lead(app)
        assert len(lead.enquiries) == 2
        kinds = [e.kind for e in db.session.scalars(select(LeadEvent).order_by(LeadEvent.at))]
        assert kinds == ["created", "returned"]
        details = [json.loads(e.details) for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
        assert [d["returning"] for d in details] == [False, True]


def test_same_email_in_another_case_joins_the_existing_lead_and_only_proposes_the_phone(client, app):
    """An anonymous enquiry never writes a lead's contact details, not even into a gap (issue 14)."""
    assert submit(client, app, phone="", preferred_contact="email").status_code == 303
    assert submit(client, app, email=s.EMAIL.upper()).status_code == 303
    with app.app_context():
        lead = the_lead(app)
        assert len(lead.enquiries) == 2 and lead.phone is None and lead.phone_bidx is None and lead.email == s.EMAIL
        proposal = db.session.scalars(select(LeadProposal)).one()
        assert proposal.lead_id == lead.id and proposal.status == "pending" and proposal.values["phone"] == s.PHONE


@pytest.mark.parametrize("stage", [Stage.CLOSED, Stage.UNREACHABLE])
def test_closed_or_unreachable_lead_reopens(client, app, make_lead, stage):
    lead_id = make_lead(phone="949 555 0142", dob=dt.date(1984, 3, 9), stage=stage, stage_reason="other")
    assert submit(client, app, email="").status_code == 303
    with app.app_context():
        lead = the_lead(app)
        assert lead.id == lead_id and lead.stage == Stage.CONTACTING and lead.stage_reason == "patient_returned"
        event = db.session.scalars(select(LeadEvent)).one()
        assert (event.kind, event.from_stage, event.to_stage, event.reason) == (
            "reopened", stage, Stage.CONTACTING, "patient_returned")


def test_relatives_sharing_a_phone_and_email_are_not_merged(client, app):
    assert submit(client, app).status_code == 303
    assert submit(client, app, first_name="Orrin", dob="1951-07-30").status_code == 303
    with app.app_context():
        leads = db.session.scalars(select(Lead)).all()
        assert len(leads) == 2
        assert {lead.dob for lead in leads} == {dt.date(1984, 3, 9), dt.date(1951, 7, 30)}
        assert all(len(lead.enquiries) == 1 for lead in leads)


def test_unreadable_candidate_is_audited_and_skipped(client, app, make_lead):
    broken = make_lead(phone=s.PHONE, dob=dt.date(1984, 3, 9))
    with app.app_context():
        db.session.execute(text("UPDATE leads SET dob_enc = phone_enc WHERE id = :id"), {"id": broken})
        db.session.commit()
    assert submit(client, app).status_code == 303
    with app.app_context():
        assert len(db.session.scalars(select(Lead)).all()) == 2
        failed = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "decrypt_failed")).one()
        assert (failed.object_id, failed.outcome, failed.ip) == (broken, "failure", None)


def test_different_people_get_different_leads(client, app):
    assert submit(client, app).status_code == 303
    assert submit(client, app, phone="(714) 555-0199", email="someone.else@example.net").status_code == 303
    with app.app_context():
        assert len(db.session.scalars(select(Lead)).all()) == 2


# --- double submit, honeypot, fill time, rate limit, CSRF, size ---------------------------


def test_double_submit_is_stored_once_and_both_land_on_the_same_thanks(client, app):
    token = fresh_token(app)
    first = submit(client, app, token=token)
    first_page = client.get("/thanks").get_data(as_text=True)
    second = submit(client, app, token=token, message="changed my mind")
    assert first.status_code == second.status_code == 303
    assert second.headers["Location"] == "/thanks"
    with app.app_context():
        reference = the_lead(app).reference
        assert db.session.scalar(select(db.func.count(Enquiry.id))) == 1
        assert db.session.scalar(select(db.func.count(AuditEvent.seq))) == 1
    assert reference in first_page and reference in client.get("/thanks").get_data(as_text=True)


def test_the_same_form_sent_twice_at_once_is_stored_once(app):
    """Two requests carrying one form token race: the second waits for the intake lock and gets the first's receipt."""
    submission = ops.Submission(
        contact=ops.Contact("Race", "Twice", dt.date(1980, 1, 2), phone="(949) 555-0177"),
        coverage=ops.Coverage("self_pay"),
        consent=ops.Consent("2026-01", None, privacy_ack=True, marketing=False),
        idempotency_digest="d" * 64,
    )
    first_inside, receipts = threading.Event(), {}

    def send(name: str, hold: float) -> None:
        with app.app_context():
            receipts[name] = ops.receive_enquiry(ops.prepare_enquiry(submission))
            first_inside.set()
            time.sleep(hold)  # the first sender holds the lock a moment before committing
            db.session.commit()

    first = threading.Thread(target=send, args=("first", 0.3))
    first.start()
    first_inside.wait(5)
    send("second", 0)
    first.join()
    assert receipts["first"] == receipts["second"]
    assert row_counts(app)["enquiries"] == 1 and row_counts(app)["leads"] == 1


def test_honeypot_shows_success_and_stores_nothing(client, app):
    response = submit(client, app, website="http://spam.example")
    assert response.status_code == 303 and response.headers["Location"] == "/thanks"
    page = client.get("/thanks").get_data(as_text=True)
    assert "We have received your enquiry" in page and re.search(r'class="reference">[A-Z0-9]{4}-[A-Z0-9]{4}<', page)
    assert_nothing_stored(app)


@pytest.fixture
def slow_fill(config):
    config["ENQUIRY_MIN_FILL_SECONDS"] = 3
    return config


def test_too_quick_a_submission_is_asked_to_send_again(slow_fill, client, app, monkeypatch):
    response = submit(client, app)
    assert response.status_code == 200
    assert "Please check your answers, then press “Send my enquiry” again." in response.get_data(as_text=True)
    assert_nothing_stored(app)
    signed_earlier = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: signed_earlier(self) - 5)
    token = fresh_token(app)
    monkeypatch.undo()
    assert submit(client, app, token=token).status_code == 303


@pytest.mark.parametrize("token", ["", "forged.token.value", "InRva2VuIg.AAAAAA.bad"])
def test_missing_or_forged_token_stores_nothing_and_renews_the_token(client, app, token):
    response = client.post("/", data={**valid_form(), "form_token": token})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Send my enquiry” again" in page
    renewed = hidden_value(page, "form_token")
    assert renewed != token
    assert_nothing_stored(app)
    assert submit(client, app, token=renewed).status_code == 303


def redis_available() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.fixture(params=["memory://", "redis://127.0.0.1:6379"])
def rate_limited(request, config):
    if request.param.startswith("redis") and not redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    config.update(RATELIMIT_ENABLED=True, ENQUIRY_RATE_LIMIT="2 per minute", RATELIMIT_STORAGE_URI=request.param,
                  RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}")
    return config


def test_rate_limit_per_ip_gives_a_friendly_429(rate_limited, client, app):
    for _ in range(3):
        assert submit(client, app, privacy_ack=None).status_code == 200  # corrections don't count
    assert submit(client, app).status_code == 303
    assert submit(client, app, phone="(714) 555-0199", email="b@example.net").status_code == 303
    blocked = submit(client, app, phone="(714) 555-0198", email="c@example.net")
    page = blocked.get_data(as_text=True)
    assert blocked.status_code == 429
    assert "Too many attempts" in page and app.config["CLINIC_PHONE"] in page and "Traceback" not in page
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60  # the tightest broken limit is "2 per minute"
    other_ip = client.post("/", data={**valid_form(phone="(714) 555-0197", email="d@example.net"),
                                      "form_token": fresh_token(app)},
                           environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other_ip.status_code == 303
    assert row_counts(app)["enquiries"] == 3


def test_csrf_is_enforced_on_the_form(config, client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    tokenless = submit(client, app)
    assert tokenless.status_code == 400
    assert_nothing_stored(app)
    page = client.get("/").get_data(as_text=True)
    csrf, form_token = hidden_value(page, "csrf_token"), hidden_value(page, "form_token")
    accepted = client.post("/", data={**valid_form(), "csrf_token": csrf, "form_token": form_token})
    assert accepted.status_code == 303


def test_csrf_accepts_a_genuine_post_over_https_without_a_referer(config, request):
    """Browsers send no Referer (Referrer-Policy: no-referrer), so CSRF must rest on the token, not on the Referer."""
    config.update(WTF_CSRF_ENABLED=True, HTTPS=True)
    app = request.getfixturevalue("app")  # built after the change, and emptied after the test
    client = app.test_client()
    page = client.get("/", base_url="https://localhost").get_data(as_text=True)
    tokens = dict(re.findall(r'name="(csrf_token|form_token)" type="hidden" value="([^"]+)"', page))
    accepted = client.post("/", data={**valid_form(), **tokens}, base_url="https://localhost")
    assert accepted.status_code == 303
    assert row_counts(app)["enquiries"] == 1
    forged = client.post("/", data={**valid_form(), "form_token": tokens["form_token"]}, base_url="https://localhost")
    assert forged.status_code == 400


FORM_EXPIRED = "The form expired. Please send it again."


@pytest.mark.parametrize("csrf_token", [None, "", "forged.csrf.token"], ids=["absent", "empty", "forged"])
def test_failed_csrf_check_shows_the_form_again_with_the_answers_kept(config, client, app, csrf_token):
    app.config["WTF_CSRF_ENABLED"] = True
    client.get("/")  # the patient loaded the form here: the request carries this site's session
    sent_token = fresh_token(app)
    data = {**valid_form(), "form_token": sent_token, "card_front": (io.BytesIO(PNG), "front.png", "image/png")}
    if csrf_token is not None:
        data["csrf_token"] = csrf_token
    refused = client.post("/", data=data)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert FORM_EXPIRED in page and 'role="alert"' in page and "please choose them again" in page
    assert f'value="{s.FIRST_NAME}"' in page and f'value="{s.EMAIL}"' in page and f'value="{DOB}"' in page
    assert f'value="{s.MEMBER_ID}"' in page and s.MESSAGE in page
    assert re.search(r'id="need_help_now-1"[^>]*checked|checked[^>]*id="need_help_now-1"', page)
    assert "CardFrontSentinel" not in page
    assert errors_in(refused) == []
    assert_nothing_stored(app)
    csrf, form_token = hidden_value(page, "csrf_token"), hidden_value(page, "form_token")
    assert csrf != csrf_token and form_token != sent_token
    accepted = client.post("/", data={**valid_form(), "csrf_token": csrf, "form_token": form_token})
    assert accepted.status_code == 303 and accepted.headers["Location"] == "/thanks"
    assert row_counts(app)["enquiries"] == 1


def input_value(page: str, name: str) -> str:
    """The value a rendered text input carries, as a browser would send it back."""
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', page).group(0)
    value = re.search(r'value="([^"]*)"', tag)
    return html.unescape(value.group(1)) if value else ""


def test_a_cross_site_post_cannot_make_the_patients_own_enquiry_vanish(config, client, app):
    """Another site auto-posts the form, honeypot filled, without our cookies; the patient then completes
    the page the clinic showed, exactly as the browser renders it, and the enquiry is stored."""
    app.config["WTF_CSRF_ENABLED"] = True
    planted = {**valid_form(first_name="Planted", email="planted@example.net", message="planted text"),
               "website": "http://spam.example", "form_token": fresh_token(app)}
    refused = client.post("/", data=planted)  # no cookies: the test client holds none yet
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "The form expired. Please fill it in and send it again." in page
    assert input_value(page, "website") == ""
    assert "Planted" not in page and "planted@example.net" not in page and "planted text" not in page
    assert input_value(page, "first_name") == "" and hidden_value(page, "form_token") != planted["form_token"]
    assert_nothing_stored(app)
    completed = {**valid_form(), "website": input_value(page, "website"),
                 "csrf_token": hidden_value(page, "csrf_token"), "form_token": hidden_value(page, "form_token")}
    response = client.post("/", data=completed)
    assert response.status_code == 303 and response.headers["Location"] == "/thanks"
    with app.app_context():
        assert the_lead(app).first_name == s.FIRST_NAME
    assert row_counts(app)["enquiries"] == 1


def test_a_filled_honeypot_is_never_carried_back_even_with_the_session(config, client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    client.get("/")
    refused = client.post("/", data={**valid_form(), "website": "http://spam.example", "csrf_token": "stale"})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and FORM_EXPIRED in page and f'value="{s.FIRST_NAME}"' in page
    assert input_value(page, "website") == "" and "spam.example" not in page
    assert_nothing_stored(app)


def test_expired_csrf_token_shows_the_form_again(config, client, app, monkeypatch):
    app.config["WTF_CSRF_ENABLED"] = True
    signed_now = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp",
                        lambda self: signed_now(self) - app.config["WTF_CSRF_TIME_LIMIT"] - 60)
    stale = hidden_value(client.get("/").get_data(as_text=True), "csrf_token")
    monkeypatch.undo()
    refused = client.post("/", data={**valid_form(), "csrf_token": stale, "form_token": fresh_token(app)})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and FORM_EXPIRED in page and f'value="{s.FIRST_NAME}"' in page
    assert_nothing_stored(app)
    renewed = {"csrf_token": hidden_value(page, "csrf_token"), "form_token": hidden_value(page, "form_token")}
    assert client.post("/", data={**valid_form(), **renewed}).status_code == 303
    assert row_counts(app)["enquiries"] == 1


def test_failed_csrf_check_elsewhere_keeps_the_generic_page(config, client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    app.add_url_rule("/probe", "public.probe", lambda: "accepted", methods=["POST"])
    for url in ("/probe", "/auth/login"):
        refused = client.post(url, data=valid_form())
        page = refused.get_data(as_text=True)
        assert refused.status_code == 400
        assert "Something was wrong with that request" in page and FORM_EXPIRED not in page
        assert s.FIRST_NAME not in page


def test_oversize_body_gets_a_friendly_413(client, app):
    too_big = app.config["MAX_CONTENT_LENGTH"] + 1
    response = client.post("/", data={**valid_form(), "form_token": fresh_token(app),
                                      "card_front": (io.BytesIO(b"\xff\xd8\xff" + b"0" * too_big), "x.jpg")})
    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "Files must be 5 MB or smaller" in page and app.config["CLINIC_PHONE"] in page
    assert_nothing_stored(app)


# --- under 18, crisis ---------------------------------------------------------------------


def test_under_18_gets_a_kind_message_and_nothing_is_stored(client, app):
    response = submit(client, app, dob=years_ago(17, days=300), privacy_ack=None)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Our clinic treats adults" in page and app.config["CLINIC_PHONE"] in page
    assert "we haven't kept anything you entered" in page
    assert s.FIRST_NAME not in page
    assert_nothing_stored(app)


def test_exactly_18_is_accepted(client, app):
    assert submit(client, app, dob=years_ago(18)).status_code == 303


def test_under_18_in_crisis_sees_crisis_resources_first(client, app):
    page = submit(client, app, dob=years_ago(16), need_help_now="yes").get_data(as_text=True)
    assert page.index("Help is available right now") < page.index("Our clinic treats adults")
    assert_nothing_stored(app)


@pytest.fixture
def local_line(config):
    config["LOCAL_CRISIS_LINE"] = "Test County Crisis Line (800) 555-0111"
    return config


def test_crisis_answer_marks_urgent_and_thanks_leads_with_crisis_resources(local_line, client, app):
    response = submit(client, app, need_help_now="yes")
    assert response.status_code == 303
    page = client.get("/thanks").get_data(as_text=True)
    with app.app_context():
        lead = the_lead(app)
        assert lead.urgent and lead.acknowledged_at is None
        assert db.session.scalars(select(Enquiry)).one().crisis
        assert json.loads(db.session.scalars(select(AuditEvent)).one().details)["urgent"] is True
        reference = lead.reference
    crisis = page.index("Help is available right now")
    assert crisis < page.index("We have received your enquiry") < page.index(reference)
    assert crisis < page.index('href="tel:911"') < page.index("We have received")
    assert "Call or text <a href=\"tel:988\"" in page
    assert "dial <a href=\"tel:988\"><strong>988</strong></a> then press <strong>1</strong>" in page
    assert "Test County Crisis Line (800) 555-0111" in page
    assert "marked it urgent" in page


def test_crisis_on_a_returning_lead_raises_it_again(client, app, make_lead, make_user):
    user = make_user()
    make_lead(phone=s.PHONE, dob=dt.date(1984, 3, 9), urgent=True, acknowledged_at=dt.datetime(2026, 1, 1),
              acknowledged_by=user.id)
    assert submit(client, app, need_help_now="yes").status_code == 303
    with app.app_context():
        lead = the_lead(app)
        assert lead.urgent and lead.acknowledged_at is None and lead.acknowledged_by is None


# --- phone links -------------------------------------------------------------------------


def tel_targets(page: str) -> list[str]:
    """Every ``tel:`` target on a page, each checked to be digits with at most a leading ``+``."""
    targets = re.findall(r'href="tel:([^"]*)"', page)
    assert targets and all(re.fullmatch(r"\+?[0-9]+", target) for target in targets), targets
    return targets


@pytest.fixture(params=["(949) 555-0100", "+1 949.555.0100 ext. 12"])
def clinic_phone(request, config):
    """The clinic's number as displayed: the default format, and one with an extension."""
    config["CLINIC_PHONE"] = request.param
    return request.param


def thanks_after(client, app, **overrides):
    """Submit a valid enquiry and follow it to the thank-you page."""
    assert submit(client, app, **overrides).status_code == 303
    return client.get("/thanks")


def test_every_public_phone_link_dials_only_digits(clinic_phone, client, app):
    pages = {
        "form": client.get("/"),
        "adults only": submit(client, app, dob=years_ago(16)),
        "adults only, urgent": submit(client, app, dob=years_ago(16), need_help_now="yes"),
        "thank you": thanks_after(client, app),
        "thank you, urgent": thanks_after(client, app, need_help_now="yes"),
        "not found": client.get("/no/such/page"),
    }
    for name, response in pages.items():
        page = response.get_data(as_text=True)
        assert clinic_phone in page, name
        assert tel_targets(page).count("+19495550100") >= 3, name  # header, footer and the page's own "call us"
        assert 'href="tel:911"' in page and 'href="tel:988"' in page, name
        assert '<a href="sms:838255"><strong>838255</strong></a>' in page, name


def test_error_pages_link_the_clinic_phone_as_digits(config, client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    for response in (client.get("/no/such/page"), client.post("/auth/login", data={})):
        page = response.get_data(as_text=True)
        assert 'class="panel error-page"' in page
        assert '<a href="tel:+19495550100"><strong>(949) 555-0100</strong></a>' in page
        tel_targets(page)


def test_local_crisis_line_is_text_unless_its_number_is_configured(local_line, client, app):
    page = client.get("/").get_data(as_text=True)
    assert "Local crisis line: Test County Crisis Line (800) 555-0111." in page
    app.config["LOCAL_CRISIS_PHONE"] = "(800) 555-0111"
    linked = '<a href="tel:+18005550111">Test County Crisis Line (800) 555-0111</a>'
    assert f"Local crisis line: {linked}." in client.get("/").get_data(as_text=True)
    assert submit(client, app, need_help_now="yes").status_code == 303
    assert f"<li>Local crisis line: {linked}.</li>" in client.get("/thanks").get_data(as_text=True)


# --- durability ----------------------------------------------------------------------------


def _fail_commit(monkeypatch, _app):
    def boom(*args, **kwargs):
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(db.session, "commit", boom)


def _fail_mid_transaction(monkeypatch, _app):
    """The driver fails on the card insert, after the lead and enquiry rows went in."""
    real_run = statements.run

    def refuse_cards(connection, sql, parameters, many=False):
        if sql.startswith("INSERT INTO insurance_cards"):
            raise OperationalError(sql, parameters, Exception("database is locked"))
        return real_run(connection, sql, parameters, many)

    monkeypatch.setattr(statements, "run", refuse_cards)


@pytest.mark.parametrize("break_it", [_fail_commit, _fail_mid_transaction], ids=["commit", "mid-transaction"])
def test_database_failure_gives_503_with_phone_and_stores_nothing(client, app, monkeypatch, caplog, break_it):
    break_it(monkeypatch, app)
    response = submit(client, app, card_front=(io.BytesIO(PNG), "front.png", "image/png"))
    monkeypatch.undo()
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert app.config["CLINIC_PHONE"] in page and "nothing was saved" in page
    assert "Traceback" not in page and "OperationalError" not in page and s.FIRST_NAME not in page
    assert_nothing_stored(app)
    assert any("database unavailable" in record.getMessage() for record in caplog.records)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not any(value in logged for value in SUBMITTED if isinstance(value, str))


# --- encryption at rest --------------------------------------------------------------------


def test_raw_storage_holds_no_plaintext_of_any_submitted_value(client, app, config):
    files = {"card_front": (io.BytesIO(PNG), "front.png", "image/png"),
             "card_back": (io.BytesIO(PDF), "back.pdf", "application/pdf")}
    assert submit(client, app, **PPO_NOT_HOLDER, **files).status_code == 303
    needles = [v.encode() if isinstance(v, str) else v for v in (*SUBMITTED, "Pat Holder", "1960-01-02")]
    with app.app_context():
        stored_png = db.session.scalars(select(InsuranceCard).where(InsuranceCard.side == "front")).one().content
        needles.append(stored_png[len(stored_png) // 2:][:64])  # the re-encoded picture's own bytes
        db.session.rollback()
        encrypted_columns = 0
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(text(f'SELECT * FROM "{table.name}"')).mappings():
                for column, value in row.items():
                    raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                    encrypted_columns += column.endswith("_enc") and value is not None
                    assert not any(needle in raw for needle in needles), (table.name, column)
        card_rows = db.session.execute(text("SELECT size, content_enc FROM insurance_cards")).all()
        assert len(card_rows) == 2 and all(len(bytes(content)) > size for size, content in card_rows)
        ip = db.session.execute(text("SELECT consent_ip_enc FROM enquiries")).scalar_one()
        assert b"127.0.0.1" not in bytes(ip)
        assert encrypted_columns >= 15
        db.session.remove()
        db.engine.dispose()
    if config["DATABASE_URL"].startswith("sqlite"):
        path = Path(config["DATABASE_URL"].removeprefix("sqlite:///"))
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                content = file.read_bytes()
                assert not any(needle in content for needle in needles), file.name
