"""Password rules (NIST SP 800-63B-4) and argon2id hashing."""

from __future__ import annotations

from importlib import resources

import pytest
from argon2 import extract_parameters
from hypothesis import given, settings
from hypothesis import strategies as st

from crm import passwords
from crm.passwords import (
    MAX_LENGTH,
    blocklist,
    context_words,
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)

CONTEXT = context_words("jane.doe@clinic.test", "Harbor Mind Wellness")


@pytest.mark.parametrize("has_totp, minimum", [(False, 15), (True, 8)])
def test_one_character_under_the_minimum_is_refused(has_totp, minimum):
    short = "q7 vault ember spruce mango lark"[: minimum - 1]
    assert password_problem(short, has_totp=has_totp) == (
        f"Use at least {minimum} characters (spaces count; a few unrelated words work well)."
    )
    assert password_problem("q7 vault ember spruce mango lark"[:minimum], has_totp=has_totp) is None


def test_up_to_256_characters_are_accepted_and_257_refused():
    long = ("velvet harbor quince " * 20)[:MAX_LENGTH]
    assert password_problem(long, has_totp=False) is None
    assert password_problem(long + "x", has_totp=False) == "Use at most 256 characters."


def test_length_counts_code_points_not_bytes():
    assert password_problem("🦊🌲🌊🍋🎻🚲🧭🪁🦉🌵🍉🎈🧩🪴🐚", has_totp=False) is None  # 15 code points, 60 bytes
    assert password_problem("🦊🌲🌊🍋🎻🚲🧭🪁🦉🌵🍉🎈🧩🪴", has_totp=False) is not None


def test_no_composition_rules():
    assert password_problem("all lower case words here", has_totp=False) is None


def test_a_blocklisted_context_word_is_refused_with_a_clear_reason():
    assert password_problem("ketamineclinic2025", has_totp=False) == (
        "Don't use the clinic's name, its treatments or your e-mail address in your password."
    )


@pytest.mark.parametrize("password", ["Spravato is my friend!", "my harbor mind password", "jane.doe forever 2025",
                                      "janedoe-and-the-sea", "HarborMindWellness99"])
def test_clinic_treatment_and_email_words_are_refused(password):
    assert "clinic's name" in password_problem(password, has_totp=False, context=CONTEXT)


@pytest.mark.parametrize("password", ["baseball", "Password1", "iloveyou!!", "qwertyuiop", "1qaz2wsx3edc",
                                      "trustno1"])
def test_common_passwords_are_refused(password):
    assert password_problem(password, has_totp=True) == (
        "That password is on a list of common passwords. Choose something less predictable."
    )


def test_repetitive_passwords_are_refused():
    assert "repeats" in password_problem("aaaaaaaaaaaaaaaaaaaa", has_totp=False)


def test_the_blocklist_ships_with_the_package():
    text = resources.files("crm").joinpath("data/common-passwords.txt").read_text(encoding="utf-8")
    assert len(blocklist()) > 10_000
    assert all(len(word) >= 8 for word in blocklist())
    assert "password" in blocklist() and not any(word.startswith("#") for word in blocklist())
    assert text.startswith("#")


def test_hash_is_argon2id_with_at_least_46_mib():
    stored = hash_password("mellow granite orchard sunrise")
    assert stored.startswith("$argon2id$")
    params = extract_parameters(stored)
    assert params.memory_cost >= 47104
    assert params.time_cost >= 1 and params.parallelism >= 1
    assert not needs_rehash(stored)


def test_rehash_is_needed_for_old_parameters():
    from argon2 import PasswordHasher

    assert needs_rehash(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("anything"))


def test_passwords_differing_only_after_byte_72_do_not_cross_verify():
    base = "x" * 72 + "tail"
    stored = hash_password(base + "one")
    assert verify_password(stored, base + "one")
    assert not verify_password(stored, base + "two")


def test_compatibility_forms_normalise_to_the_same_password():
    stored = hash_password("ﬁsh market harbour view")  # "ﬁ" ligature
    assert verify_password(stored, "fish market harbour view")


def test_missing_hash_never_verifies():
    assert verify_password(None, "anything at all here") is False


@settings(max_examples=12, deadline=None)
@given(st.text(min_size=15, max_size=256).filter(lambda t: password_problem(t, has_totp=False) is None))
def test_any_acceptable_password_hashes_and_verifies(password):
    stored = hash_password(password)
    assert verify_password(stored, password)
    assert not verify_password(stored, password + "x")


def test_the_unknown_account_hash_costs_what_a_real_one_does():
    """Timing parity: the stand-in hash uses the current parameters and never matches."""
    assert not passwords.HASHER.check_needs_rehash(passwords.DUMMY_HASH)
    assert not passwords.verify_password(None, "dummy password that never matches anything")
