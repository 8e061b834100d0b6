"""Password hashing (argon2id) and the NIST SP 800-63B-4 password rules.

Lengths count Unicode code points after NFKC normalisation; nothing is truncated and no
composition rule applies. The blocklist ships with the package, so checks work offline.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

# ASVS 5.0 appendix C: argon2id with m >= 46 MiB, t = 1, p = 1; we use 48 MiB and t = 2.
HASHER = PasswordHasher(time_cost=2, memory_cost=48 * 1024, parallelism=1)
MIN_LENGTH_SINGLE_FACTOR = 15
MIN_LENGTH_WITH_TOTP = 8
MAX_LENGTH = 256
MIN_DISTINCT_CHARACTERS = 4
CONTEXT_WORDS = ("ketamine", "spravato", "esketamine")
_TRIMMED = "0123456789!@#$%^&*()-_=+.,;:?~ "
#: zxcvbn's own input cap: its matching grows steeply with length, and a password whose
#: first 72 characters are hard to guess only gets harder with more.
ESTIMATE_CHARS = 72
#: log10 of the guesses zxcvbn estimates: 10^10 resists offline guessing of a password used
#: alone; 10^6 suffices behind a second factor and throttling, unless a pattern made it.
SINGLE_FACTOR_GUESSES_LOG10 = 10
WITH_TOTP_GUESSES_LOG10 = 6
_PATTERNS = frozenset({"repeat", "sequence", "spatial"})
_NOT_ALNUM = re.compile(r"[\W_]+")


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


def password_length(password: str) -> int:
    """The length the rules count: code points after NFKC normalisation."""
    return len(_normalize(password))


def _normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@cache
def blocklist() -> frozenset[str]:
    """Common and breached passwords shipped with the package (``#`` lines are comments)."""
    text = resources.files("crm").joinpath("data/common-passwords.txt").read_text(encoding="utf-8")
    lines = (line.strip().casefold() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def context_words(email: str = "", clinic_name: str = "") -> tuple[str, ...]:
    """Words a password must not contain: the clinic's name and treatments, the user's e-mail."""
    local, _, domain = email.casefold().partition("@")
    name = clinic_name.casefold()
    pieces = [local, _compact(local), domain.split(".")[0], _compact(name), *name.split()]
    return CONTEXT_WORDS + tuple(p for p in pieces if len(p) >= 4)


def _compact(text: str) -> str:
    return _NOT_ALNUM.sub("", text)


def password_problem(password: str, *, has_totp: bool, context: Iterable[str] = CONTEXT_WORDS) -> str | None:
    """Return why ``password`` is unacceptable, or ``None``.

    :param has_totp: the account signs in with a second factor, which lowers the minimum.
    :param context: words the password must not contain (see :func:`context_words`).
    """
    normalized = _normalize(password)
    minimum = MIN_LENGTH_WITH_TOTP if has_totp else MIN_LENGTH_SINGLE_FACTOR
    if len(normalized) < minimum:
        return f"Use at least {minimum} characters (spaces count; a few unrelated words work well)."
    if len(normalized) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    folded = normalized.casefold()
    if len(set(folded)) < MIN_DISTINCT_CHARACTERS:
        return "That password repeats too few characters. Choose something less predictable."
    if {folded, folded.strip(_TRIMMED), _compact(folded)} & blocklist():
        return "That password is on a list of common passwords. Choose something less predictable."
    if any(word in folded or word in _compact(folded) for word in context if word):
        return "Don't use the clinic's name, its treatments or your e-mail address in your password."
    return _guessability_problem(normalized, has_totp=has_totp, context=context)


def _guessability_problem(password: str, *, has_totp: bool, context: Iterable[str]) -> str | None:
    """Refuse sequences, repeats, keyboard walks and dressed-up common words (zxcvbn's estimate)."""
    estimate = zxcvbn(password[:ESTIMATE_CHARS], user_inputs=[w for w in context if w])
    guesses = estimate["guesses_log10"]
    patterned = any(match["pattern"] in _PATTERNS for match in estimate["sequence"])
    if guesses >= SINGLE_FACTOR_GUESSES_LOG10 or (has_totp and guesses >= WITH_TOTP_GUESSES_LOG10 and not patterned):
        return None
    warning = estimate["feedback"]["warning"] or "It follows a predictable pattern."
    return (f"That password is too easy to guess. {warning} Sequences, repeated words, keyboard rows and "
            "swapped-in symbols don't help; a few unrelated words do.")


#: Verified against when an account does not exist, so unknown and known e-mails cost the same.
#: A fixed hash with :data:`HASHER`'s parameters: hashing one at import would slow every start by ~70 ms.
DUMMY_HASH = "$argon2id$v=19$m=49152,t=2,p=1$vk9ZLUdqEj6SmedzwG9gyw$IM/4ykeT7V0nHOozZIKp5gPk9zxyUm+sdDqNoNUy298"  # noqa: S105
