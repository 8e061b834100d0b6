"""Sign-in and account forms: field shape and messages; checking secrets is the view's job."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

#: Generous bound on what is hashed; the password rules themselves allow up to 256 characters.
PASSWORD_INPUT_MAX = 1024
#: No address holds control characters; PostgreSQL cannot even compare text holding a NUL byte.
NO_CONTROLS = Regexp(r"^[^\x00-\x1f\x7f]*\Z", message="Enter your e-mail address without control characters.")


class LoginForm(FlaskForm):
    """E-mail and password."""

    email = EmailField(_l("E-mail"), validators=[DataRequired(_l("Enter your e-mail.")), Length(max=254), NO_CONTROLS],
                       render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField(
        _l("Password"), validators=[DataRequired(_l("Enter your password.")), Length(max=PASSWORD_INPUT_MAX)],
        render_kw={"autocomplete": "current-password"},
    )


class CodeForm(FlaskForm):
    """A six-digit code from an authenticator app."""

    code = StringField(
        _l("6-digit code"),
        validators=[
            DataRequired(_l("Enter the 6-digit code.")),
            Regexp(r"^\s*\d{3}\s?\d{3}\s*$", message=_l("Enter 6 digits.")),
        ],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True, "size": 8},
    )


class RecoveryForm(FlaskForm):
    """One of the recovery codes shown at enrolment."""

    code = StringField(_l("Recovery code"), validators=[DataRequired(_l("Enter a recovery code.")), Length(max=40)],
                       render_kw={"autocomplete": "off", "autofocus": True, "spellcheck": "false"})


class ReauthForm(FlaskForm):
    """Confirm identity again before a sensitive change; the code only when TOTP is enrolled."""

    password = PasswordField(
        _l("Password"), validators=[DataRequired(_l("Enter your password.")), Length(max=PASSWORD_INPUT_MAX)],
        render_kw={"autocomplete": "current-password", "autofocus": True},
    )
    code = StringField(_l("6-digit code from your authenticator app"), validators=[Length(max=12)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8})


class NewPasswordForm(FlaskForm):
    """Choose a password (set from an invitation link)."""

    new_password = PasswordField(
        _l("New password"),
        validators=[DataRequired(_l("Choose a password.")), Length(max=PASSWORD_INPUT_MAX)],
        render_kw={"autocomplete": "new-password", "autofocus": True},
    )
    confirm = PasswordField(
        _l("New password again"),
        validators=[DataRequired(_l("Type the password again.")), EqualTo("new_password", "The two passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )


class PasswordChangeForm(NewPasswordForm):
    """Change a password: the current one is required."""

    current_password = PasswordField(
        _l("Current password"),
        validators=[DataRequired(_l("Enter your current password.")), Length(max=PASSWORD_INPUT_MAX)],
        render_kw={"autocomplete": "current-password", "autofocus": True},
    )
