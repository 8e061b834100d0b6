"""Referring practices: one row per practice however it is typed, its name sealed, for per-practice reports.

A referral lead's details (provider, practice, phone, NPI) stay encrypted with the lead's own
key. The practice alone is also recorded here, keyed by an HMAC of its normalised name, and the
lead points at it, so reports count referrals per practice from plain columns without ever
opening a lead. Names are unsealed only for the practices a report shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import crypto
from ..models import ReferringPractice, db, indexer, keyring, new_id

PURPOSE = "referring-practice"
KEY_NAME = "referring_practices|name"


def practice_key(name: str) -> str:
    """The keyed, exact identity of a practice name in any letter case or spacing."""
    return indexer().fingerprint(KEY_NAME, crypto.normalize_text(name))


def practice_id(details: dict[str, Any] | None) -> str | None:
    """The id of the practice a referral's details name, recorded on first sight; None when none is named."""
    name = " ".join(str((details or {}).get("referrer_practice") or "").split())
    if not name:
        return None
    key = practice_key(name)
    found = db.session.scalar(select(ReferringPractice.id).where(ReferringPractice.practice_key == key))
    if found:
        return found
    row_id = new_id()
    try:
        with db.session.begin_nested():
            db.session.add(ReferringPractice(id=row_id, practice_key=key,
                                             name_sealed=crypto.seal(keyring(), PURPOSE, row_id, name.encode())))
    except IntegrityError:  # another request recorded the same practice a moment ago
        return db.session.scalar(select(ReferringPractice.id).where(ReferringPractice.practice_key == key))
    return row_id


def practice_names(ids: Iterable[str]) -> dict[str, str]:
    """The names of just these practices (unsealed one by one); an unreadable name shows as unreadable."""
    wanted = [row_id for row_id in ids if row_id]
    if not wanted:
        return {}
    rows = db.session.execute(select(ReferringPractice.id, ReferringPractice.name_sealed)
                              .where(ReferringPractice.id.in_(wanted)))
    return {row_id: _unsealed(row_id, bytes(blob)) for row_id, blob in rows}


def _unsealed(row_id: str, blob: bytes) -> str:
    try:
        return crypto.unseal(keyring(), PURPOSE, row_id, blob).decode()
    except crypto.CryptoError:
        return "Unreadable practice name"
