"""The words staff pages show for stored codes: one table, read in the page language.

Every code that reaches a staff page (stages, reasons, sources, coverage, outcomes, appointment
kinds, timeline events, audit actions, languages…) has its label here, marked for the catalog with
``lazy_gettext`` so a staff language is a catalog away. ``tests/test_labels.py`` fails when a code of
any of these vocabularies has no label, so a new code cannot reach a page as ``snake_case``.
"""

from __future__ import annotations

from typing import Any

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l

from .models import (
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

STAGES = {
    Stage.NEW: _l("New"), Stage.CONTACTING: _l("Contacting"), Stage.CONTACTED: _l("Contacted"),
    Stage.SCREENING: _l("Screening"), Stage.INSURANCE_REVIEW: _l("Insurance review"), Stage.ELIGIBLE: _l("Eligible"),
    Stage.SCHEDULED: _l("Scheduled"), Stage.CONVERTED: _l("Converted"), Stage.INELIGIBLE: _l("Ineligible"),
    Stage.UNREACHABLE: _l("Unreachable"), Stage.CLOSED: _l("Closed"),
}
#: Why a lead left the pipeline or came back to it (``EXIT_REASONS``, ``REOPEN_REASONS``, the cadence's own).
STAGE_REASONS = {
    "under_18": _l("Under 18"), "contraindication": _l("Contraindication"),
    "not_trd_or_mdsi": _l("Not TRD or MDSI"), "active_untreated_sud": _l("Active untreated substance use"),
    "no_transport": _l("No transport home"), "other": _l("Other"), "cadence_exhausted": _l("Cadence exhausted"),
    "wrong_number": _l("Wrong number"), "chose_other_provider": _l("Chose another provider"), "cost": _l("Cost"),
    "not_ready": _l("Not ready"), "referred_out": _l("Referred out"), "do_not_contact": _l("Do not contact"),
    "duplicate": _l("Duplicate"), "patient_returned": _l("Patient returned"),
    "new_information": _l("New information"), "closed_in_error": _l("Closed in error"),
    "erased": _l("Erased"), "merged": _l("Merged"),
}
SOURCES = {
    LeadSource.WEB_FORM: _l("Web form"), LeadSource.PHONE: _l("Phone"), LeadSource.REFERRAL: _l("Referral"),
    LeadSource.FIND_A_CENTER: _l("Find a Center"), LeadSource.PAYER_DIRECTORY: _l("Payer directory"),
    LeadSource.VA_COMMUNITY_CARE: _l("VA Community Care"), LeadSource.WALK_IN: _l("Walk-in"),
    LeadSource.OTHER: _l("Other"),
}
#: Staff wording of each coverage type (the public form words them for patients).
COVERAGE = {
    CoverageType.PPO: "PPO", CoverageType.HMO: "HMO", CoverageType.EPO: "EPO", CoverageType.MEDICARE: _l("Medicare"),
    CoverageType.MEDICAID: _l("Medi-Cal / Medicaid"), CoverageType.VA_TRICARE: _l("VA / TRICARE"),
    CoverageType.SELF_PAY: _l("Self-pay"), CoverageType.NOT_SURE: _l("Not sure"),
}
CHANNELS = {Channel.CALL: _l("Call"), Channel.TEXT: _l("Text"), Channel.EMAIL: _l("E-mail")}
ATTEMPT_OUTCOMES = {
    AttemptOutcome.REACHED: _l("Reached"), AttemptOutcome.NO_ANSWER: _l("No answer"),
    AttemptOutcome.VOICEMAIL: _l("Voicemail left"), AttemptOutcome.WRONG_NUMBER: _l("Wrong number"),
    AttemptOutcome.CALL_LATER: _l("Asked to call later"),
}
ROLES = {Role.COORDINATOR: _l("Coordinator"), Role.CLINICIAN: _l("Clinician"), Role.MANAGER: _l("Manager"),
         Role.ADMIN: _l("Admin")}
APPOINTMENT_KINDS = {
    AppointmentKind.CONSULTATION: _l("Consultation"),
    AppointmentKind.REMS_FIRST_TREATMENT: _l("REMS enrolment / first treatment"),
    AppointmentKind.OTHER: _l("Other"),
}
APPOINTMENT_PLACES = {AppointmentPlace.CLINIC: _l("At the clinic"), AppointmentPlace.TELEHEALTH: _l("Telehealth")}
APPOINTMENT_STATUSES = {
    AppointmentStatus.BOOKED: _l("Booked"), AppointmentStatus.ATTENDED: _l("Attended"),
    AppointmentStatus.NO_SHOW: _l("No-show"), AppointmentStatus.CANCELLED: _l("Cancelled"),
}
#: What staff call each language a lead may prefer.
LANGUAGES = {"en": _l("English"), "es": _l("Spanish"), "vi": _l("Vietnamese"), "ko": _l("Korean"),
             "zh": _l("Chinese"), "tl": _l("Tagalog"), "fa": _l("Persian (Farsi)"), "ar": _l("Arabic")}
#: Pre-screen outcomes, PHQ-9 bands, C-SSRS risk levels and clinician sign-off decisions.
SCREENING = {
    "eligible": _l("Eligible"), "needs_review": _l("Needs clinician review"), "ineligible": _l("Ineligible"),
    "minimal": _l("Minimal"), "mild": _l("Mild"), "moderate": _l("Moderate"),
    "moderately_severe": _l("Moderately severe"), "severe": _l("Severe"), "none": _l("None"), "low": _l("Low"),
    "high": _l("High"), "not_eligible": _l("Not eligible"), "needs_more_information": _l("Needs more information"),
}
#: How a patient asked not to be contacted, and how a consent was taken.
CONTACT_WAYS = {
    "phone": _l("On the phone"), "stop_reply": _l("Replied STOP to a text"), "email": _l("By e-mail"),
    "letter": _l("By letter"), "in_person": _l("In person"), "web": _l("On the web form"),
    "verbal": _l("Verbally, on the phone"), "written": _l("In writing"), "import": _l("Imported"),
}
#: Insurance card sides.
CARD_SIDES = {"front": _l("Front"), "back": _l("Back")}
#: In-app alert kinds (:mod:`crm.operations.alerts`).
ALERT_KINDS = {"urgent_enquiry": _l("Urgent enquiry"), "first_response": _l("First call late"),
               "callback_overdue": _l("Callback overdue"), "sign_off_awaiting": _l("Sign-off waiting"),
               "morning_digest": _l("Morning summary"), "access_request_due": _l("Copy request due soon"),
               "access_request_overdue": _l("Copy request overdue")}
#: What a timeline entry or a correction calls each field of a lead.
FIELDS = {
    "first_name": _l("first name"), "last_name": _l("last name"), "dob": _l("date of birth"), "phone": _l("phone"),
    "email": _l("e-mail"), "zip_code": _l("ZIP code"), "preferences": _l("contact preferences"),
    "insurance.coverage_type": _l("coverage type"), "insurance.carrier": _l("insurance company"),
    "insurance.member_id": _l("member ID"), "insurance.group_number": _l("group number"),
    "insurance.patient_is_policyholder": _l("policyholder"), "insurance.policyholder": _l("policyholder details"),
    "current_insurance": _l("current insurance"), "marketing_consent": _l("marketing consent"),
    "preferred_language": _l("preferred language"),
}
#: Keys of stored preferences, policyholder and source details shown as a list of facts.
DETAIL_KEYS = {
    "contact_method": _l("Contact by"), "best_time": _l("Best time"), "voicemail_ok": _l("Voicemail OK"),
    "text_ok": _l("Text OK"), "call": _l("Phone call"), "text": _l("Text message"), "morning": _l("Morning"),
    "afternoon": _l("Afternoon"), "evening": _l("Evening"), "name": _l("Name"), "relationship": _l("Relationship"),
    "spouse": _l("Spouse or partner"), "parent": _l("Parent"), "self": _l("Self"), "child": _l("Child"),
    "referring_provider": _l("Referring provider"), "referring_npi": _l("Referring NPI"),
    "records_received": _l("Records received"), "va_referral_number": _l("VA referral number"),
    "authorized_services": _l("Authorized services"), "authorized_from": _l("Authorized from"),
    "authorized_to": _l("Authorized to"), "unreadable": _l("Unreadable"), "referrer_name": _l("Referred by"),
    "referrer_practice": _l("Practice"), "referrer_phone": _l("Referrer's phone"), "referrer_npi": _l("Referrer's NPI"),
    "va_authorized_services": _l("Authorized services"), "va_start": _l("Authorization starts"),
    "va_end": _l("Authorization ends"),
}
#: Timeline events (``LeadEvent.kind``) without a summary of their own.
EVENTS = {
    "stage_changed": _l("Stage changed"), "assigned": _l("Assigned"), "note": _l("Note"),
    "acknowledged": _l("Urgent flag acknowledged"), "crisis_escalated": _l("Crisis escalated (C-SSRS high risk)"),
    "appointment": _l("Appointment"), "vob_recorded": _l("Benefits check"),
    "language_changed": _l("Preferred language changed"), "field_changed": _l("Detail corrected"),
    "proposal_accepted": _l("New details from an unverified enquiry accepted"),
    "proposal_dismissed": _l("New details from an unverified enquiry dismissed"),
    "returned": _l("Returning enquiry"), "merged_in": _l("Another record of this person merged in"),
    "merged_into": _l("Merged into another record"), "created": _l("Lead created"),
    "created_despite_match": _l("Created despite a possible match"),
    "reopened": _l("Reopened"), "consent_recorded": _l("Contact consent recorded"),
    "do_not_contact": _l("Marked do not contact"), "do_not_contact_lifted": _l("Do-not-contact lifted"),
    "access_requested": _l("Access request recorded"), "enquiry": _l("Enquiry received"),
    "attempt": _l("Contact attempt"), "callback": _l("Callback scheduled"), "screening": _l("Pre-screen"),
}
#: Audit actions (:data:`crm.audit.ACTIONS`), as the audit viewer names them.
AUDIT_ACTIONS = {
    "sign_in": _l("Signed in"), "sign_out": _l("Signed out"), "session_expired": _l("Session expired"),
    "session_revoked": _l("Session revoked"), "second_factor": _l("Second factor"),
    "password_changed": _l("Password changed"), "reauthenticated": _l("Re-authenticated"),
    "user_created": _l("User created"), "user_invited": _l("User invited"),
    "user_deactivated": _l("User deactivated"), "user_reactivated": _l("User reactivated"),
    "role_changed": _l("Role changed"), "access_denied": _l("Access denied"),
    "enquiry_received": _l("Enquiry received"), "leads_listed": _l("Leads listed"), "lead_viewed": _l("Lead viewed"),
    "field_revealed": _l("Field revealed"), "card_viewed": _l("Insurance card viewed"),
    "lead_exported": _l("Lead exported"), "stage_changed": _l("Stage changed"), "lead_assigned": _l("Lead assigned"),
    "note_added": _l("Note added"), "attempt_logged": _l("Contact attempt logged"),
    "callback_scheduled": _l("Callback scheduled"), "urgent_acknowledged": _l("Urgent flag acknowledged"),
    "crisis_escalated": _l("Crisis escalated"), "vob_recorded": _l("Benefits check recorded"),
    "screening_recorded": _l("Pre-screen recorded"), "screening_signed_off": _l("Pre-screen signed off"),
    "screening_draft_saved": _l("Pre-screen draft saved"), "work_handed_over": _l("Work handed over"),
    "decrypt_failed": _l("Decryption failed"), "audit_viewed": _l("Audit log viewed"),
    "audit_exported": _l("Audit log exported"), "audit_verified": _l("Audit chain verified"),
    "key_added": _l("Key added"), "key_promoted": _l("Key promoted"), "key_retired": _l("Key retired"),
    "keys_rotated": _l("Keys rotated"), "settings_changed": _l("Settings changed"), "lead_erased": _l("Lead erased"),
    "do_not_contact_set": _l("Do-not-contact set"), "do_not_contact_lifted": _l("Do-not-contact lifted"),
    "legal_hold_set": _l("Legal hold set"), "legal_hold_released": _l("Legal hold released"),
    "access_requested": _l("Access request recorded"), "retention_applied": _l("Retention applied"),
    "backup_made": _l("Backup made"), "restore_checked": _l("Restore checked"), "report_viewed": _l("Report viewed"),
    "report_exported": _l("Report exported"), "preferred_language_changed": _l("Preferred language changed"),
    "lead_created": _l("Lead created"), "call_added": _l("Call added"), "lead_corrected": _l("Lead corrected"),
    "lead_edit_opened": _l("Correction form opened"), "previous_values_revealed": _l("Previous values revealed"),
    "proposal_accepted": _l("Proposed details accepted"), "proposal_dismissed": _l("Proposed details dismissed"),
    "lead_merged": _l("Leads merged"), "leads_imported": _l("Leads imported"),
    "import_previewed": _l("Import previewed"),
    "alert_resent": _l("Alert resent"), "integrity_failed": _l("Integrity check failed"),
    "accounts_sealed": _l("Accounts sealed"), "emergency_access_granted": _l("Emergency access granted"),
    "emergency_access_used": _l("Emergency access used"), "emergency_access_ended": _l("Emergency access ended"),
    "appointment_booked": _l("Appointment booked"), "appointment_rescheduled": _l("Appointment rescheduled"),
    "appointment_cancelled": _l("Appointment cancelled"), "appointment_attended": _l("Appointment attended"),
    "appointment_no_show": _l("Appointment no-show"), "appointment_exported": _l("Appointment exported"),
    "lead_converted": _l("Lead converted"),
}
#: Audit object types and outcomes, and the who of an event without a staff account.
AUDIT_WORDS = {
    "user": _l("User"), "lead": _l("Lead"), "session": _l("Session"), "endpoint": _l("Page"), "key": _l("Key"),
    "audit": _l("Audit log"), "settings": _l("Settings"), "backup": _l("Backup"), "report": _l("Report"),
    "alert": _l("Alert"), "success": _l("Success"), "failure": _l("Failure"), "denied": _l("Denied"),
    "refused": _l("Refused"),
    "system": _l("System"), "public": _l("Public form"), "cadence": _l("Contact cadence"),
}
#: Booleans, shown as words.
BOOLEANS = {True: _l("Yes"), False: _l("No")}

#: Every vocabulary above, in the order a code is looked up when no vocabulary is named.
VOCABULARIES: dict[str, dict[Any, Any]] = {
    "stages": STAGES, "stage_reasons": STAGE_REASONS, "sources": SOURCES, "coverage": COVERAGE,
    "channels": CHANNELS, "attempt_outcomes": ATTEMPT_OUTCOMES, "roles": ROLES,
    "appointment_kinds": APPOINTMENT_KINDS, "appointment_places": APPOINTMENT_PLACES,
    "appointment_statuses": APPOINTMENT_STATUSES, "languages": LANGUAGES, "screening": SCREENING,
    "contact_ways": CONTACT_WAYS, "card_sides": CARD_SIDES, "alert_kinds": ALERT_KINDS, "events": EVENTS,
    "detail_keys": DETAIL_KEYS, "audit_actions": AUDIT_ACTIONS, "audit_words": AUDIT_WORDS,
}
_ALL: dict[str, Any] = {}
for _table in reversed(VOCABULARIES.values()):
    _ALL.update({str(code): text for code, text in _table.items()})


def label(code: Any, vocabulary: str | None = None) -> str:
    """The words for ``code`` (from ``vocabulary`` when given), or the code made readable when it has none."""
    if code is None or code == "":
        return ""
    if isinstance(code, bool):
        return str(BOOLEANS[code])
    table = VOCABULARIES[vocabulary] if vocabulary else _ALL
    text = table.get(code, _ALL.get(str(code)))
    return str(text) if text is not None else str(code).replace("_", " ").capitalize()


def shown(value: Any) -> str:
    """A stored value as words: booleans as yes/no, codes by their label, anything else as it is."""
    if isinstance(value, bool):
        return str(BOOLEANS[value])
    if isinstance(value, str) and value in _ALL:
        return str(_ALL[value])
    return "" if value is None else str(value)


def pairs(vocabulary: str) -> list[tuple[str, str]]:
    """``(code, words)`` pairs of a vocabulary in its order, for select options."""
    return [(str(code), str(text)) for code, text in VOCABULARIES[vocabulary].items()]


def field_name(name: str) -> str:
    """What a lead's field is called in a sentence ("phone", "date of birth")."""
    return str(FIELDS.get(name, name.replace("_", " ")))


def lazy(code: Any, vocabulary: str | None = None) -> LazyString:
    """The words for ``code``, read when shown (for options built once, at import)."""
    return LazyString(label, code, vocabulary)
