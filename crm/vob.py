"""Verification-of-benefits rules: states, outcomes and the prior-authorisation graph.

Pure data access over ``data/vob.json``, shared by the form and the
operation so both offer and accept the same codes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RULES: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "vob.json").read_text())


def codes(name: str) -> list[str]:
    """The codes of a list of ``[code, label]`` pairs (``statuses``, ``outcomes``, ``pa_statuses``)."""
    return [code for code, _label in RULES[name]]


def label(name: str, code: str | None) -> str:
    """The label of a code, or the code itself when unknown."""
    return dict(RULES[name]).get(code, code or "")


def pa_moves(current: str | None) -> list[str]:
    """Prior-authorisation states reachable from ``current`` (staying put is always allowed)."""
    return RULES["pa_moves"].get(current or "", [])


def pa_offered(current: str | None) -> list[str]:
    """The PA states a form offers from ``current``: staying put and every allowed move, in list order."""
    return [code for code in ["", *codes("pa_statuses")] if pa_move_allowed(current, code)]


def pa_move_allowed(current: str | None, target: str | None) -> bool:
    """True when the PA sub-status may change from ``current`` to ``target``."""
    return target == current or not target and not current or target in pa_moves(current)
