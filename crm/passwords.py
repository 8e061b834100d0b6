"""Password hashing (argon2id) and the NIST SP 800-63B-4 password rules."""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# ASVS 5.0 appendix C: argon2id with m >= 46 MiB, t = 1, p = 1; we use 48 MiB and t = 2.
HASHER = PasswordHasher(time_cost=2, memory_cost=48 * 1024, parallelism=1)
MIN_LENGTH_SINGLE_FACTOR = 15
MIN_LENGTH_WITH_TOTP = 8
MAX_LENGTH = 256
CONTEXT_WORDS = ("ketamine", "spravato", "esketamine")


def hash_password(password: str) -> str:
    """Return an argon2id hash of the NFKC-normalised password."""
    return HASHER.hash(_normalize(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash still costs one verification."""
    try:
        return HASHER.verify(stored_hash or DUMMY_HASH, _normalize(password)) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than today's."""
    return HASHER.check_needs_rehash(stored_hash)


def _normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@cache
def blocklist() -> frozenset[str]:
    """Common and breached passwords shipped with the package, so the check works offline."""
    text = resources.files("crm").joinpath("data/common-passwords.txt").read_text()
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip())


def password_problem(password: str, *, has_totp: bool, context: tuple[str, ...] = ()) -> str | None:
    """Return why ``password`` is unacceptable, or ``None``. No composition rules, no expiry."""
    minimum = MIN_LENGTH_WITH_TOTP if has_totp else MIN_LENGTH_SINGLE_FACTOR
    length = len(_normalize(password))
    if length < minimum:
        return f"Use at least {minimum} characters."
    if length > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    folded = _normalize(password).casefold()
    if folded in blocklist() or folded.strip("0123456789!. ") in blocklist():
        return "That password is too common. Choose something less predictable."
    for word in CONTEXT_WORDS + tuple(w.casefold() for w in context if len(w) >= 4):
        if word and word in folded:
            return "Don't use the clinic's name, its treatments or your e-mail in your password."
    return None


DUMMY_HASH = HASHER.hash("dummy password that never matches anything")
