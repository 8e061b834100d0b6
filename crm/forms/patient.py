"""Checks for a patient's details, shared by every form that takes them (public, phone, referral).

Field shape only: names hold no invisible or control characters, ZIP codes and phone
extensions use the ASCII digits 0–9, phone numbers are parsed and stored in one format.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import phonenumbers
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import Field, ValidationError
from wtforms.validators import Regexp

#: Categories no name or single-line answer needs: controls (Cc, NUL included), format characters (Cf:
#: zero-width spaces, bidirectional overrides), private use (Co), unpaired surrogates (Cs), line and
#: paragraph separators (Zl, Zp).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})
#: Zero-width non-joiner and joiner spell some Persian and Indic names; they may stand between two letters.
JOINERS = frozenset({"\u200c", "\u200d"})
ZIP_CODE = Regexp(r"^[0-9]{5}(-[0-9]{4})?\Z", message=_l("Enter a 5-digit ZIP code."))
ASCII_DIGITS = frozenset("0123456789")


def hidden_character_at(text: str) -> int | None:
    """The position of the first invisible or control character in ``text``, or ``None``."""
    for index, char in enumerate(text):
        if unicodedata.category(char) not in HIDDEN_CATEGORIES:
            continue
        if char in JOINERS and _between_letters(text, index):
            continue
        return index
    return None


def _between_letters(text: str, index: int) -> bool:
    """True when the characters either side of ``index`` are letters or marks of a word."""
    if index == 0 or index == len(text) - 1:
        return False
    return all(unicodedata.category(text[i])[0] in "LM" for i in (index - 1, index + 1))


def plain_text(_form: Any, field: Field) -> None:
    """Refuse invisible and control characters in a single-line answer (a company, a reference)."""
    if field.data and hidden_character_at(field.data) is not None:
        raise ValidationError(_("Please remove the hidden or control characters from this answer."))


def person_name(_form: Any, field: Field) -> None:
    """Refuse a name with invisible or control characters, or one without a single letter."""
    if not field.data:
        return
    if hidden_character_at(field.data) is not None:
        raise ValidationError(_("Names can't contain hidden or control characters. Please type the name again."))
    if not any(unicodedata.category(char).startswith("L") for char in field.data):
        raise ValidationError(_("Please enter a name with at least one letter."))


def phone_number(_form: Any, field: Field) -> None:
    """Accept a real phone number in any common format and rewrite it in one format.

    A number in the clinic's region is kept in national format, any other in E.164. The
    phone library reads digits of any script; an extension must still be typed in 0–9,
    because it is kept as typed.
    """
    if not field.data:
        return
    region = current_app.config["PHONE_REGION"]
    try:
        number = phonenumbers.parse(field.data, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValidationError(_("Enter a phone number we can call, like (949) 555-0100."))
    if number.extension and not set(number.extension) <= ASCII_DIGITS:
        raise ValidationError(_("Please type the extension with the digits 0 to 9."))
    national = phonenumbers.region_code_for_number(number) == region
    style = phonenumbers.PhoneNumberFormat.NATIONAL if national else phonenumbers.PhoneNumberFormat.E164
    field.data = phonenumbers.format_number(number, style)
