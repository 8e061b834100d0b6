"""Spravato pre-screen rules: PHQ-9 score band, C-SSRS triage and the eligibility outcome.

Pure functions over plain answers; the rules, thresholds and wording live in
``data/eligibility.json`` (owned by the medical director). Coordinators are not
clinicians: the outcome routes a lead (eligible, needs clinician review, ineligible),
it never states a diagnosis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RULES: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "eligibility.json").read_text())

ELIGIBLE, REVIEW, INELIGIBLE = "eligible", "needs_review", "ineligible"
_RANK = {ELIGIBLE: 0, REVIEW: 1, INELIGIBLE: 2}
_EFFECT = {"review": REVIEW, "ineligible": INELIGIBLE}


@dataclass
class Result:
    """The outcome of a pre-screen with the reasons behind it, in rule order."""

    outcome: str
    reasons: list[str] = field(default_factory=list)
    phq9_score: int | None = None
    phq9_band: str | None = None
    cssrs_risk: str = "none"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, as stored (encrypted) on the screening."""
        return {
            "outcome": self.outcome,
            "reasons": self.reasons,
            "phq9_score": self.phq9_score,
            "phq9_band": self.phq9_band,
            "cssrs_risk": self.cssrs_risk,
        }


def exit_reasons(reason_codes: list[str]) -> list[str]:
    """The stage exit reason codes implied by the ineligible ones among ``reason_codes``, in order."""
    return [RULES["reasons"][code]["exit_reason"] for code in reason_codes if reason_effect(code) == INELIGIBLE]


def reason_effect(code: str) -> str:
    """The outcome a reason code forces (needs review or ineligible)."""
    return _EFFECT[RULES["reasons"][code]["effect"]]


def reason_text(code: str) -> str:
    """The wording shown for a reason code."""
    return RULES["reasons"][code]["text"]


def phq9_score(items: list[int]) -> int:
    """Sum nine PHQ-9 item scores, each 0 to 3."""
    if len(items) != len(RULES["phq9"]["items"]) or any(item not in (0, 1, 2, 3) for item in items):
        raise ValueError("PHQ-9 needs nine answers scored 0 to 3")
    return sum(items)


def phq9_band(score: int) -> str:
    """Return the severity band code of a PHQ-9 total (0 to 27)."""
    for band in RULES["phq9"]["bands"]:
        if band["min"] <= score <= band["max"]:
            return band["code"]
    raise ValueError("PHQ-9 total must be 0 to 27")


def phq9_needs_cssrs(items: list[int]) -> bool:
    """True when item 9 (thoughts of self-harm) is above 0: run the C-SSRS whatever the total."""
    return items[RULES["phq9"]["item9_index"]] > 0


def cssrs_risk(answers: dict[str, bool | None], q6_recent: bool | None = None) -> str:
    """Triage C-SSRS screener answers to ``none``, ``low``, ``moderate`` or ``high`` risk."""
    facts = {name for name, value in answers.items() if value}
    if answers.get("q6") and q6_recent:
        facts.add("q6_recent")
    for rule in RULES["cssrs"]["triage"]:
        if facts.intersection(rule["any_of"]):
            return rule["risk"]
    return "none"


def is_escalation(risk: str) -> bool:
    """True when a C-SSRS risk level calls for immediate crisis escalation."""
    return risk == RULES["cssrs"]["escalate_risk"]


def criteria_reasons(answers: dict[str, Any]) -> list[str]:
    """Reason codes from the checklist answers, in checklist order, without repeats."""
    reasons: list[str] = []
    for criterion in RULES["criteria"]:
        code = criterion["effects"].get(answers.get(criterion["name"]) or "unknown")
        if code and code not in reasons:
            reasons.append(code)
    indication = indication_reason(answers)
    if indication:
        reasons.append(indication)
    return reasons


def indication_reason(answers: dict[str, Any]) -> str | None:
    """Judge TRD (enough adequate trials) or MDSI once major depression is confirmed."""
    if answers.get("mdd") != "yes":
        return None
    trials = answers.get("adequate_trials")
    if trials is not None and trials >= RULES["indication"]["min_adequate_trials"]:
        return None
    if answers.get("acute_si") == "yes":
        return "mdsi_indication"
    if trials is None or answers.get("acute_si") in (None, "unknown"):
        return "indication_unknown"
    return "not_trd_or_mdsi"


def score_reasons(phq9_items: list[int], risk: str) -> list[str]:
    """Reason codes from the PHQ-9 and the C-SSRS triage."""
    reasons = []
    if phq9_needs_cssrs(phq9_items):
        reasons.append("phq9_item9")
    if phq9_score(phq9_items) < RULES["phq9"]["payer_minimum"]:
        reasons.append("phq9_below_payer_minimum")
    if risk != "none":
        reasons.append("cssrs_risk")
    return reasons


def evaluate(answers: dict[str, Any], phq9_items: list[int], cssrs: dict[str, bool | None],
             q6_recent: bool | None = None) -> Result:
    """Return eligible, needs clinician review or ineligible, with every reason that applies."""
    score = phq9_score(phq9_items)
    risk = cssrs_risk(cssrs, q6_recent)
    reasons = criteria_reasons(answers) + score_reasons(phq9_items, risk)
    outcome = max((reason_effect(code) for code in reasons), key=_RANK.__getitem__, default=ELIGIBLE)
    return Result(outcome, reasons, score, phq9_band(score), risk)
