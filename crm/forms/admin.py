"""User administration forms."""

from flask_wtf import FlaskForm
from wtforms import EmailField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp

from ..models import Role

#: Shape only: staff addresses are identities here, not checked for deliverability.
EMAIL = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+\Z"
ROLE_CHOICES = [
    SelectChoice(Role.COORDINATOR.value, "Coordinator: works leads"),
    SelectChoice(Role.CLINICIAN.value, "Clinician: signs off pre-screens, sees crisis escalations and appointments"),
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
