"""The label table covers every code that reaches a staff page: a new code without words fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm import audit, cadence, eligibility, labels, vob
from crm.forms.clinician import DECISION_LABELS
from crm.forms.intake import REFERRAL_FIELDS, VA_FIELDS
from crm.forms.privacy import DNC_CHANNEL_LABELS
from crm.models import (
    EXIT_REASONS,
    PREFERRED_LANGUAGES,
    REOPEN_REASONS,
    AppointmentKind,
    AppointmentPlace,
    AppointmentStatus,
    AttemptOutcome,
    Channel,
    CoverageType,
    LeadSource,
    Role,
    Stage,
)
from crm.operations import alerts
from crm.operations.records import INSURANCE_FIELDS, LEAD_FIELDS

CRM = Path(__file__).resolve().parents[1] / "crm"


def _codes_in_source(pattern: str) -> set[str]:
    """Every code the application's Python passes where ``pattern`` (one group) matches."""
    found: set[str] = set()
    for path in CRM.rglob("*.py"):
        found |= set(re.findall(pattern, path.read_text()))
    return found


#: Each vocabulary of the label table, and every code that can reach a staff page in it.
VOCABULARIES = {
    "stages": set(Stage),
    "stage_reasons": {r for reasons in EXIT_REASONS.values() for r in reasons} | set(REOPEN_REASONS)
    | {cadence.RULES["exhausted_reason"]},
    "sources": set(LeadSource),
    "coverage": set(CoverageType),
    "channels": set(Channel),
    "attempt_outcomes": set(AttemptOutcome),
    "roles": set(Role),
    "appointment_kinds": set(AppointmentKind),
    "appointment_places": set(AppointmentPlace),
    "appointment_statuses": set(AppointmentStatus),
    "languages": set(PREFERRED_LANGUAGES),
    "screening": {eligibility.ELIGIBLE, eligibility.REVIEW, eligibility.INELIGIBLE, "none"}
    | {band["code"] for band in eligibility.RULES["phq9"]["bands"]}
    | {rule["risk"] for rule in eligibility.RULES["cssrs"]["triage"]} | {code for code, _words in DECISION_LABELS},
    "contact_ways": {code for code, _words in DNC_CHANNEL_LABELS} | {"web", "verbal", "written", "import"},
    "alert_kinds": {alerts.URGENT, alerts.FIRST_RESPONSE, alerts.CALLBACK_OVERDUE, alerts.SIGN_OFF, alerts.DIGEST},
    "audit_actions": set(audit.ACTIONS),
    "audit_words": set(audit.OBJECT_TYPES) | {"user", "public", "system"}
    | _codes_in_source(r'\boutcome="([a-z_]+)"'),
    "events": _codes_in_source(r'add_event\([^)]*?, "([a-z_]+)"') | _codes_in_source(r'_event_row\([^)]*?, "([a-z_]+)"')
    | {"proposal_accepted", "proposal_dismissed", "enquiry", "attempt", "callback", "screening"},
    "detail_keys": set(REFERRAL_FIELDS) | set(VA_FIELDS) | {"contact_method", "best_time", "voicemail_ok", "text_ok"},
}


@pytest.mark.parametrize("vocabulary", sorted(VOCABULARIES))
def test_every_code_has_words(vocabulary):
    table = {str(code) for code in labels.VOCABULARIES[vocabulary]}
    missing = sorted(str(code) for code in VOCABULARIES[vocabulary] if str(code) not in table)
    assert not missing, f"codes without a label in crm/labels.py {vocabulary}: {missing}"


def test_every_correctable_field_has_a_name():
    names = set(LEAD_FIELDS) | {f"insurance.{name}" for name in INSURANCE_FIELDS}
    assert names <= set(labels.FIELDS), sorted(names - set(labels.FIELDS))


def test_the_source_scan_finds_the_timeline_events():
    assert {"stage_changed", "note", "assigned", "consent_recorded", "returned"} <= VOCABULARIES["events"]


def test_vob_codes_have_their_words():
    for name in ("statuses", "outcomes", "pa_statuses"):
        assert all(vob.label(name, code) != code for code in vob.codes(name)), name


def test_labels_are_marked_for_the_catalog_and_read_lazily(app):
    with app.test_request_context():
        assert labels.label("insurance_review") == "Insurance review"
        assert labels.label(True) == "Yes" and labels.shown(False) == "No"
        assert labels.label("two_plus_unknown") == "Two plus unknown"  # an unknown code is still readable
    for table in labels.VOCABULARIES.values():
        for code, words in table.items():
            assert isinstance(words, str) and words.isupper() or hasattr(words, "_func"), (code, words)
