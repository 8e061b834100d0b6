"""User administration forms."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import EmailField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp

from ..models import Role

#: Shape only: staff addresses are identities here, not checked for deliverability.
EMAIL = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+\Z"
ROLE_CHOICES = [
    SelectChoice(Role.COORDINATOR.value, _l("Coordinator: works leads")),
    SelectChoice(Role.MANAGER.value, _l("Manager: reads reports only, never a patient's details")),
    SelectChoice(Role.CLINICIAN.value,
                 _l("Clinician: signs off pre-screens, sees crisis escalations and appointments")),
    SelectChoice(Role.ADMIN.value,
                 _l("Admin: also manages users and reads the audit log (needs two-step sign-in)")),
]


class InviteForm(FlaskForm):
    """Invite a staff member; they choose their own password from the link."""

    email = EmailField(
        _l("Work e-mail"),
        validators=[DataRequired(_l("Enter an e-mail address.")), Regexp(EMAIL, message=_l("Enter a valid e-mail.")),
                    Length(max=254)],
    )
    display_name = StringField(_l("Name shown to colleagues"), validators=[Length(max=120)])
    role = RadioField(_l("Role"), choices=ROLE_CHOICES, default=Role.COORDINATOR.value,
                      validators=[DataRequired(_l("Choose a role."))])


class RoleForm(FlaskForm):
    """Change a user's role."""

    role = RadioField(_l("Role"), choices=ROLE_CHOICES, validators=[DataRequired(_l("Choose a role."))])


class ImportForm(FlaskForm):
    """A CSV file of leads and where they came from."""

    file = FileField(_l("CSV file"), validators=[FileRequired(_l("Choose a CSV file."))])
    source = SelectField(_l("These leads came from"), choices=[
        SelectChoice("referral", _l("A referral partner")),
        SelectChoice("phone", _l("Phone calls (a previous system)")),
        SelectChoice("va_community_care", _l("VA Community Care")), SelectChoice("walk_in", _l("Walk-ins")),
        SelectChoice("other", _l("Somewhere else"))], default="referral")
