"""Keyring, AES-256-GCM field encryption, blind indexes and key-wrapping primitives.

Pure functions and small value classes only: no database, no request. The scheme
("v1") is described in the design notes:

* A keyring holds master keys ``{kid, status, 32 bytes}`` (one primary), a blind-index
  root key, an audit MAC key and an Ed25519 signing seed. It lives in a 0600 file or an
  environment variable, never in the database.
* Each lead has a random 32-byte data key, wrapped by the primary master key with
  associated data naming the purpose, the lead id and the key id.
* A field value is ``0x01 || data-key version || 12-byte nonce || ciphertext+tag`` with
  associated data ``crm|v1|table|column|row id|header``: a value copied into another
  row or column fails to decrypt.
* A blind index is a truncated HMAC-SHA256 of the normalised value, keyed per field by
  HKDF from the index root.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import stat
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FIELD_FORMAT = 0x01
SEALED_FORMAT = 0x02
NONCE_BYTES = 12
KEY_BYTES = 32
PRIMARY, ACTIVE, RETIRED = "primary", "active", "retired"


class CryptoError(Exception):
    """Base class for every encryption failure."""


class DecryptionError(CryptoError):
    """A ciphertext failed authentication: tampered, truncated, moved or wrong key."""


class UnknownKeyError(CryptoError):
    """A ciphertext names a key id the keyring does not hold."""


class RetiredKeyError(CryptoError):
    """A retired key was asked to unwrap or encrypt."""


class KeyringError(CryptoError):
    """The keyring is missing, malformed or stored unsafely."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass
class MasterKey:
    """One key-encryption key with its id and lifecycle status."""

    kid: int
    status: str
    key: bytes = field(repr=False)

    @cached_property
    def aead(self) -> AESGCM:
        """The AES-GCM instance for this key, built once (wrapping 100,000 keys reuses it)."""
        return AESGCM(self.key)


@dataclass
class Keyring:
    """Every secret the application needs apart from the session secret."""

    master_keys: dict[int, MasterKey]
    index_key: bytes = field(repr=False)
    audit_key: bytes = field(repr=False)
    signing_seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> Keyring:
        """Return a fresh keyring with one primary master key."""
        return cls(
            master_keys={1: MasterKey(1, PRIMARY, os.urandom(KEY_BYTES))},
            index_key=os.urandom(KEY_BYTES),
            audit_key=os.urandom(KEY_BYTES),
            signing_seed=os.urandom(KEY_BYTES),
        )

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        """Parse a keyring document, raising :class:`KeyringError` on any defect."""
        try:
            doc = json.loads(text)
            keys = {
                int(k["kid"]): MasterKey(int(k["kid"]), k["status"], _unb64(k["key"]))
                for k in doc["master_keys"]
            }
            ring = cls(
                master_keys=keys,
                index_key=_unb64(doc["index_key"]),
                audit_key=_unb64(doc["audit_key"]),
                signing_seed=_unb64(doc["signing_seed"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"keyring is malformed ({type(exc).__name__})") from None
        ring.check()
        return ring

    def to_json(self) -> str:
        """Serialise the keyring for its 0600 file."""
        return json.dumps(
            {
                "version": 1,
                "master_keys": [
                    {"kid": k.kid, "status": k.status, "key": _b64(k.key)}
                    for k in sorted(self.master_keys.values(), key=lambda k: k.kid)
                ],
                "index_key": _b64(self.index_key),
                "audit_key": _b64(self.audit_key),
                "signing_seed": _b64(self.signing_seed),
            },
            indent=2,
        )

    def check(self) -> None:
        """Raise :class:`KeyringError` unless there is exactly one primary and keys are 32 bytes."""
        primaries = [k for k in self.master_keys.values() if k.status == PRIMARY]
        if len(primaries) != 1:
            raise KeyringError("keyring must have exactly one primary master key")
        for key in self.master_keys.values():
            if key.status not in (PRIMARY, ACTIVE, RETIRED) or len(key.key) != KEY_BYTES:
                raise KeyringError(f"master key {key.kid} is malformed")
        for secret in (self.index_key, self.audit_key, self.signing_seed):
            if len(secret) != KEY_BYTES:
                raise KeyringError("keyring secrets must be 32 bytes")

    @property
    def primary(self) -> MasterKey:
        """The master key that wraps every new data key."""
        for key in self.master_keys.values():
            if key.status == PRIMARY:
                return key
        raise KeyringError("keyring has no primary master key")

    def usable(self, kid: int) -> MasterKey:
        """Return key ``kid`` if it may still unwrap, else raise."""
        key = self.master_keys.get(kid)
        if key is None:
            raise UnknownKeyError(f"key id {kid} is not in the keyring")
        if key.status == RETIRED:
            raise RetiredKeyError(f"key id {kid} is retired")
        return key

    def add_key(self) -> MasterKey:
        """Add a new active (not yet primary) master key and return it."""
        kid = max(self.master_keys, default=0) + 1
        self.master_keys[kid] = MasterKey(kid, ACTIVE, os.urandom(KEY_BYTES))
        return self.master_keys[kid]

    def promote(self, kid: int) -> None:
        """Make ``kid`` the primary key; the old primary stays active for reads."""
        key = self.usable(kid)
        self.primary.status = ACTIVE
        key.status = PRIMARY

    def retire(self, kid: int) -> None:
        """Retire ``kid`` so it can no longer unwrap; the primary cannot be retired."""
        key = self.usable(kid)
        if key.status == PRIMARY:
            raise KeyringError("promote another key before retiring the primary")
        key.status = RETIRED

    def signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 key that signs exported audit heads."""
        return Ed25519PrivateKey.from_private_bytes(self.signing_seed)

    @cached_property
    def row_key(self) -> bytes:
        """Key of the MACs over security-relevant database rows (accounts, sessions), from the audit key."""
        return _derive(self.audit_key, b"crm-rows", b"crm|v1|row-mac")

    def check_values(self) -> dict[str, bytes]:
        """A key check value per key (a MAC of a constant): tells a different keyring by its keys, not ids."""
        keys = {f"master:{k.kid}": k.key for k in self.master_keys.values()}
        keys.update(index=self.index_key, audit=self.audit_key)
        return {name: hmac.new(key, KEY_CHECK_CONSTANT, hashlib.sha256).digest()[:16] for name, key in keys.items()}


KEY_CHECK_CONSTANT = b"crm|v1|key-check-value"


def _derive(root: bytes, salt: bytes, info: bytes) -> bytes:
    """A 32-byte subkey of ``root`` (HKDF-SHA256), so one stored secret serves purposes that never mix."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(root)


def row_mac(key: bytes, table: str, values: tuple[object, ...]) -> bytes:
    """HMAC-SHA256 over a table name and a row's protected values, each typed and length-prefixed."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (table, *values):
        data = _typed_bytes(part)
        mac.update(len(data).to_bytes(4, "big") + data)
    return mac.digest()


def _typed_bytes(value: object) -> bytes:
    """An unambiguous byte form of one value: ``None``, ``False`` and ``""`` all differ."""
    if value is None:
        return b"n"
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, bytes | bytearray | memoryview):
        return b"b" + bytes(value)
    if isinstance(value, int):
        return b"i%d" % value
    if isinstance(value, dt.datetime):
        return b"d" + value.replace(tzinfo=None).isoformat(timespec="microseconds").encode()
    return b"s" + str(value).encode()


def write_keyring_file(path: Path, ring: Keyring) -> None:
    """Write ``ring`` to ``path`` atomically with mode 0600."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)  # a leftover file would keep its own, possibly looser, mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # the umask may have narrowed the mode; never widen it before the keys are in
    with os.fdopen(fd, "w") as fh:
        fh.write(ring.to_json())
    os.replace(tmp, path)


def read_keyring_file(path: Path) -> Keyring:
    """Load a keyring file, refusing one that group or others may read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyringError(f"keyring file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(f"keyring file {path} is readable by group or others; chmod 600 it")
    return Keyring.from_json(path.read_text())


# --- data keys -----------------------------------------------------------------------


def new_data_key() -> bytes:
    """Return a random 32-byte data key for one lead."""
    return os.urandom(KEY_BYTES)


def _wrap_aad(lead_id: str, kid: int) -> bytes:
    return f"crm|v1|dek|lead|{lead_id}|{kid}".encode()


def wrap_data_key(ring: Keyring, lead_id: str, dek: bytes) -> tuple[int, bytes, bytes]:
    """Wrap ``dek`` under the primary key; return ``(kid, nonce, wrapped)``."""
    master = ring.primary
    nonce = os.urandom(NONCE_BYTES)
    wrapped = master.aead.encrypt(nonce, dek, _wrap_aad(lead_id, master.kid))
    return master.kid, nonce, wrapped


def unwrap_data_key(ring: Keyring, lead_id: str, kid: int, nonce: bytes, wrapped: bytes) -> bytes:
    """Unwrap a lead's data key, raising :class:`DecryptionError` on tamper."""
    master = ring.usable(kid)
    try:
        return master.aead.decrypt(nonce, wrapped, _wrap_aad(lead_id, kid))
    except InvalidTag:
        raise DecryptionError(f"data key of lead {lead_id} failed authentication") from None


def rewrap_data_key(ring: Keyring, lead_id: str, kid: int, nonce: bytes, wrapped: bytes) -> tuple[int, bytes, bytes]:
    """Unwrap a lead's data key and wrap it again under the primary key (rotation step)."""
    return wrap_data_key(ring, lead_id, unwrap_data_key(ring, lead_id, kid, nonce, wrapped))


# --- field values --------------------------------------------------------------------


class FieldCipher:
    """Encrypts and decrypts the fields of one lead with its data key."""

    __slots__ = ("_aead", "_aads", "_header", "version")

    def __init__(self, dek: bytes, version: int = 1):
        self._aead = AESGCM(dek)
        self._header = bytes((FIELD_FORMAT, version))
        self._aads: dict[tuple[str, str, str, bytes], bytes] = {}
        self.version = version

    def _aad(self, key: tuple[str, str, str, bytes]) -> bytes:
        """Associated data ``crm|v1|table|column|row id|header``, memoised per lead for speed."""
        table, column, row_id, header = key
        aad = self._aads[key] = f"crm|v1|{table}|{column}|{row_id}|".encode() + header
        return aad

    def encrypt(self, table: str, column: str, row_id: str, plaintext: bytes) -> bytes:
        """Return ``header || nonce || ciphertext+tag`` bound to table, column and row."""
        header = self._header
        key = (table, column, row_id, header)
        aad = self._aads.get(key) or self._aad(key)
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, table: str, column: str, row_id: str, blob: bytes) -> bytes:
        """Return the plaintext of ``blob``, raising :class:`DecryptionError` on any mismatch."""
        if len(blob) < 2 + NONCE_BYTES + 16 or blob[0] != FIELD_FORMAT:
            raise DecryptionError(f"{table}.{column} is not a v1 field value")
        key = (table, column, row_id, blob[:2])
        aad = self._aads.get(key) or self._aad(key)
        try:
            return self._aead.decrypt(blob[2:14], blob[14:], aad)
        except InvalidTag:
            raise DecryptionError(f"{table}.{column} failed authentication") from None


def seal(ring: Keyring, purpose: str, row_id: str, plaintext: bytes) -> bytes:
    """Encrypt a small non-lead secret (a TOTP seed) directly under the primary master key."""
    master = ring.primary
    header = bytes((SEALED_FORMAT,)) + master.kid.to_bytes(4, "big")
    nonce = os.urandom(NONCE_BYTES)
    aad = b"crm|v1|sealed|%s|%s|%s" % (purpose.encode(), row_id.encode(), header)
    return header + nonce + master.aead.encrypt(nonce, plaintext, aad)


def sealed_kid(blob: bytes) -> int:
    """Return the master key id a sealed value was made with."""
    return int.from_bytes(blob[1:5], "big")


def unseal(ring: Keyring, purpose: str, row_id: str, blob: bytes) -> bytes:
    """Decrypt a value made by :func:`seal`."""
    if len(blob) < 5 + NONCE_BYTES + 16 or blob[0] != SEALED_FORMAT:
        raise DecryptionError("not a sealed value")
    header = bytes(blob[:5])
    master = ring.usable(sealed_kid(blob))
    aad = b"crm|v1|sealed|%s|%s|%s" % (purpose.encode(), row_id.encode(), header)
    try:
        return master.aead.decrypt(bytes(blob[5:17]), bytes(blob[17:]), aad)
    except InvalidTag:
        raise DecryptionError(f"sealed {purpose} failed authentication") from None


# --- blind indexes -------------------------------------------------------------------


def normalize_text(value: str) -> str:
    """NFKC-normalise, case-fold, trim and collapse inner white space."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def normalize_email(value: str) -> str:
    """Lower-case and trim an e-mail address."""
    return normalize_text(value)


MAX_PHONE_INPUT = 250  # phonenumbers refuses longer input, and so must its shortcut
_TYPED_US_NUMBER = re.compile(r"\+?[0-9 ().-]+")  # digits and the separators people type, nothing else
_NOT_DIGIT = re.compile(r"[^0-9]")


def _typed_us_number(value: str) -> str | None:
    """The E.164 form of a US number written with digits and separators only, else ``None``.

    Ten digits starting 2 to 9 (an area code), alone or after country code 1, are what
    ``phonenumbers`` turns into ``+1`` and those ten digits; anything else is left to it. About
    ten times faster: a match check at a million leads compares a dozen stored numbers.
    """
    if len(value) > MAX_PHONE_INPUT or not _TYPED_US_NUMBER.fullmatch(value):
        return None
    digits = _NOT_DIGIT.sub("", value)
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    elif value.lstrip().startswith("+"):
        return None  # "+" and ten digits is another country's number
    return "+1" + digits if len(digits) == 10 and digits[0] in "23456789" else None


@lru_cache(maxsize=1024)
def normalize_phone(value: str, region: str = "US") -> str | None:
    """Return the E.164 form of a phone number, or ``None`` when it is not a valid number.

    Cached: one number is normalised for its index, its match and its checks in turn.
    """
    if region == "US" and (typed := _typed_us_number(value)):
        return typed
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def index_bits(expected_rows: int) -> int:
    """Choose blind-index length L with 2 <= R / 2**L <= sqrt(R) (the CipherSweet planner)."""
    rows = max(expected_rows, 16)
    low = math.ceil(math.log2(rows) / 2)
    high = math.floor(math.log2(rows) - 1)
    return max(low, high)


class BlindIndexer:
    """Computes keyed, truncated blind indexes with one HKDF-derived key per field."""

    def __init__(self, root: bytes, bits: int):
        if not 1 <= bits <= 31:
            raise ValueError("blind index length must be 1..31 bits")
        self.bits = bits
        self._root = root
        self._keys: dict[str, bytes] = {}

    def _key(self, name: str) -> bytes:
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = _derive(self._root, b"crm-bidx", f"crm|v1|bidx|{name}".encode())
        return key

    def compute(self, name: str, normalized: str) -> int:
        """Return the L-bit index of an already-normalised value for index ``name``."""
        digest = hmac.new(self._key(name), normalized.encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:4], "big") >> (32 - self.bits)

    def fingerprint(self, name: str, normalized: str) -> str:
        """Return the full keyed HMAC (hex) of a value: an exact, non-reversible identity (e.g. an imported row)."""
        return hmac.new(self._key(name), normalized.encode(), hashlib.sha256).hexdigest()


def random_token(nbytes: int = 32) -> str:
    """Return a URL-safe random token for sessions, invitations and idempotency keys."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """Hash a bearer token for storage, so a database read never yields a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()
