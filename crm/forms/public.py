"""The public enquiry form: field shape, choices and the messages a patient sees."""

from __future__ import annotations

from typing import Any, NamedTuple

from email_validator import EmailNotValidError
from email_validator import validate_email as check_email_address
from flask import current_app
from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
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
from wtforms.fields.choices import SelectChoice
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
#: How a date typed without the browser's date picker is read, by page language (ISO always works);
#: each matches the example in that language's "for example" message.
TYPED_DATE_FORMATS = {"en": DATE_FORMATS, "es": ["%Y-%m-%d", "%d/%m/%Y"]}


class Choices(dict):
    """Choice labels by value (lazy: each is read in the page language only when shown)."""

    @property
    def options(self) -> list[SelectChoice]:
        """The field's options: fixed, so checking an answer neither calls nor translates anything."""
        return [SelectChoice(value, label) for value, label in self.items()]


class ConsentWording(NamedTuple):
    """One version of the contact-consent sentence: its language and its exact words."""

    language: str
    text: str


#: Contact-consent wording by version. Each version is one language's exact words and never changes:
#: a new wording needs a new version (``CONSENT_VERSION`` for English, ``CONSENT_VERSION_ES`` for Spanish).
#: The wording lives here, not in the translation catalog, so correcting the catalog can never change
#: what a patient is recorded as having agreed to. The Spanish is a first translation for counsel to review.
CONTACT_CONSENT = {
    "2026-01": ConsentWording("en", (
        "I agree that {clinic} may contact me at the number above by call or text, including with "
        "automated technology, about my enquiry, scheduling and insurance. Consent is not a condition "
        "of receiving services. Msg & data rates may apply. Reply STOP to opt out."
    )),
    "2026-12-es": ConsentWording("es", (
        "Acepto que {clinic} se comunique conmigo al número indicado arriba por llamada o mensaje de "
        "texto, incluso con tecnología automatizada, sobre mi consulta, las citas y el seguro. El "
        "consentimiento no es una condición para recibir servicios. Pueden aplicarse tarifas por "
        "mensajes y datos. Responda STOP para no recibir más mensajes."
    )),
    # the box became optional: the wording says so, and what happens without it
    "2026-12b": ConsentWording("en", (
        "Optional: I agree that {clinic} may contact me at the number above by call or text, including with "
        "automated technology, about my enquiry, scheduling and insurance. Consent is not a condition "
        "of receiving services: if I do not agree, {clinic} will still reply to my enquiry, by a call "
        "from a staff member or by e-mail, but will not text me. Msg & data rates may apply. Reply STOP "
        "to opt out."
    )),
    "2026-12b-es": ConsentWording("es", (
        "Opcional: Acepto que {clinic} se comunique conmigo al número indicado arriba por llamada o mensaje "
        "de texto, incluso con tecnología automatizada, sobre mi consulta, las citas y el seguro. El "
        "consentimiento no es una condición para recibir servicios: si no acepto, {clinic} responderá "
        "igualmente a mi consulta, con una llamada de un miembro del personal o por correo electrónico, "
        "pero no me enviará mensajes de texto. Pueden aplicarse tarifas por mensajes y datos. Responda "
        "STOP para no recibir más mensajes."
    )),
}

YES_NO = Choices({"yes": _l("Yes"), "no": _l("No")})
CONTACT_METHODS = Choices({"call": _l("Phone call"), "text": _l("Text message"), "email": _l("E-mail")})
BEST_TIMES = Choices({"morning": _l("Morning"), "afternoon": _l("Afternoon"), "evening": _l("Evening")})
INTERESTS = Choices({"spravato": _l("Spravato (esketamine)"), "ketamine": _l("Ketamine therapy"),
                     "not_sure": _l("Not sure yet")})
CONCERNS = Choices({"depression": _l("Depression"), "ptsd": _l("PTSD"), "anxiety": _l("Anxiety"),
                    "other": _l("Something else")})
MEDS_TRIED = Choices({"none": _l("None"), "one": "1", "two_plus": _l("2 or more"), "not_sure": _l("Not sure")})
HEARD_ABOUT = Choices({
    "": _l("Choose one (optional)"),
    "search": _l("Internet search"),
    "doctor": _l("My doctor or therapist"),
    "insurer": _l("My insurance company"),
    "spravato_site": _l("The Spravato website"),
    "friend": _l("A friend or family member"),
    "va": _l("The VA"),
    "social": _l("Social media"),
    "other": _l("Somewhere else"),
})
COVERAGE_LABELS = {
    CoverageType.PPO: "PPO",
    CoverageType.HMO: "HMO",
    CoverageType.EPO: "EPO",
    CoverageType.MEDICARE: "Medicare",
    CoverageType.MEDICAID: _l("Medi-Cal / Medicaid"),
    CoverageType.VA_TRICARE: "VA / TRICARE",
    CoverageType.SELF_PAY: _l("I'll pay myself"),
    CoverageType.NOT_SURE: _l("Not sure"),
}
RELATIONSHIPS = Choices({"": _l("Choose one"), "spouse": _l("Spouse or partner"), "parent": _l("Parent"),
                         "other": _l("Someone else")})


def _limit(count: int) -> Length:
    return Length(max=count, message=LazyString(lambda: _("Please keep this to %(count)s characters or fewer.",
                                                          count=format_decimal(count))))


def consent_version(language: str) -> str:
    """The contact-consent version shown on a page in ``language``: ``CONSENT_VERSION_<LANG>``, else English."""
    configured = current_app.config.get(f"CONSENT_VERSION_{language.upper()}") if language != "en" else None
    return configured or current_app.config["CONSENT_VERSION"]


def contact_consent_wording(version: str | None = None) -> str:
    """The contact-consent sentence of ``version`` (default: the page language's) for this clinic."""
    wording = CONTACT_CONSENT[version or consent_version(str(get_locale()))]
    return wording.text.format(clinic=current_app.config["CLINIC_NAME"])


def check_birth_date(_form: Any, field: Field) -> None:
    """Refuse dates of birth in the future or implausibly long ago."""
    if field.data is None:
        return
    if field.data > clinic_today():
        raise ValidationError(_("The date of birth can't be in the future."))
    if age_on(field.data, clinic_today()) > OLDEST_AGE:
        raise ValidationError(_("Please check the year of the date of birth."))


#: What a patient reads when a card file is refused, by :class:`~crm.cards.CardRefused` reason.
CARD_MESSAGES = {
    "too_large": _l("Each card photo must be %(size)s MB or smaller.", size=MAX_CARD_BYTES // 2**20),
    "wrong_type": _l("Card photos must be JPEG, PNG or PDF files."),
    "unreadable": _l("We couldn't open this file. Please choose another photo or scan of your card."),
    "too_many_pixels": _l("This picture has too many pixels for us to open (over 50 megapixels). "
                          "Please send a smaller photo or a screenshot of it."),
    "pdf_encrypted": _l("This PDF is protected by a password. Please send one without a password, or a photo."),
    "pdf_active": _l("This PDF contains scripts or attached files, which we can't accept. "
                     "Please send a photo of your card or a plain scan."),
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


class LocalDateField(DateField):
    """A date field that reads a typed date the page language's way (the date picker sends ISO)."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        self.strptime_format = TYPED_DATE_FORMATS.get(str(get_locale()), DATE_FORMATS)
        super().process_formdata(valuelist)


class EnquiryForm(FlaskForm):
    """Every question on the public form; explicit fields only, so nothing else can be set.

    The form has no CSRF field of its own: CSRFProtect checks every POST's session-bound token
    before any view runs, and the template renders that token as a plain hidden input. A form
    field would only repeat the check and sign a new token on every submission.
    """

    class Meta:
        csrf = False

    # About you
    first_name = StringField(_l("First name"), filters=STRIP,
                             validators=[DataRequired(_l("Enter your first name.")), _limit(80), person_name])
    last_name = StringField(_l("Last name"), filters=STRIP,
                            validators=[DataRequired(_l("Enter your last name.")), _limit(80), person_name])
    dob = LocalDateField(
        _l("Date of birth"),
        format=DATE_FORMATS,
        validators=[InputRequired(_l("Enter your date of birth.")), check_birth_date],
        invalid_value_message=_l("Enter your date of birth as a real date, for example 04/23/1985."),
    )
    phone = TelField(_l("Mobile phone"), filters=STRIP, validators=[Optional(), _limit(32), phone_number])
    email = EmailField(_l("E-mail address"), filters=STRIP, validators=[Optional(), _limit(254)])
    zip_code = StringField(_l("ZIP code"), filters=STRIP, validators=[Optional(), ZIP_CODE])
    preferred_contact = RadioField(_l("How should we contact you?"), choices=CONTACT_METHODS.options,
                                   validators=[Optional()], validate_choice=True)
    best_time = RadioField(_l("Best time to reach you"), choices=BEST_TIMES.options, validators=[Optional()])
    voicemail_ok = BooleanField(_l("It's OK to leave a voicemail"))
    text_ok = BooleanField(_l("It's OK to text me"))

    # What you are looking for
    interest = RadioField(_l("What are you interested in?"), choices=INTERESTS.options, validators=[Optional()])
    concerns = MultiCheckboxField(_l("What would you like help with?"), choices=CONCERNS.options,
                                  validators=[Optional()])
    meds_tried = RadioField(_l("How many antidepressants have you tried?"), choices=MEDS_TRIED.options,
                            validators=[Optional()])
    has_psychiatrist = RadioField(_l("Are you seeing a psychiatrist now?"), choices=YES_NO.options,
                                  validators=[Optional()])
    heard_about = SelectField(_l("How did you hear about us?"), choices=HEARD_ABOUT.options, validators=[Optional()])
    veteran = RadioField(_l("Are you a veteran?"), choices=YES_NO.options, validators=[Optional()])

    # Do you need help right now?
    need_help_now = RadioField(_l("Do you need help right now?"), choices=YES_NO.options,
                               validators=[InputRequired(_l("Please tell us whether you need help right now."))])

    # Insurance
    coverage_type = RadioField(
        _l("What kind of coverage do you have?"),
        choices=Choices({str(value): label for value, label in COVERAGE_LABELS.items()}).options,
        validators=[InputRequired(_l("Choose your kind of coverage, or “Not sure”."))],
    )
    carrier = StringField(_l("Insurance company"), filters=STRIP, validators=[Optional(), _limit(80), plain_text])
    member_id = StringField(_l("Member ID"), filters=STRIP, validators=[Optional(), Regexp(
        r"^[A-Za-z0-9 -]{1,30}$", message=_l("The member ID can use letters, numbers, spaces and dashes (up to 30)."))])
    group_number = StringField(_l("Group number (optional)"), filters=STRIP, validators=[Optional(), Regexp(
        r"^[A-Za-z0-9 -]{1,30}$",
        message=_l("The group number can use letters, numbers, spaces and dashes (up to 30)."))])
    is_policyholder = RadioField(_l("Are you the policyholder?"), choices=YES_NO.options, validators=[Optional()])
    policyholder_name = StringField(_l("Policyholder's full name"), filters=STRIP,
                                    validators=[Optional(), _limit(120), person_name])
    policyholder_dob = LocalDateField(
        _l("Policyholder's date of birth"),
        format=DATE_FORMATS,
        validators=[Optional(), check_birth_date],
        invalid_value_message=_l("Enter the policyholder's date of birth as a real date, for example 04/23/1985."),
    )
    policyholder_relationship = SelectField(_l("Their relationship to you"), choices=RELATIONSHIPS.options,
                                            validators=[Optional()])
    card_front = FileField(_l("Front of your card (optional)"))
    card_back = FileField(_l("Back of your card (optional)"))

    message = TextAreaField(_l("Anything else you'd like us to know? (optional)"), filters=STRIP, validators=[
        Optional(), Length(max=MESSAGE_LIMIT, message=LazyString(lambda: _(
            "Please keep your message to %(count)s characters or fewer.", count=format_decimal(MESSAGE_LIMIT))))])

    # Consent
    contact_consent = BooleanField(_l("I agree to be contacted by call or text"))  # optional: answered either way
    privacy_ack = BooleanField(
        _l("I have read the privacy notice"),
        validators=[DataRequired(_l("Please confirm you have read the privacy notice."))],
    )
    marketing_consent = BooleanField(_l("Yes, send me occasional news and educational messages (optional)"))

    # Abuse controls: a field people never see, and a signed, single-use render token
    website = StringField(_l("Leave this field empty"), filters=STRIP)
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
            raise ValidationError(_("Enter an e-mail address like name@example.com.")) from None

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
        return self._check_reachable() & self._check_coverage() & self._check_texts() & valid

    def _check_reachable(self) -> bool:
        if self.phone.errors or self.email.errors:
            return True
        if not self.phone.data and not self.email.data:
            return _fail(self.phone, _("Give us a phone number or an e-mail address so we can reach you."))
        method = self.preferred_contact.data
        if method in ("call", "text") and not self.phone.data:
            return _fail(self.phone, _("To hear from us by phone or text, please enter your phone number."))
        if method == "email" and not self.email.data:
            return _fail(self.email, _("To hear from us by e-mail, please enter your e-mail address."))
        return True

    def _check_texts(self) -> bool:
        """Texts need the calls-and-texts agreement: asking for them without it is a contradiction to resolve."""
        wants_texts = self.preferred_contact.data == "text" or self.text_ok.data
        if not wants_texts or self.contact_consent.data:
            return True
        return _fail(self.contact_consent, _("To hear from us by text, please tick the box agreeing to calls "
                                             "and texts, or choose another way to reach you."))

    def _check_coverage(self) -> bool:
        if not self.is_commercial:
            return True
        ok = True
        if not self.carrier.data and not self.carrier.errors:
            ok = _fail(self.carrier, _("Enter the name of your insurance company."))
        if not self.member_id.data and not self.member_id.errors:
            ok = _fail(self.member_id, _("Enter the member ID from your insurance card."))
        if not self.is_policyholder.data:
            ok = _fail(self.is_policyholder, _("Please tell us whether you are the policyholder."))
        elif self.is_policyholder.data == "no":
            ok = self._check_policyholder() and ok
        return ok

    def _check_policyholder(self) -> bool:
        ok = True
        if not self.policyholder_name.data and not self.policyholder_name.errors:
            ok = _fail(self.policyholder_name, _("Enter the policyholder's full name."))
        if self.policyholder_dob.data is None and not self.policyholder_dob.errors:
            ok = _fail(self.policyholder_dob, _("Enter the policyholder's date of birth."))
        if not self.policyholder_relationship.data:
            ok = _fail(self.policyholder_relationship, _("Choose the policyholder's relationship to you."))
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
