"""Table-driven tests of the pre-screen rules, PHQ-9 bands, C-SSRS triage and the contact cadence."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from crm import cadence, eligibility
from crm.eligibility import ELIGIBLE, INELIGIBLE, REVIEW
from tests.screening import NO_RISK, PASSING, PHQ_MODERATE

LA = ZoneInfo("America/Los_Angeles")



@pytest.mark.parametrize("score,band", [
    (0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
    (15, "moderately_severe"), (19, "moderately_severe"), (20, "severe"), (27, "severe"),
])
def test_phq9_bands_at_every_boundary(score, band):
    assert eligibility.phq9_band(score) == band


@pytest.mark.parametrize("score", [-1, 28])
def test_phq9_band_rejects_impossible_totals(score):
    with pytest.raises(ValueError):
        eligibility.phq9_band(score)


@pytest.mark.parametrize("items", [[0] * 8, [0] * 10, [4] + [0] * 8, [-1] + [0] * 8])
def test_phq9_score_needs_nine_items_scored_0_to_3(items):
    with pytest.raises(ValueError):
        eligibility.phq9_score(items)


@pytest.mark.parametrize("item9,needs", [(0, False), (1, True), (3, True)])
def test_phq9_item9_above_zero_runs_cssrs_whatever_the_total(item9, needs):
    items = [0] * 8 + [item9]
    assert eligibility.phq9_needs_cssrs(items) is needs
    result = eligibility.evaluate(PASSING, items, NO_RISK)
    assert ("phq9_item9" in result.reasons) is needs


@pytest.mark.parametrize("answers,recent,risk", [
    ({}, None, "none"),
    ({"q1": False, "q2": False, "q6": False}, None, "none"),
    ({"q1": True}, None, "low"),
    ({"q1": True, "q2": True, "q3": False, "q4": False, "q5": False}, None, "low"),
    ({"q2": True, "q3": True, "q4": False, "q5": False}, None, "moderate"),
    ({"q6": True}, False, "moderate"),  # lifetime behaviour only
    ({"q6": True}, None, "moderate"),
    ({"q6": True}, True, "high"),  # behaviour in the past 3 months
    ({"q2": True, "q3": True, "q4": True}, None, "high"),
    ({"q2": True, "q5": True}, None, "high"),
    ({"q1": True, "q2": True, "q3": True, "q4": True, "q5": True, "q6": True}, True, "high"),
])
def test_cssrs_triage(answers, recent, risk):
    assert eligibility.cssrs_risk(answers, recent) == risk
    assert eligibility.is_escalation(risk) is (risk == "high")


def test_all_criteria_met_is_eligible():
    result = eligibility.evaluate(PASSING, PHQ_MODERATE, NO_RISK)
    assert (result.outcome, result.reasons, result.phq9_score, result.phq9_band) == (ELIGIBLE, [], 12, "moderate")


@pytest.mark.parametrize("change,outcome,reason", [
    ({"adult": "no"}, INELIGIBLE, "under_18"),
    ({"adult": "unknown"}, REVIEW, "age_unknown"),
    ({"mdd": "no"}, INELIGIBLE, "not_trd_or_mdsi"),
    ({"mdd": "unknown"}, REVIEW, "diagnosis_unknown"),
    ({"adequate_trials": 1}, INELIGIBLE, "not_trd_or_mdsi"),  # boundary: 1 trial is not TRD
    ({"adequate_trials": 0, "acute_si": "yes"}, REVIEW, "mdsi_indication"),
    ({"adequate_trials": None}, REVIEW, "indication_unknown"),
    ({"adequate_trials": 1, "acute_si": "unknown"}, REVIEW, "indication_unknown"),
    ({"aneurysmal_vascular_disease": "yes"}, INELIGIBLE, "contraindication"),
    ({"arteriovenous_malformation": "yes"}, INELIGIBLE, "contraindication"),
    ({"intracerebral_hemorrhage": "yes"}, INELIGIBLE, "contraindication"),
    ({"hypersensitivity": "yes"}, INELIGIBLE, "contraindication"),
    ({"hypersensitivity": "unknown"}, REVIEW, "contraindication_unknown"),
    ({"sud": "active_untreated"}, INELIGIBLE, "active_untreated_sud"),
    ({"sud": "remission"}, REVIEW, "sud_history"),
    ({"sud": "treated"}, REVIEW, "sud_history"),
    ({"sud": "unknown"}, REVIEW, "sud_unknown"),
    ({"transport": "no"}, INELIGIBLE, "no_transport"),
    ({"transport": "unknown"}, REVIEW, "transport_unknown"),
    ({"availability": "no"}, REVIEW, "no_availability"),
    ({"caution_bp": "yes"}, REVIEW, "caution"),
    ({"caution_pregnancy": "unknown"}, REVIEW, "caution"),
    ({"caution_medications": "yes"}, REVIEW, "caution"),
])
def test_each_criterion(change, outcome, reason):
    result = eligibility.evaluate({**PASSING, **change}, PHQ_MODERATE, NO_RISK)
    assert result.outcome == outcome
    assert reason in result.reasons
    if outcome == INELIGIBLE:
        assert eligibility.exit_reasons(result.reasons)  # maps to a stage exit reason


@pytest.mark.parametrize("trials,outcome", [(1, INELIGIBLE), (2, ELIGIBLE), (3, ELIGIBLE)])
def test_trd_needs_at_least_two_adequate_trials(trials, outcome):
    assert eligibility.evaluate({**PASSING, "adequate_trials": trials}, PHQ_MODERATE, NO_RISK).outcome == outcome


@pytest.mark.parametrize("total,outcome", [(9, REVIEW), (10, ELIGIBLE)])
def test_phq9_payer_minimum_boundary(total, outcome):
    items = [3, 3, 3, 0, 0, 0, 0, 0, 0]
    items[3] = total - 9
    assert eligibility.evaluate(PASSING, items, NO_RISK).outcome == outcome


def test_ineligible_wins_over_review_and_keeps_every_reason():
    result = eligibility.evaluate({**PASSING, "sud": "active_untreated", "caution_bp": "yes", "transport": "no"},
                                  PHQ_MODERATE, {"q1": True, "q2": False, "q6": False})
    assert result.outcome == INELIGIBLE
    assert result.reasons == ["active_untreated_sud", "no_transport", "caution", "cssrs_risk"]
    assert eligibility.exit_reasons(result.reasons) == ["active_untreated_sud", "no_transport"]
    assert result.cssrs_risk == "low"


def test_cssrs_risk_needs_clinician_review():
    result = eligibility.evaluate(PASSING, PHQ_MODERATE, {"q1": False, "q2": False, "q6": True}, q6_recent=True)
    assert (result.outcome, result.cssrs_risk) == (REVIEW, "high")


def test_every_reason_has_wording_and_a_known_effect():
    for code, reason in eligibility.RULES["reasons"].items():
        assert reason["text"] and eligibility.reason_effect(code) in (REVIEW, INELIGIBLE)
    for criterion in eligibility.RULES["criteria"]:
        assert set(criterion["effects"].values()) <= set(eligibility.RULES["reasons"])


# --- contact cadence -------------------------------------------------------------------

SUBMITTED = dt.datetime(2026, 3, 2, 17, 0)  # Monday 09:00 in Los Angeles


@pytest.mark.parametrize("calls,now,due", [
    (0, SUBMITTED, dt.datetime(2026, 3, 2, 17, 5)),  # first call within 5 minutes
    (1, SUBMITTED + dt.timedelta(minutes=6), dt.datetime(2026, 3, 2, 21, 0)),  # later the same day
    (2, SUBMITTED + dt.timedelta(hours=5), dt.datetime(2026, 3, 3, 17, 0)),  # day 1, opening time
    (3, SUBMITTED + dt.timedelta(days=1), dt.datetime(2026, 3, 4, 17, 0)),  # day 2
    (4, SUBMITTED + dt.timedelta(days=2), dt.datetime(2026, 3, 6, 17, 0)),  # day 4
    (5, SUBMITTED + dt.timedelta(days=4), dt.datetime(2026, 3, 9, 16, 0)),  # day 7 (after DST starts)
    (6, SUBMITTED + dt.timedelta(days=7), None),  # exhausted
    (2, dt.datetime(2026, 3, 3, 20, 0), dt.datetime(2026, 3, 3, 20, 0)),  # overdue step: now
])
def test_cadence_suggestions(calls, now, due):
    assert cadence.suggest_next(SUBMITTED, calls, now, LA) == due


@pytest.mark.parametrize("local,expected", [
    (dt.datetime(2026, 3, 2, 7, 0), dt.datetime(2026, 3, 2, 9, 0)),
    (dt.datetime(2026, 3, 2, 18, 59), dt.datetime(2026, 3, 2, 18, 59)),
    (dt.datetime(2026, 3, 2, 19, 0), dt.datetime(2026, 3, 3, 9, 0)),
    (dt.datetime(2026, 3, 2, 23, 30), dt.datetime(2026, 3, 3, 9, 0)),
])
def test_suggestions_land_inside_the_calling_window(local, expected):
    assert cadence.fit_window(cadence.to_utc(local, LA), LA) == cadence.to_utc(expected, LA)


def test_late_evening_submission_is_called_next_morning():
    submitted = cadence.to_utc(dt.datetime(2026, 3, 2, 22, 0), LA)
    assert cadence.suggest_next(submitted, 0, submitted, LA) == cadence.to_utc(dt.datetime(2026, 3, 3, 9, 0), LA)


def test_local_day_bounds_follow_the_clinic_zone():
    start, end = cadence.local_day_bounds(dt.datetime(2026, 7, 1, 3, 0), LA)  # 8 pm June 30 local
    assert (start, end) == (dt.datetime(2026, 6, 30, 7, 0), dt.datetime(2026, 7, 1, 7, 0))
