"""TOTP second factor (RFC 6238) and one-time recovery codes; pure functions, no database.

Codes use 30-second steps. The current step is accepted and, as a documented allowance for
clock drift and typing time, the step before it; a step at or before the last one used is
refused, so a code works once. Recovery codes carry 80 random bits and are stored only as
argon2id hashes.
"""

from __future__ import annotations

import hmac
import secrets
import time
import unicodedata

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes: i, l, o, 0, 1
_RECOVERY_LENGTH = 16  # 16 symbols of 31 ≈ 79 bits
# Recovery codes are long random secrets, so a light argon2id cost is enough.
RECOVERY_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def new_secret() -> str:
    """Return a fresh 160-bit base32 TOTP seed."""
    return pyotp.random_base32()


def current_step(now: float | None = None) -> int:
    """The 30-second step number for ``now`` (default: the current time)."""
    return int(now if now is not None else time.time()) // STEP_SECONDS


def matching_step(secret: str, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """Return the step ``code`` belongs to if it is valid and unused, else ``None``."""
    code = ascii_digits("".join(code.split()))
    if code is None:
        return None
    otp = pyotp.TOTP(secret)
    step = current_step(now)
    for candidate in range(step, step - DRIFT_STEPS - 1, -1):
        if last_step is not None and candidate <= last_step:
            break
        if hmac.compare_digest(otp.generate_otp(candidate), code):
            return candidate
    return None


def ascii_digits(code: str) -> str | None:
    """The code in ASCII digits (a phone set to another script may type ٨ for 8), or None if not all digits."""
    if not code or not code.isdecimal():
        return None
    return "".join(str(unicodedata.decimal(ch)) for ch in code)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_data_uri(uri: str) -> str:
    """Render ``uri`` as an SVG QR code in a ``data:`` URI, locally (no external service)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#102a43")


def new_recovery_codes() -> list[str]:
    """Return fresh one-time recovery codes, formatted ``xxxx-xxxx-xxxx-xxxx``."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def normalize_recovery_code(code: str) -> str:
    """Lower-case a typed recovery code and drop spaces and dashes."""
    return "".join(ch for ch in code.casefold() if ch.isalnum())


def hash_recovery_code(code: str) -> str:
    """Hash a recovery code for storage."""
    return RECOVERY_HASHER.hash(normalize_recovery_code(code))


def recovery_code_matches(stored_hash: str, code: str) -> bool:
    """True when ``code`` is the recovery code behind ``stored_hash``."""
    try:
        return RECOVERY_HASHER.verify(stored_hash, normalize_recovery_code(code))
    except (VerificationError, InvalidHashError):
        return False
