"""Fuzz the public form's POST: never a server error, never a partial enquiry."""

from __future__ import annotations

import io
import os

from hypothesis import event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from crm.models import AuditEvent, Enquiry, Insurance, Lead, db
from tests.test_public_form import fresh_token, valid_form

EXAMPLES = 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 120
TABLES = ("leads", "lead_keys", "enquiries", "insurances", "insurance_cards", "lead_events", "audit_events")
FIELDS = tuple(valid_form()) + ("dob", "policyholder_name", "policyholder_dob", "policyholder_relationship",
                                "marketing_consent", "website", "form_token", "stage", "role", "csrf_token")
CHOICES = ("yes", "no", "ppo", "hmo", "medicare", "self_pay", "not_sure", "call", "text", "email", "y", "spouse",
           "depression", "two_plus", "morning", "", "on", "1")
PHONES = ("(949) 555-0142", "949.555.0142", "+1 714 555 0199", "555", "+44 20 7946 0958")
MAGIC = (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"%PDF-1.4\n", b"GIF89a", b"PK\x03\x04")

text_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
values = st.one_of(
    text_values,
    st.sampled_from(CHOICES),
    st.sampled_from(PHONES),
    st.dates().map(lambda d: d.isoformat()),
    st.lists(st.sampled_from(CHOICES), max_size=4),
    st.none(),
)
overrides = st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)
cards = st.lists(st.tuples(st.sampled_from(("card_front", "card_back")), st.sampled_from(MAGIC),
                           st.binary(max_size=400)), max_size=2)


def counts() -> dict[str, int]:
    return {name: db.session.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one() for name in TABLES}


def assert_whole(app) -> None:
    """Every lead has a key, an enquiry, insurance and an audit event; every enquiry is audited."""
    with app.app_context():
        leads = set(db.session.scalars(select(Lead.id)))
        with_enquiry = set(db.session.scalars(select(Enquiry.lead_id)))
        with_insurance = set(db.session.scalars(select(Insurance.lead_id)))
        audited = set(db.session.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "enquiry_received")))
        assert leads == with_enquiry == with_insurance == audited
        numbers = counts()
        assert numbers["lead_keys"] == numbers["leads"]
        assert numbers["enquiries"] == numbers["insurances"] == numbers["audit_events"]


@settings(max_examples=EXAMPLES)
@given(changes=overrides, uploads=cards, keep_token=st.sampled_from((True, True, True, False)))
def test_fuzzed_posts_never_fail_and_never_store_half_an_enquiry(client, app, changes, uploads, keep_token):
    data = valid_form(phone=changes.pop("phone", "(949) 555-0142") or "")
    data.update({"form_token": fresh_token(app)} if keep_token else {})
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    for field, magic, body in uploads:
        data[field] = (io.BytesIO(magic + body), "card.bin")
    with app.app_context():
        before = counts()
    response = client.post("/", data=data)
    assert response.status_code in (200, 303), response.status_code
    with app.app_context():
        after = counts()
    stored = after["enquiries"] - before["enquiries"]
    event(f"status {response.status_code}, stored {stored}")
    assert stored in (0, 1)
    assert after["audit_events"] - before["audit_events"] == stored
    assert after["insurances"] - before["insurances"] == stored
    assert after["leads"] - before["leads"] in ((0, 1) if stored else (0,))
    if response.status_code == 200:
        assert after == before
    assert_whole(app)
