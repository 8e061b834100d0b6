"""Unit tests of crm.crypto: field format, tamper detection, keyring life cycle, blind indexes."""

from __future__ import annotations

import math
import os
import stat

import phonenumbers
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from crm import crypto
from tests import sentinels

LEAD = "0b5b2f4e-9a53-4c1e-a3c8-0d6f1f4d2a10"
OTHER_LEAD = "7d0f8a51-3b7e-4f4e-9e0a-5c2d9b8e6f21"


@pytest.fixture
def cipher() -> crypto.FieldCipher:
    return crypto.FieldCipher(crypto.new_data_key())


def test_field_value_is_versioned_aes_gcm_with_documented_associated_data():
    dek = crypto.new_data_key()
    blob = crypto.FieldCipher(dek).encrypt("leads", "phone", LEAD, sentinels.PHONE.encode())
    header, nonce, body = blob[:2], blob[2:14], blob[14:]
    assert header == bytes((crypto.FIELD_FORMAT, 1))
    assert len(nonce) == 12
    assert len(body) == len(sentinels.PHONE) + 16
    aad = f"crm|v1|leads|phone|{LEAD}|".encode() + header
    assert AESGCM(dek).decrypt(nonce, body, aad) == sentinels.PHONE.encode()


def test_same_plaintext_twice_gives_different_ciphertexts(cipher):
    first = cipher.encrypt("leads", "email", LEAD, sentinels.EMAIL.encode())
    second = cipher.encrypt("leads", "email", LEAD, sentinels.EMAIL.encode())
    assert first != second
    assert first[2:14] != second[2:14]
    assert sentinels.EMAIL.encode() not in first


@pytest.mark.parametrize(
    ("table", "column", "row_id"),
    [("leads", "last_name", LEAD), ("enquiries", "phone", LEAD), ("leads", "phone", OTHER_LEAD)],
)
def test_value_moved_to_another_column_table_or_row_fails(cipher, table, column, row_id):
    blob = cipher.encrypt("leads", "phone", LEAD, sentinels.PHONE.encode())
    with pytest.raises(crypto.DecryptionError):
        cipher.decrypt(table, column, row_id, blob)


def test_every_flipped_byte_fails_authentication(cipher):
    blob = cipher.encrypt("leads", "first_name", LEAD, sentinels.FIRST_NAME.encode())
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(crypto.DecryptionError):
            cipher.decrypt("leads", "first_name", LEAD, bytes(tampered))


def test_truncated_value_and_another_leads_key_fail(cipher):
    blob = cipher.encrypt("leads", "first_name", LEAD, sentinels.FIRST_NAME.encode())
    with pytest.raises(crypto.DecryptionError):
        cipher.decrypt("leads", "first_name", LEAD, blob[:-1])
    with pytest.raises(crypto.DecryptionError):
        cipher.decrypt("leads", "first_name", LEAD, blob[:20])
    with pytest.raises(crypto.DecryptionError):
        crypto.FieldCipher(crypto.new_data_key()).decrypt("leads", "first_name", LEAD, blob)


def test_data_key_wraps_under_primary_and_is_bound_to_lead_and_kid():
    ring = crypto.Keyring.generate()
    dek = crypto.new_data_key()
    kid, nonce, wrapped = crypto.wrap_data_key(ring, LEAD, dek)
    assert kid == ring.primary.kid
    assert crypto.unwrap_data_key(ring, LEAD, kid, nonce, wrapped) == dek
    with pytest.raises(crypto.DecryptionError):
        crypto.unwrap_data_key(ring, OTHER_LEAD, kid, nonce, wrapped)
    tampered = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(crypto.DecryptionError):
        crypto.unwrap_data_key(ring, LEAD, kid, nonce, tampered)


def test_rewrap_moves_a_data_key_to_the_new_primary():
    ring = crypto.Keyring.generate()
    dek = crypto.new_data_key()
    old = crypto.wrap_data_key(ring, LEAD, dek)
    ring.promote(ring.add_key().kid)
    kid, nonce, wrapped = crypto.rewrap_data_key(ring, LEAD, *old)
    assert kid == 2 and old[0] == 1
    assert crypto.unwrap_data_key(ring, LEAD, kid, nonce, wrapped) == dek


def test_retired_and_unknown_keys_are_refused_for_unwrapping():
    ring = crypto.Keyring.generate()
    dek = crypto.new_data_key()
    wrapped = crypto.wrap_data_key(ring, LEAD, dek)
    ring.promote(ring.add_key().kid)
    ring.retire(1)
    with pytest.raises(crypto.RetiredKeyError):
        crypto.unwrap_data_key(ring, LEAD, *wrapped)
    with pytest.raises(crypto.UnknownKeyError):
        crypto.unwrap_data_key(ring, LEAD, 9, *wrapped[1:])
    with pytest.raises(crypto.RetiredKeyError):
        ring.promote(1)


def test_primary_cannot_be_retired_and_promotion_keeps_one_primary():
    ring = crypto.Keyring.generate()
    with pytest.raises(crypto.KeyringError):
        ring.retire(1)
    ring.promote(ring.add_key().kid)
    assert [k.kid for k in ring.master_keys.values() if k.status == crypto.PRIMARY] == [2]
    assert ring.master_keys[1].status == crypto.ACTIVE


def test_sealed_secret_names_its_key_and_is_bound_to_purpose_and_row():
    ring = crypto.Keyring.generate()
    blob = crypto.seal(ring, "totp", LEAD, b"JBSWY3DPEHPK3PXP")
    assert crypto.sealed_kid(blob) == 1
    assert crypto.unseal(ring, "totp", LEAD, blob) == b"JBSWY3DPEHPK3PXP"
    for purpose, row in (("recovery", LEAD), ("totp", OTHER_LEAD)):
        with pytest.raises(crypto.DecryptionError):
            crypto.unseal(ring, purpose, row, blob)


def test_keyring_round_trips_and_refuses_malformed_documents():
    ring = crypto.Keyring.generate()
    ring.add_key()
    again = crypto.Keyring.from_json(ring.to_json())
    assert {k: (v.status, v.key) for k, v in again.master_keys.items()} == {
        k: (v.status, v.key) for k, v in ring.master_keys.items()
    }
    assert "key=" not in repr(ring) and ring.index_key.hex() not in repr(ring)
    for bad in ("{}", "not json", ring.to_json().replace('"primary"', '"active"')):
        with pytest.raises(crypto.KeyringError):
            crypto.Keyring.from_json(bad)


def test_a_leftover_world_readable_temp_file_never_holds_the_keys(tmp_path, monkeypatch):
    path = tmp_path / "keyring.json"
    leftover = path.with_suffix(".tmp")
    leftover.write_text("stale")
    os.chmod(leftover, 0o644)
    modes_while_writing = []
    real_fdopen = os.fdopen

    def watched_fdopen(fd, *args, **kwargs):
        modes_while_writing.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(crypto.os, "fdopen", watched_fdopen)
    crypto.write_keyring_file(path, crypto.Keyring.generate())
    assert modes_while_writing == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not leftover.exists()


def test_keyring_file_is_written_0600_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "keyring.json"
    crypto.write_keyring_file(path, crypto.Keyring.generate())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    crypto.read_keyring_file(path)
    for mode in (0o640, 0o604):
        os.chmod(path, mode)
        with pytest.raises(crypto.KeyringError, match="chmod 600"):
            crypto.read_keyring_file(path)


@pytest.mark.parametrize("written", ["(949) 555-0100", "949.555.0100", "+19495550100", "949-555-0100", "9495550100"])
def test_phone_normalises_to_e164(written):
    assert crypto.normalize_phone(written) == "+19495550100"


def e164_by_phonenumbers(value: str) -> str | None:
    """What ``phonenumbers`` alone makes of ``value`` (region US): the reference for the fast path."""
    try:
        number = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) \
        if phonenumbers.is_possible_number(number) else None


@given(st.text(alphabet="0123456789 ().-+", min_size=1, max_size=20))
def test_the_fast_path_for_typed_us_numbers_agrees_with_phonenumbers(written):
    """Digits and separators in any order: the shortcut gives what phonenumbers gives, or leaves it to it."""
    typed = crypto._typed_us_number(written)
    assert typed is None or typed == e164_by_phonenumbers(written)
    assert crypto.normalize_phone.__wrapped__(written) == e164_by_phonenumbers(written)


typed_numbers = st.builds(
    lambda prefix, digits, separators: prefix + "".join(d + s for d, s in zip(digits, separators, strict=False)),
    st.sampled_from(["", "1", "1 ", "+1 ", "+1", "+", "0", "(", "+44 "]),
    st.text(alphabet="0123456789", min_size=7, max_size=12),
    st.lists(st.sampled_from(["", "", "", " ", "-", ".", ")", "(", ") "]), min_size=12, max_size=12),
)


@given(typed_numbers)
def test_numbers_as_people_type_them_normalise_as_phonenumbers_says(written):
    assert crypto.normalize_phone.__wrapped__(written) == e164_by_phonenumbers(written)


@pytest.mark.parametrize("written", ["(949) 555-0100", "1 949 555 0100", "+1 949.555.0100", "949 5550100",
                                     "+44 20 7946 0958", "0949 555 0100", "+9495550100", "949-555-0100 ext 7",
                                     "949 555 0100" + " " * 300])
def test_the_fast_path_agrees_with_phonenumbers_on_what_people_type(written):
    assert crypto.normalize_phone.__wrapped__(written) == e164_by_phonenumbers(written)


def test_text_and_email_normalisation_fold_case_width_and_space():
    assert crypto.normalize_email("  Pat.Doe@Example.COM ") == "pat.doe@example.com"
    assert crypto.normalize_text("Ｏ’Brien  ") == crypto.normalize_text("o’brien")
    assert crypto.normalize_phone("not a number") is None


@given(st.integers(min_value=16, max_value=2**32))
def test_blind_index_length_within_ciphersweet_bounds(rows):
    bits = crypto.index_bits(rows)
    assert 2 <= rows / 2**bits <= math.sqrt(rows)


@pytest.mark.parametrize("rows", [10_000, 100_000, 1_000_000])
def test_blind_index_length_matches_security_table(rows):
    low, high = {10_000: (7, 12), 100_000: (9, 15), 1_000_000: (10, 18)}[rows]
    assert low <= crypto.index_bits(rows) <= high


def test_blind_index_is_keyed_per_field_and_truncated():
    indexer = crypto.BlindIndexer(os.urandom(32), 12)
    value = crypto.normalize_phone(sentinels.PHONE)
    assert 0 <= indexer.compute("leads|phone", value) < 2**12
    assert indexer.compute("leads|phone", value) == indexer.compute("leads|phone", value)
    other_key = crypto.BlindIndexer(os.urandom(32), 12)
    samples = [f"+1949555{n:04d}" for n in range(40)]
    phones = [indexer.compute("leads|phone", s) for s in samples]
    assert phones != [other_key.compute("leads|phone", s) for s in samples]
    assert phones != [indexer.compute("leads|email", s) for s in samples]
