"""User administration forms."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import EmailField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp

from ..models import Role

#: Shape only: staff addresses are identities here, not checked for deliverability.
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
ROLE_CHOICES = [
    SelectChoice(Role.COORDINATOR.value, "Coordinator: works leads"),
    SelectChoice(Role.ADMIN.value, "Admin: also manages users and reads the audit log (needs two-step sign-in)"),
]


class InviteForm(FlaskForm):
    """Invite a staff member; they choose their own password from the link."""

    email = EmailField(
        "Work e-mail",
        validators=[DataRequired("Enter an e-mail address."), Regexp(EMAIL, message="Enter a valid e-mail."),
                    Length(max=254)],
    )
    display_name = StringField("Name shown to colleagues", validators=[Length(max=120)])
    role = RadioField("Role", choices=ROLE_CHOICES, default=Role.COORDINATOR.value,
                      validators=[DataRequired("Choose a role.")])


class RoleForm(FlaskForm):
    """Change a user's role."""

    role = RadioField("Role", choices=ROLE_CHOICES, validators=[DataRequired("Choose a role.")])


class ImportForm(FlaskForm):
    """A CSV file of leads and where they came from."""

    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file.")])
    source = SelectField("These leads came from", choices=[
        SelectChoice("referral", "A referral partner"), SelectChoice("phone", "Phone calls (a previous system)"),
        SelectChoice("va_community_care", "VA Community Care"), SelectChoice("walk_in", "Walk-ins"),
        SelectChoice("other", "Somewhere else")], default="referral")
