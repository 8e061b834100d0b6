"""The public enquiry form: field shape, choices and the messages a patient sees."""

from __future__ import annotations

from typing import Any

from email_validator import EmailNotValidError
from email_validator import validate_email as check_email_address
from flask import current_app
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    Field,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TelField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp

from ..cards import MAX_CARD_BYTES, CardRefused, CleanCard, clean_card
from ..clinic import age_on, clinic_today
from ..models import COMMERCIAL_COVERAGE, CoverageType
from . import MultiCheckboxField
from .patient import ZIP_CODE, person_name, phone_number, plain_text

MESSAGE_LIMIT = 1000
OLDEST_AGE = 120
ADULT_AGE = 18
STRIP = [lambda value: value.strip() if isinstance(value, str) else value]
DATE_FORMATS = ["%Y-%m-%d", "%m/%d/%Y"]

#: Contact-consent wording by version; a new wording needs a new CONSENT_VERSION.
CONTACT_CONSENT = {
    "2026-01": (
        "I agree that {clinic} may contact me at the number above by call or text, including with "
        "automated technology, about my enquiry, scheduling and insurance. Consent is not a condition "
        "of receiving services. Msg & data rates may apply. Reply STOP to opt out."
    ),
}

YES_NO = {"yes": "Yes", "no": "No"}
CONTACT_METHODS = {"call": "Phone call", "text": "Text message", "email": "E-mail"}
BEST_TIMES = {"morning": "Morning", "afternoon": "Afternoon", "evening": "Evening"}
INTERESTS = {"spravato": "Spravato (esketamine)", "ketamine": "Ketamine therapy", "not_sure": "Not sure yet"}
CONCERNS = {"depression": "Depression", "ptsd": "PTSD", "anxiety": "Anxiety", "other": "Something else"}
MEDS_TRIED = {"none": "None", "one": "1", "two_plus": "2 or more", "not_sure": "Not sure"}
HEARD_ABOUT = {
    "": "Choose one (optional)",
    "search": "Internet search",
    "doctor": "My doctor or therapist",
    "insurer": "My insurance company",
    "spravato_site": "The Spravato website",
    "friend": "A friend or family member",
    "va": "The VA",
    "social": "Social media",
    "other": "Somewhere else",
}
COVERAGE_LABELS = {
    CoverageType.PPO: "PPO",
    CoverageType.HMO: "HMO",
    CoverageType.EPO: "EPO",
    CoverageType.MEDICARE: "Medicare",
    CoverageType.MEDICAID: "Medi-Cal / Medicaid",
    CoverageType.VA_TRICARE: "VA / TRICARE",
    CoverageType.SELF_PAY: "I'll pay myself",
    CoverageType.NOT_SURE: "Not sure",
}
RELATIONSHIPS = {"": "Choose one", "spouse": "Spouse or partner", "parent": "Parent", "other": "Someone else"}


def _limit(count: int) -> Length:
    return Length(max=count, message=f"Please keep this to {count} characters or fewer.")


def contact_consent_wording() -> str:
    """The contact-consent sentence for the configured wording version and clinic."""
    version = current_app.config["CONSENT_VERSION"]
    return CONTACT_CONSENT[version].format(clinic=current_app.config["CLINIC_NAME"])


def check_birth_date(_form: Any, field: Field) -> None:
    """Refuse dates of birth in the future or implausibly long ago."""
    if field.data is None:
        return
    if field.data > clinic_today():
        raise ValidationError("The date of birth can't be in the future.")
    if age_on(field.data, clinic_today()) > OLDEST_AGE:
        raise ValidationError("Please check the year of the date of birth.")


#: What a patient reads when a card file is refused, by :class:`~crm.cards.CardRefused` reason.
CARD_MESSAGES = {
    "too_large": "Each card photo must be 5 MB or smaller.",
    "wrong_type": "Card photos must be JPEG, PNG or PDF files.",
    "unreadable": "We couldn't open this file. Please choose another photo or scan of your card.",
    "too_many_pixels": "This picture has too many pixels for us to open (over 50 megapixels). "
                       "Please send a smaller photo or a screenshot of it.",
    "pdf_encrypted": "This PDF is protected by a password. Please send one without a password, or a photo.",
    "pdf_active": "This PDF contains scripts or attached files, which we can't accept. "
                  "Please send a photo of your card or a plain scan.",
}


def read_upload(storage: Any) -> bytes | None:
    """The bytes of an uploaded file, ``None`` when absent; refuses an oversize one before reading it."""
    if not storage or not getattr(storage, "filename", ""):
        return None
    stream = storage.stream
    stream.seek(0, 2)
    if stream.tell() > MAX_CARD_BYTES:
        raise CardRefused("too_large")
    stream.seek(0)
    return stream.read()


class EnquiryForm(FlaskForm):
    """Every question on the public form; explicit fields only, so nothing else can be set.

    The form has no CSRF field of its own: CSRFProtect checks every POST's session-bound token
    before any view runs, and the template renders that token as a plain hidden input. A form
    field would only repeat the check and sign a new token on every submission.
    """

    class Meta:
        csrf = False

    # About you
    first_name = StringField("First name", filters=STRIP,
                             validators=[DataRequired("Enter your first name."), _limit(80), person_name])
    last_name = StringField("Last name", filters=STRIP,
                            validators=[DataRequired("Enter your last name."), _limit(80), person_name])
    dob = DateField(
        "Date of birth",
        format=DATE_FORMATS,
        validators=[InputRequired("Enter your date of birth."), check_birth_date],
        invalid_value_message="Enter your date of birth as a real date, for example 04/23/1985.",
    )
    phone = TelField("Mobile phone", filters=STRIP, validators=[Optional(), _limit(32), phone_number])
    email = EmailField("E-mail address", filters=STRIP, validators=[Optional(), _limit(254)])
    zip_code = StringField("ZIP code", filters=STRIP, validators=[Optional(), ZIP_CODE])
    preferred_contact = RadioField("How should we contact you?", choices=CONTACT_METHODS,
                                   validators=[Optional()], validate_choice=True)
    best_time = RadioField("Best time to reach you", choices=BEST_TIMES, validators=[Optional()])
    voicemail_ok = BooleanField("It's OK to leave a voicemail")
    text_ok = BooleanField("It's OK to text me")

    # What you are looking for
    interest = RadioField("What are you interested in?", choices=INTERESTS, validators=[Optional()])
    concerns = MultiCheckboxField("What would you like help with?", choices=CONCERNS, validators=[Optional()])
    meds_tried = RadioField("How many antidepressants have you tried?", choices=MEDS_TRIED,
                            validators=[Optional()])
    has_psychiatrist = RadioField("Are you seeing a psychiatrist now?", choices=YES_NO, validators=[Optional()])
    heard_about = SelectField("How did you hear about us?", choices=HEARD_ABOUT, validators=[Optional()])
    veteran = RadioField("Are you a veteran?", choices=YES_NO, validators=[Optional()])

    # Do you need help right now?
    need_help_now = RadioField("Do you need help right now?", choices=YES_NO,
                               validators=[InputRequired("Please tell us whether you need help right now.")])

    # Insurance
    coverage_type = RadioField(
        "What kind of coverage do you have?",
        choices={str(value): label for value, label in COVERAGE_LABELS.items()},
        validators=[InputRequired("Choose your kind of coverage, or “Not sure”.")],
    )
    carrier = StringField("Insurance company", filters=STRIP, validators=[Optional(), _limit(80), plain_text])
    member_id = StringField("Member ID", filters=STRIP, validators=[Optional(), Regexp(
        r"^[A-Za-z0-9 -]{1,30}$", message="The member ID can use letters, numbers, spaces and dashes (up to 30).")])
    group_number = StringField("Group number (optional)", filters=STRIP, validators=[Optional(), Regexp(
        r"^[A-Za-z0-9 -]{1,30}$", message="The group number can use letters, numbers, spaces and dashes (up to 30).")])
    is_policyholder = RadioField("Are you the policyholder?", choices=YES_NO, validators=[Optional()])
    policyholder_name = StringField("Policyholder's full name", filters=STRIP,
                                    validators=[Optional(), _limit(120), person_name])
    policyholder_dob = DateField(
        "Policyholder's date of birth",
        format=DATE_FORMATS,
        validators=[Optional(), check_birth_date],
        invalid_value_message="Enter the policyholder's date of birth as a real date, for example 04/23/1985.",
    )
    policyholder_relationship = SelectField("Their relationship to you", choices=RELATIONSHIPS,
                                            validators=[Optional()])
    card_front = FileField("Front of your card (optional)")
    card_back = FileField("Back of your card (optional)")

    message = TextAreaField("Anything else you'd like us to know? (optional)", filters=STRIP, validators=[
        Optional(), Length(max=MESSAGE_LIMIT, message="Please keep your message to 1,000 characters or fewer.")])

    # Consent
    contact_consent = BooleanField(
        "I agree to be contacted by call or text",
        validators=[DataRequired("Please agree to be contacted so we can reply to you.")],
    )
    privacy_ack = BooleanField(
        "I have read the privacy notice",
        validators=[DataRequired("Please confirm you have read the privacy notice.")],
    )
    marketing_consent = BooleanField("Yes, send me occasional news and educational messages (optional)")

    # Abuse controls: a field people never see, and a signed, single-use render token
    website = StringField("Leave this field empty", filters=STRIP)
    form_token = HiddenField()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.contact_consent.label.text = contact_consent_wording()

    def validate_email(self, field: Field) -> None:
        """Accept a well-formed address without contacting any mail server."""
        if not field.data:
            return
        try:
            field.data = check_email_address(field.data, check_deliverability=False).normalized
        except EmailNotValidError:
            raise ValidationError("Enter an e-mail address like name@example.com.") from None

    def validate_card_front(self, field: Field) -> None:
        """Check the front photo by its content and keep its cleaned form."""
        self._check_card(field)

    def validate_card_back(self, field: Field) -> None:
        """Check the back photo by its content and keep its cleaned form."""
        self._check_card(field)

    @staticmethod
    def _check_card(field: Field) -> None:
        field.clean_card = None
        try:
            content = read_upload(field.data)
            if content is not None:
                field.clean_card = clean_card(content)
        except CardRefused as refused:
            raise ValidationError(CARD_MESSAGES[refused.reason]) from None

    def cards(self) -> list[tuple[str, CleanCard]]:
        """The cleaned card files of a validated form, by side."""
        sides = (("front", self.card_front), ("back", self.card_back))
        return [(side, field.clean_card) for side, field in sides if getattr(field, "clean_card", None)]

    def validate(self, extra_validators: Any = None) -> bool:
        """Run field checks, then the rules that depend on several answers."""
        valid = super().validate(extra_validators)
        return self._check_reachable() & self._check_coverage() & valid

    def _check_reachable(self) -> bool:
        if self.phone.errors or self.email.errors:
            return True
        if not self.phone.data and not self.email.data:
            return _fail(self.phone, "Give us a phone number or an e-mail address so we can reach you.")
        method = self.preferred_contact.data
        if method in ("call", "text") and not self.phone.data:
            return _fail(self.phone, "To hear from us by phone or text, please enter your phone number.")
        if method == "email" and not self.email.data:
            return _fail(self.email, "To hear from us by e-mail, please enter your e-mail address.")
        return True

    def _check_coverage(self) -> bool:
        if not self.is_commercial:
            return True
        ok = True
        if not self.carrier.data and not self.carrier.errors:
            ok = _fail(self.carrier, "Enter the name of your insurance company.")
        if not self.member_id.data and not self.member_id.errors:
            ok = _fail(self.member_id, "Enter the member ID from your insurance card.")
        if not self.is_policyholder.data:
            ok = _fail(self.is_policyholder, "Please tell us whether you are the policyholder.")
        elif self.is_policyholder.data == "no":
            ok = self._check_policyholder() and ok
        return ok

    def _check_policyholder(self) -> bool:
        ok = True
        if not self.policyholder_name.data and not self.policyholder_name.errors:
            ok = _fail(self.policyholder_name, "Enter the policyholder's full name.")
        if self.policyholder_dob.data is None and not self.policyholder_dob.errors:
            ok = _fail(self.policyholder_dob, "Enter the policyholder's date of birth.")
        if not self.policyholder_relationship.data:
            ok = _fail(self.policyholder_relationship, "Choose the policyholder's relationship to you.")
        return ok

    @property
    def is_commercial(self) -> bool:
        """True when the chosen coverage is a commercial plan (PPO, HMO or EPO)."""
        return self.coverage_type.data in {str(c) for c in COMMERCIAL_COVERAGE}

    def is_minor(self) -> bool:
        """True when a valid date of birth says the patient is under 18."""
        dob = self.dob.data
        return bool(dob and not self.dob.errors and age_on(dob, clinic_today()) < ADULT_AGE)


def _fail(field: Field, message: str) -> bool:
    """Attach a message to a field; returns False so checks can be combined."""
    field.errors = [*field.errors, message]
    return False
