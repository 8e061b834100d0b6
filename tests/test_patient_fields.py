"""A patient's name, ZIP code and phone: invisible characters and non-ASCII digits refused at the field."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.forms.patient import hidden_character_at
from crm.models import Insurance, Lead, db
from tests.test_public_form import PPO_NOT_HOLDER, assert_nothing_stored, errors_in, submit

HIDDEN_NAME = "Names can't contain hidden or control characters. Please type the name again."
NO_LETTER = "Please enter a name with at least one letter."
ZIP = "Enter a 5-digit ZIP code."
EXTENSION = "Please type the extension with the digits 0 to 9."

REFUSED = [
    ({"first_name": "\u200b\u200b\u200b"}, "first_name", HIDDEN_NAME),  # zero-width spaces only
    ({"first_name": "\ufeff"}, "first_name", HIDDEN_NAME),  # a byte-order mark
    ({"first_name": "Ana\u202eavon"}, "first_name", HIDDEN_NAME),  # right-to-left override
    ({"last_name": "Smith\u2066x\u2069"}, "last_name", HIDDEN_NAME),  # isolates
    ({"last_name": "Sm\x00ith"}, "last_name", HIDDEN_NAME),  # NUL
    ({"last_name": "Sm\x1bith"}, "last_name", HIDDEN_NAME),  # escape
    ({"last_name": "Smith\u2028Jones"}, "last_name", HIDDEN_NAME),  # line separator
    ({"first_name": "\u200cAli"}, "first_name", HIDDEN_NAME),  # a joiner that joins nothing
    ({"first_name": "-- !"}, "first_name", NO_LETTER),
    ({**PPO_NOT_HOLDER, "policyholder_name": "Pat\u202eHolder"}, "policyholder_name", HIDDEN_NAME),
    ({"carrier": "Aetna\u200b"}, "carrier", "Please remove the hidden or control characters from this answer."),
    ({"zip_code": "9261\u0668"}, "zip_code", ZIP),  # ARABIC-INDIC DIGIT EIGHT
    ({"zip_code": "\uff19\uff12\uff16\uff11\uff18"}, "zip_code", ZIP),  # full-width digits
    ({"zip_code": "92618-\u0661\u0662\u0663\u0664"}, "zip_code", ZIP),
    ({"phone": "(949) 555-0100 ext. 12\u0668"}, "phone", EXTENSION),
    ({"phone": "(949) 555-0100 x\u0967\u0968"}, "phone", EXTENSION),  # Devanagari digits
]


@pytest.mark.parametrize(("overrides", "field", "message"), REFUSED, ids=[f"{c[1]}-{i}" for i, c in enumerate(REFUSED)])
def test_hidden_characters_and_foreign_digits_are_refused_at_the_field(client, app, overrides, field, message):
    response = submit(client, app, **overrides)
    assert response.status_code == 200
    assert errors_in(response) == [(field, message)]
    assert_nothing_stored(app)


ACCEPTED = ["José", "O'Brien-Smith", "李", "Nguyễn", "Zoë Anne", "مهر\u200cانگیز", "क्ष\u200dत्र"]


@pytest.mark.parametrize("name", ACCEPTED)
def test_real_names_in_any_script_are_accepted(client, app, name):
    assert submit(client, app, first_name=name, **PPO_NOT_HOLDER | {"policyholder_name": name}).status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Lead)).one().first_name == name
        assert db.session.scalars(select(Insurance)).one().policyholder["name"] == name


def test_ascii_zip_plus_four_and_extension_are_accepted_and_stored(client, app):
    assert submit(client, app, zip_code="92618-1234", phone="949-555-0100 ext. 12").status_code == 303
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        assert (lead.zip_code, lead.phone) == ("92618-1234", "(949) 555-0100 ext. 12")


def test_hidden_character_at_names_the_first_offender():
    assert hidden_character_at("plain") is None
    assert hidden_character_at("ab\u200bc") == 2
    assert hidden_character_at("a\u200cb") is None and hidden_character_at("a\u200c") == 1
