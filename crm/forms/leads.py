"""Coordinator workspace forms: list filters, search, contact actions, stage, VOB, screening."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask_babel import LazyString
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    DecimalField,
    Field,
    HiddenField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from .. import eligibility, labels, vob
from ..clinic import clinic_today
from ..i18n import lazy_translate, translate
from ..models import (
    EXIT_REASONS,
    PREFERRED_LANGUAGES,
    REOPEN_REASONS,
    AttemptOutcome,
    Channel,
    CoverageType,
    LeadSource,
    Stage,
)
from . import IntegerField, MultiCheckboxField

DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y", "%m/%d/%y", "%m-%d-%y", "%d %b %Y",
                "%d %B %Y", "%b %d %Y", "%B %d %Y", "%Y%m%d", "%m%d%Y")
#: What staff call each language a lead may prefer (:data:`crm.labels.LANGUAGES`).
LANGUAGE_NAMES = labels.LANGUAGES
SORTS = [("newest", _l("Newest first")), ("oldest", _l("Oldest first")),
         ("callback", _l("Next callback (scheduled only)"))]


def code_label(code: str) -> str:
    """The words for a stored code such as ``insurance_review`` (:mod:`crm.labels`)."""
    return labels.label(code)


def language_name(code: str | None) -> str:
    """The name staff see for a language code (the code itself if unknown)."""
    return str(labels.LANGUAGES.get(code, code)) if code else ""


def language_choices(blank: str) -> Any:
    """The preferred-language options, read in the page language when a form is built."""
    return lambda: options([("", blank)] + [(code, language_name(code)) for code in PREFERRED_LANGUAGES])


def options(pairs: Any, group: str | None = None) -> list[SelectChoice]:
    """Select options from ``(value, label)`` pairs."""
    return [SelectChoice(str(value), label, optgroup=group) for value, label in pairs]


def _choices(codes: list[str] | tuple[str, ...], blank: str | None = None, group: str | None = None
             ) -> list[SelectChoice]:
    head = [("", blank)] if blank is not None else []
    return options(head + [(str(code), labels.lazy(str(code))) for code in codes], group)


def parse_date(text: str, today: dt.date | None = None) -> dt.date:
    """Parse a date of birth typed in any common US or ISO format; two-digit years are never future."""
    text = " ".join(text.replace(",", " ").split())
    for fmt in DATE_FORMATS:
        try:
            parsed = dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        today = today or clinic_today()
        if parsed > today and "%y" in fmt:
            parsed = parsed.replace(year=parsed.year - 100)
        return parsed
    raise ValueError("Enter the date of birth as MM/DD/YYYY.")


class FlexibleDateField(StringField):
    """A text date field accepting ``05/04/1980``, ``1980-05-04``, ``May 4, 1980`` and similar."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        self.data = None
        text = (valuelist[0] if valuelist else "").strip()
        self.raw_text = text
        if text:
            try:
                self.data = parse_date(text)
            except ValueError as exc:
                raise ValueError(str(exc)) from None

    def _value(self) -> str:
        return getattr(self, "raw_text", "") or (self.data.strftime("%m/%d/%Y") if self.data else "")


class ConfirmForm(FlaskForm):
    """A button-only form: claim, acknowledge, reveal, sign off (CSRF token only)."""


class LeadFilterForm(FlaskForm):
    """Lead list filters, read from the query string (codes and dates only, never PHI)."""

    class Meta:
        csrf = False

    stage = SelectField(_l("Stage"), choices=_choices(list(Stage), _l("Any stage")), default="")
    assignee = SelectField(_l("Assignee"), default="", choices=options(
        [("", _l("Anyone")), ("me", _l("Me")), ("none", _l("Unassigned"))]))
    source = SelectField(_l("Source"), choices=_choices(list(LeadSource), _l("Any source")), default="")
    urgency = SelectField(_l("Urgency"), default="", choices=options(
        [("", _l("Any")), ("urgent", _l("Urgent")), ("unacknowledged", _l("Urgent, not acknowledged"))]))
    language = SelectField(_l("Preferred language"), choices=language_choices(_l("Any language")), default="")
    created_from = DateField(_l("Submitted from"), validators=[Optional()])
    created_to = DateField(_l("Submitted to"), validators=[Optional()])
    sort = SelectField(_l("Sort"), choices=options(SORTS), default="newest")
    page = IntegerField(_l("Page"), validators=[Optional(), NumberRange(min=1, max=100_000)], default=1)


class SearchForm(FlaskForm):
    """Find a lead by phone, e-mail, or last name with date of birth."""

    query = StringField(_l("Phone, e-mail or last name"), validators=[
        DataRequired(_l("Enter a phone number, an e-mail address or a last name.")), Length(max=254)])
    dob = FlexibleDateField(_l("Date of birth (with a last name)"))


class AttemptForm(FlaskForm):
    """One contact attempt and how it went; texts only to a patient who agreed to them."""

    channel = SelectField(_l("Channel"), choices=_choices(list(Channel)), default=Channel.CALL, validate_choice=False)
    outcome = SelectField(_l("Outcome"), choices=_choices(list(AttemptOutcome)), default=AttemptOutcome.NO_ANSWER)
    note = TextAreaField(_l("Note (optional)"), id="attempt_note", validators=[Optional(), Length(max=2000)])
    confirm_repeat = BooleanField(_l("Yes, log another attempt (one was logged less than two minutes ago)"))
    texts_allowed = True

    def without_texts(self) -> AttemptForm:
        """Offer no text channel (the patient has not agreed to calls and texts); a posted text is refused."""
        self.texts_allowed = False
        self.channel.choices = [choice for choice in self.channel.choices if choice.value != Channel.TEXT]
        return self

    def validate_channel(self, field: Field) -> None:
        """Accept only a channel on offer, naming why a text is not."""
        if field.data == Channel.TEXT and not self.texts_allowed:
            raise ValidationError(_l("This patient has not agreed to calls and texts with automated technology: "
                                     "call or e-mail instead."))
        if field.data not in {choice.value for choice in self.channel.choices}:
            raise ValidationError(field.gettext("Not a valid choice."))


class CallbackForm(FlaskForm):
    """When to call next (clinic time) and who calls."""

    due_at = DateTimeLocalField(_l("Call back at"), format="%Y-%m-%dT%H:%M",
                                validators=[InputRequired(_l("Choose when to call back."))])
    caller = SelectField(_l("Caller"), choices=options([("", _l("Lead's coordinator"))]), default="")


class NoteForm(FlaskForm):
    """A free-text note, stored encrypted."""

    body = TextAreaField(_l("Note"), validators=[DataRequired(_l("Write the note first.")), Length(max=4000)])


class LanguageForm(FlaskForm):
    """The language the patient prefers to be spoken to in."""

    language = SelectField(_l("Preferred language"), choices=language_choices("—"),
                           validators=[DataRequired(_l("Choose a language."))])


class AssignForm(FlaskForm):
    """Give the lead to a coordinator."""

    assignee = SelectField(_l("Assign to"), validators=[DataRequired(_l("Choose a coordinator."))])


def _reason_choices() -> list[SelectChoice]:
    grouped = [_choices(reasons, group=LazyString(lambda s=stage: _("To %(stage)s", stage=labels.label(s).lower())))
               for stage, reasons in EXIT_REASONS.items()]
    return options([("", "—")]) + [c for group in grouped for c in group] + _choices(REOPEN_REASONS, group=_l("Reopen"))


class StageForm(FlaskForm):
    """Move the lead along the pipeline; exits and reopens need a reason."""

    target = SelectField(_l("Move to"), validators=[DataRequired(_l("Choose a stage."))])
    reason = SelectField(_l("Reason (exits and reopens)"), choices=_reason_choices(), default="")
    expected = HiddenField()


def _rule_options(pairs: Any) -> list[SelectChoice]:
    """Select options from a rule file's ``[code, words]`` pairs, the words read in the page language."""
    return options([(code, lazy_translate(words)) for code, words in pairs])


def _vob(name: str) -> list[SelectChoice]:
    return _rule_options(vob.RULES["choices"][name])


def _money(label: LazyString) -> DecimalField:
    return DecimalField(label, places=2, validators=[Optional(), NumberRange(min=0, max=1_000_000)])


class VobForm(FlaskForm):
    """Verification of benefits with the prior-authorisation sub-status."""

    carrier = StringField(_l("Payer"), validators=[Optional(), Length(max=120)])
    plan_name = StringField(_l("Plan / product"), validators=[Optional(), Length(max=120)])
    coverage_type = SelectField(_l("Plan type"), choices=_choices(list(CoverageType)), default=CoverageType.PPO)
    funding = SelectField(_l("Funding"), choices=_vob("funding"), default="")
    member_id = StringField(_l("Member ID (blank keeps the stored one)"), validators=[Optional(), Length(max=64)])
    group_number = StringField(_l("Group # (blank keeps the stored one)"), validators=[Optional(), Length(max=64)])
    effective_date = DateField(_l("Effective"), validators=[Optional()])
    term_date = DateField(_l("Terminates"), validators=[Optional()])
    provider_phone = StringField(_l("Provider services phone"), validators=[Optional(), Length(max=32)])
    bh_carveout = StringField(_l("Behavioral-health carve-out"), validators=[Optional(), Length(max=120)])
    pbm = StringField(_l("PBM / specialty pharmacy"), validators=[Optional(), Length(max=120)])
    secondary = SelectField(_l("Secondary coverage"), choices=_vob("yes_no_unknown"), default="")
    subscriber_relationship = SelectField(_l("Subscriber is patient's"), choices=_vob("relationship"), default="")
    subscriber_name = StringField(_l("Subscriber name"), validators=[Optional(), Length(max=120)])
    subscriber_dob = DateField(_l("Subscriber DOB"), validators=[Optional()])
    subscriber_employer = StringField(_l("Employer"), validators=[Optional(), Length(max=120)])
    network_clinic = SelectField(_l("Clinic network"), choices=_vob("network"), default="")
    network_provider = SelectField(_l("Provider network"), choices=_vob("network"), default="")
    oon_benefits = SelectField(_l("OON benefits"), choices=_vob("yes_no_unknown"), default="")
    inn_deductible = _money(_l("INN deductible"))
    inn_deductible_met = _money(_l("INN deductible met"))
    inn_oop_max = _money(_l("INN OOP max"))
    inn_oop_met = _money(_l("INN OOP met"))
    inn_coinsurance = IntegerField(_l("INN coinsurance %"), validators=[Optional(), NumberRange(min=0, max=100)])
    oon_deductible = _money(_l("OON deductible"))
    oon_deductible_met = _money(_l("OON deductible met"))
    oon_oop_max = _money(_l("OON OOP max"))
    oon_oop_met = _money(_l("OON OOP met"))
    oon_coinsurance = IntegerField(_l("OON coinsurance %"), validators=[Optional(), NumberRange(min=0, max=100)])
    copay_office = _money(_l("Office copay"))
    copay_specialist = _money(_l("Specialist copay"))
    copay_behavioral = _money(_l("Behavioral-health copay"))
    deductible_applies = SelectField(_l("Deductible applies"), choices=_vob("yes_no_unknown"), default="")
    spravato_benefit = SelectField(_l("Spravato benefit"), choices=_vob("benefit"), default="")
    pa_drug = SelectField(_l("PA for drug"), choices=_vob("yes_no_unknown"), default="")
    pa_admin = SelectField(_l("PA for administration / visits"), choices=_vob("yes_no_unknown"), default="")
    pa_reviewer = StringField(_l("PA reviewed by (delegated vendor)"), validators=[Optional(), Length(max=120)])
    codes_verified = MultiCheckboxField(_l("Codes verified"), choices=_vob("codes"))
    visit_limits = StringField(_l("Visit limits"), validators=[Optional(), Length(max=120)])
    method = SelectField(_l("Method"), choices=_vob("method"), default="")
    rep_name = StringField(_l("Rep name"), validators=[Optional(), Length(max=80)])
    reference_number = StringField(_l("Call reference #"), validators=[Optional(), Length(max=64)])
    notes = TextAreaField(_l("VOB notes"), validators=[Optional(), Length(max=2000)])
    vob_status = SelectField(_l("VOB status"), choices=_rule_options(vob.RULES["statuses"]), default="in_progress")
    vob_outcome = SelectField(_l("Outcome"), choices=_rule_options([("", "—")] + vob.RULES["outcomes"]), default="")
    #: The page offers only the moves valid from the stored state; the operation refuses any other at this field.
    pa_status = SelectField(_l("PA status"), choices=_rule_options([("", "—")] + vob.RULES["pa_statuses"]), default="",
                            validate_choice=False)
    pa_auth_number = StringField(_l("Auth #"), validators=[Optional(), Length(max=64)])
    pa_units = IntegerField(_l("Approved units"), validators=[Optional(), NumberRange(min=1, max=10_000)])
    pa_start = DateField(_l("Auth start"), validators=[Optional()])
    pa_end = DateField(_l("Auth end"), validators=[Optional()])

    COLUMNS = ("coverage_type", "vob_status", "vob_outcome", "pa_status", "pa_units", "pa_start", "pa_end")
    SECRETS = ("carrier", "member_id", "group_number", "pa_auth_number")
    POLICYHOLDER = ("subscriber_relationship", "subscriber_name", "subscriber_dob", "subscriber_employer")

    def vob_data(self) -> dict[str, Any]:
        """Split the answers into plain columns, encrypted fields, policyholder and benefits."""
        plain = {name: self[name].data or None for name in self.COLUMNS + self.SECRETS}
        kept = set(self.COLUMNS + self.SECRETS + self.POLICYHOLDER) | {"csrf_token"}
        plain["policyholder"] = {name: _jsonable(self[name].data) for name in self.POLICYHOLDER}
        relationship = self.subscriber_relationship.data
        plain["patient_is_policyholder"] = relationship == "self" if relationship else None
        plain["benefits"] = {f.name: _jsonable(f.data) for f in self if f.name not in kept}
        return plain

    def load(self, stored: dict[str, Any]) -> None:
        """Prefill from a stored verification (member ID and group number stay blank)."""
        for name, value in stored.items():
            if name in self and name not in ("member_id", "group_number") and value not in (None, ""):
                self[name].data = _from_json(self[name], value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | list):
        return value
    return str(value)


def _from_json(field: Field, value: Any) -> Any:
    if isinstance(field, DateField) and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(field, DecimalField) and isinstance(value, str):
        return Decimal(value)
    return value


# --- screening: the checklist, PHQ-9 and C-SSRS come from data/eligibility.json ---------

YES_NO = options([("", "—"), ("yes", _l("Yes")), ("no", _l("No"))])


class ScreeningForm(FlaskForm):
    """Spravato pre-screen checklist, PHQ-9 and C-SSRS screener; fields are built from the rules."""

    adequate_trials = IntegerField(lazy_translate(eligibility.RULES["indication"]["trials_label"]),
                                   validators=[Optional(), NumberRange(min=0, max=30)])
    q6_recent = SelectField(lazy_translate(eligibility.RULES["cssrs"]["recency_label"]), choices=YES_NO, default="")

    def validate_q6_recent(self, field: Field) -> None:
        """Ask how recent the behaviour was whenever question 6 is yes."""
        if self["cssrs_q6"].data == "yes" and not field.data:
            raise ValidationError(_("Question 6 was yes: say whether it was within the past 3 months."))

    def validate(self, extra_validators: Any = None) -> bool:
        """Require C-SSRS questions 3 to 5 when question 2 is yes (the screener's skip rule)."""
        valid = super().validate(extra_validators)
        if self["cssrs_q2"].data == "yes":
            for name in eligibility.RULES["cssrs"]["asked_if_q2"]:
                if not self[f"cssrs_{name}"].data:
                    self[f"cssrs_{name}"].errors.append(_("Question 2 was yes: answer this question too."))
                    valid = False
        return valid

    def validate_draft(self) -> bool:
        """Check only the answers given (a draft may leave any question for later), and the CSRF token."""
        valid = True
        for field in self:
            if field.name == "csrf_token" or field.raw_data and field.raw_data[0] != "":
                valid = field.validate(self) and valid
        return valid

    def draft_answers(self) -> dict[str, Any]:
        """The answers given so far, by field name, as a draft keeps them."""
        return {field.name: field.data for field in self
                if field.name != "csrf_token" and field.data not in (None, "")}

    def answers(self) -> dict[str, Any]:
        """Checklist answers keyed by criterion name."""
        data = {c["name"]: self[c["name"]].data for c in eligibility.RULES["criteria"]}
        data["adequate_trials"] = self.adequate_trials.data
        return data

    def phq9(self) -> list[int]:
        """The nine PHQ-9 item scores."""
        return [int(self[f"phq9_{i}"].data) for i in range(len(eligibility.RULES["phq9"]["items"]))]

    def cssrs(self) -> dict[str, bool | None]:
        """C-SSRS answers: True, False or None when not asked."""
        return {name: {"yes": True, "no": False}.get(self[f"cssrs_{name}"].data)
                for name, _text in eligibility.RULES["cssrs"]["questions"]}

    def recent(self) -> bool | None:
        """Whether question 6 behaviour was within the past 3 months."""
        return {"yes": True, "no": False}.get(self.q6_recent.data)


def _numbered(number: int, text: str, mark: str) -> str:
    """A rule file's ``text`` in the page language after its number (``3. Trouble…``, ``2: More than…``)."""
    return f"{number}{mark} {translate(text)}"


def _build_screening_fields() -> None:
    rules = eligibility.RULES
    for criterion in rules["criteria"]:
        choices = _rule_options([("", "—")] + rules["answers"][criterion["choices"]])
        setattr(ScreeningForm, criterion["name"], SelectField(
            lazy_translate(criterion["label"]), choices=choices, default="",
            validators=[DataRequired(_l("Answer every checklist item."))]))
    answers = options([("", "—")] + [(score, LazyString(_numbered, score, text, ":"))
                                     for score, text in rules["phq9"]["answers"]])
    for index, text in enumerate(rules["phq9"]["items"]):
        setattr(ScreeningForm, f"phq9_{index}", SelectField(
            LazyString(_numbered, index + 1, text, "."), choices=answers, default="",
            validators=[DataRequired(_l("Score every PHQ-9 item."))]))
    always = set(rules["cssrs"]["always_asked"])
    for name, text in rules["cssrs"]["questions"]:
        required = [DataRequired(_l("Ask this C-SSRS question."))] if name in always else []
        setattr(ScreeningForm, f"cssrs_{name}", SelectField(lazy_translate(text), choices=YES_NO, validators=required,
                                                            default=""))


_build_screening_fields()
