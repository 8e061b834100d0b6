"""Known payers: turn a typed carrier name into a coarse code reports can group by.

The carrier a patient types is PHI and stays encrypted; this code from a fixed list
(``data/payers.json``) is the only payer value reports, charts and exports ever show.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

_DATA = json.loads((Path(__file__).parent / "data" / "payers.json").read_text())
PAYERS: tuple[tuple[str, str], ...] = tuple((code, label) for code, label, _patterns in _DATA["payers"])
_PATTERNS = tuple((code, tuple(patterns)) for code, _label, patterns in _DATA["payers"])
OTHER = "other"


def classify(carrier: str | None) -> str | None:
    """The payer code of a carrier as typed (``other`` when unknown), or None when no carrier was given."""
    if not carrier or not carrier.strip():
        return None
    text = unicodedata.normalize("NFKC", carrier).casefold()
    for code, patterns in _PATTERNS:
        if any(pattern in text for pattern in patterns):
            return code
    return OTHER


def label(code: str | None) -> str:
    """How a payer code is shown."""
    return dict(PAYERS).get(code or "", "No carrier given")
