"""Staff intake forms: a lead from a call or a referral, correcting a record, merging two records.

The patient and insurance fields are the public form's own field definitions and checks
(:class:`~crm.forms.public.EnquiryForm`), so a detail a coordinator types is held to exactly
the rules a patient's is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, Field, HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from ..models import LeadSource
from .leads import language_choices, options
from .patient import phone_number
from .public import STRIP, EnquiryForm, _fail

#: Sources a coordinator records (the web form records itself).
STAFF_SOURCES = {
    LeadSource.PHONE: _l("Phone call"),
    LeadSource.REFERRAL: _l("Referral from a provider"),
    LeadSource.VA_COMMUNITY_CARE: _l("VA Community Care"),
    LeadSource.WALK_IN: _l("Walk-in"),
    LeadSource.OTHER: _l("Other"),
}
REFERRAL_FIELDS = ("referrer_name", "referrer_practice", "referrer_phone", "referrer_npi", "records_received")
VA_FIELDS = ("va_referral_number", "va_authorized_services", "va_start", "va_end")


def npi_is_valid(npi: str) -> bool:
    """True for a 10-digit NPI whose last digit is its Luhn check digit over the ``80840`` prefix (CMS)."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    total = 24  # the prefix 80840 contributes 24 to the Luhn sum
    for position, char in enumerate(reversed(npi[:9])):
        digit = int(char)
        if position % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return (10 - total % 10) % 10 == int(npi[9])


class PatientFields(FlaskForm):
    """The public form's patient, contact-preference and insurance fields, with its own checks."""

    first_name = EnquiryForm.first_name
    last_name = EnquiryForm.last_name
    dob = EnquiryForm.dob
    phone = EnquiryForm.phone
    email = EnquiryForm.email
    zip_code = EnquiryForm.zip_code
    preferred_contact = EnquiryForm.preferred_contact
    best_time = EnquiryForm.best_time
    voicemail_ok = EnquiryForm.voicemail_ok
    text_ok = EnquiryForm.text_ok
    coverage_type = EnquiryForm.coverage_type
    carrier = EnquiryForm.carrier
    member_id = EnquiryForm.member_id
    group_number = EnquiryForm.group_number
    is_policyholder = EnquiryForm.is_policyholder
    policyholder_name = EnquiryForm.policyholder_name
    policyholder_dob = EnquiryForm.policyholder_dob
    policyholder_relationship = EnquiryForm.policyholder_relationship

    validate_email = EnquiryForm.validate_email
    _check_reachable = EnquiryForm._check_reachable
    _check_coverage = EnquiryForm._check_coverage
    _check_policyholder = EnquiryForm._check_policyholder
    is_commercial = EnquiryForm.is_commercial

    def validate(self, extra_validators: Any = None) -> bool:
        """Field checks, then the public form's rules that depend on several answers."""
        valid = super().validate(extra_validators)
        return self._check_reachable() & self._check_coverage() & valid

    def preferences(self) -> dict[str, Any]:
        """Contact preferences in the shape the web form stores them; none at all when nothing is chosen."""
        chosen = {"contact_method": self.preferred_contact.data or None, "best_time": self.best_time.data or None,
                  "voicemail_ok": bool(self.voicemail_ok.data), "text_ok": bool(self.text_ok.data)}
        return chosen if any(chosen.values()) else {}

    def policyholder(self) -> dict[str, Any] | None:
        """The policyholder's details when the patient is not the policyholder."""
        if self.is_policyholder.data != "no":
            return None
        dob = self.policyholder_dob.data
        return {"name": self.policyholder_name.data, "dob": dob.isoformat() if dob else None,
                "relationship": self.policyholder_relationship.data}

    def lead_values(self) -> dict[str, Any]:
        """The lead's and its current insurance's attributes, as the correction operation takes them."""
        holder = {"yes": True, "no": False}.get(self.is_policyholder.data)
        return {
            "first_name": self.first_name.data, "last_name": self.last_name.data, "dob": self.dob.data,
            "phone": self.phone.data or None, "email": self.email.data or None,
            "zip_code": self.zip_code.data or None, "preferences": self.preferences(),
            "insurance.coverage_type": self.coverage_type.data, "insurance.carrier": self.carrier.data or None,
            "insurance.member_id": self.member_id.data or None,
            "insurance.group_number": self.group_number.data or None,
            "insurance.patient_is_policyholder": holder, "insurance.policyholder": self.policyholder(),
        }

    def load(self, contact: dict[str, Any], insurance: dict[str, Any] | None) -> None:
        """Prefill from a lead's decrypted details (unreadable values stay blank)."""
        for name in ("first_name", "last_name", "dob", "phone", "email", "zip_code"):
            value = contact.get(name)
            self[name].data = value if isinstance(value, str | dt.date) else None
        prefs = contact.get("preferences") if isinstance(contact.get("preferences"), dict) else {}
        self.preferred_contact.data, self.best_time.data = prefs.get("contact_method"), prefs.get("best_time")
        self.voicemail_ok.data, self.text_ok.data = bool(prefs.get("voicemail_ok")), bool(prefs.get("text_ok"))
        if insurance:
            self._load_insurance(insurance)

    def _load_insurance(self, insurance: dict[str, Any]) -> None:
        record = insurance["record"]
        self.coverage_type.data = record.coverage_type
        for name in ("carrier", "member_id", "group_number"):
            value = insurance.get(name)
            self[name].data = value if isinstance(value, str) else None
        self.is_policyholder.data = {True: "yes", False: "no"}.get(record.patient_is_policyholder)
        holder = insurance.get("policyholder") if isinstance(insurance.get("policyholder"), dict) else {}
        self.policyholder_name.data = holder.get("name")
        self.policyholder_dob.data = dt.date.fromisoformat(holder["dob"]) if holder.get("dob") else None
        self.policyholder_relationship.data = holder.get("relationship") or ""


class CorrectLeadForm(PatientFields):
    """Correct an existing lead's details; every change is recorded with the value it replaced.

    A lead recorded without any insurance may stay without: the coverage question is optional here.
    """

    coverage_type = RadioField(*EnquiryForm.coverage_type.args,
                               **{**EnquiryForm.coverage_type.kwargs, "validators": [Optional()]})
    preferred_language = SelectField(_l("Preferred language"), choices=language_choices("—"),
                                     validators=[Optional()], default="")

    def lead_values(self) -> dict[str, Any]:
        """As the patient fields give them, without the insurance when no coverage was chosen.

        A blank language leaves the lead's as it is (a lead recorded without one may stay without).
        """
        values = super().lead_values()
        if not self.coverage_type.data:
            values = {k: v for k, v in values.items() if not k.startswith("insurance.")}
        if self.preferred_language.data:
            values["preferred_language"] = self.preferred_language.data
        return values

    def load(self, contact: dict[str, Any], insurance: dict[str, Any] | None, language: str | None = None) -> None:
        """Prefill from a lead's decrypted details and its preferred language (a plain code)."""
        super().load(contact, insurance)
        self.preferred_language.data = language or ""


def _after(start_field: str, message: str):
    def check(form: Any, field: Field) -> None:
        start = form[start_field].data
        if field.data and start and field.data < start:
            raise ValidationError(message)
    return check


class NewLeadForm(PatientFields):
    """A lead from a call, a referral, VA Community Care or a walk-in, with its source and verbal consent."""

    source = RadioField(_l("How did this lead reach us?"), choices=options(STAFF_SOURCES.items()),
                        validators=[DataRequired(_l("Choose where this lead came from."))])
    referrer_name = StringField(_l("Referring provider's name"), filters=STRIP,
                                validators=[Optional(), Length(max=120)])
    referrer_practice = StringField(_l("Practice"), filters=STRIP, validators=[Optional(), Length(max=120)])
    referrer_phone = StringField(_l("Practice phone"), filters=STRIP,
                                 validators=[Optional(), Length(max=32), phone_number])
    referrer_npi = StringField(_l("Provider NPI"), filters=STRIP, validators=[Optional(), Regexp(
        r"^\d{10}$", message=_l("An NPI is 10 digits."))])
    records_received = BooleanField(_l("Records received"))
    va_referral_number = StringField(_l("VA referral / authorization number"), filters=STRIP,
                                     validators=[Optional(), Length(max=40)])
    va_authorized_services = StringField(_l("Authorized services"), filters=STRIP,
                                         validators=[Optional(), Length(max=200)])
    va_start = DateField(_l("Authorization starts"), validators=[Optional()], format=["%Y-%m-%d", "%m/%d/%Y"])
    va_end = DateField(_l("Authorization ends"), format=["%Y-%m-%d", "%m/%d/%Y"], validators=[
        Optional(), _after("va_start", _l("The authorization ends before it starts."))])
    verbal_consent = BooleanField(_l("I read the contact-consent wording to the patient and they agreed"))
    note = TextAreaField(_l("Call note (optional)"), validators=[Optional(), Length(max=2000)])
    duplicate_reason = StringField(_l("Why create a new lead anyway?"), filters=STRIP,
                                   validators=[Optional(), Length(max=200)])
    checked = HiddenField()  # set once the coordinator has seen the possible matches

    def validate_referrer_npi(self, field: Field) -> None:
        """Refuse an NPI whose check digit is wrong (a mistyped number)."""
        if field.data and not npi_is_valid(field.data):
            raise ValidationError(_("That NPI's check digit is wrong; check the number with the referrer."))

    def validate(self, extra_validators: Any = None) -> bool:
        """The patient's fields, then what the chosen source requires."""
        valid = super().validate(extra_validators)
        return self._check_source() & valid

    def _check_source(self) -> bool:
        ok = True
        if self.source.data == LeadSource.REFERRAL:
            if not self.referrer_name.data:
                ok = _fail(self.referrer_name, "Enter the referring provider's name.")
            if not self.referrer_npi.data and not self.referrer_npi.errors:
                ok = _fail(self.referrer_npi, "Enter the referring provider's NPI.")
        if self.source.data == LeadSource.VA_COMMUNITY_CARE:
            if not self.va_referral_number.data:
                ok = _fail(self.va_referral_number, "Enter the VA referral or authorization number.")
            for name in ("va_start", "va_end"):
                if self[name].data is None and not self[name].errors:
                    ok = _fail(self[name], "Enter the authorization's start and end dates.")
        return ok

    def source_details(self) -> dict[str, Any] | None:
        """The chosen source's details, as stored (encrypted) on the lead."""
        names = {LeadSource.REFERRAL: REFERRAL_FIELDS, LeadSource.VA_COMMUNITY_CARE: VA_FIELDS}.get(self.source.data)
        if not names:
            return None
        return {name: _plain(self[name].data) for name in names}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


class MergeForm(FlaskForm):
    """Merge two records of one person: which lead survives."""

    other = StringField(_l("The other lead's reference code"), filters=STRIP,
                        validators=[DataRequired(_l("Enter the other lead's reference code.")), Length(max=16)])
    survivor = SelectField(_l("Keep"), choices=options([("this", _l("This lead")), ("other", _l("The other lead"))]),
                           default="this")
    confirm = BooleanField(_l("Both records are the same person"),
                           validators=[DataRequired(_l("Confirm that both records are the same person."))])

