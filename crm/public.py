"""Public pages: the confidential enquiry form, the thank-you page, privacy notice, health.

Each rendering of the form carries a signed, single-use token: its signature time
enforces a minimum fill time, and its digest makes a repeated POST (double click, back
button) land on the same thank-you page instead of storing the enquiry twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import text
from werkzeug.wrappers import Response

from . import crypto
from .access import public
from .forms import FORM_EXPIRED
from .forms.public import CONTACT_CONSENT, EnquiryForm, consent_version
from .i18n import language_args, page_language
from .limits import counts_as_submission, enquiry_limit, limiter
from .models import db, new_reference
from .operations.enquiries import (
    Card,
    Consent,
    Contact,
    Coverage,
    Submission,
    prepare_enquiry,
    receive_enquiry,
)

bp = Blueprint("public", __name__)

TOKEN_SALT = "crm.public.enquiry-form"  # noqa: S105 - a namespace, not a secret
ANSWER_FIELDS = ("interest", "concerns", "meds_tried", "has_psychiatrist", "heard_about", "veteran",
                 "need_help_now", "coverage_type", "message")
RECEIPT_SECONDS = 30 * 60  # how long the thank-you page can be reloaded
TOO_QUICK = _l("Please check your answers, then press “Send my enquiry” again.")
FORM_RESTART = _l("The form expired. Please fill it in and send it again.")


@dataclass(frozen=True)
class FormToken:
    """A verified form token: the digest that identifies one rendering, and its age."""

    digest: str
    age_seconds: float


def issue_form_token() -> str:
    """Sign a fresh random nonce; the signature carries the time the form was shown."""
    return _serializer().dumps(crypto.random_token(16))


def read_form_token(value: str | None) -> FormToken | None:
    """Verify a form token; ``None`` when it is missing, forged or malformed."""
    try:
        nonce, signed_at = _serializer().loads(value or "", return_timestamp=True)
    except BadData:
        return None
    if not isinstance(nonce, str):
        return None
    age = (dt.datetime.now(dt.UTC) - signed_at).total_seconds()
    return FormToken(hashlib.sha256(nonce.encode()).hexdigest(), age)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


@bp.route("/", methods=["GET", "POST"])
@public
@limiter.limit(enquiry_limit, methods=["POST"], deduct_when=counts_as_submission)
def enquiry():
    """Show the enquiry form; store a valid submission once and redirect to the thank-you page."""
    form = EnquiryForm()
    if request.method == "GET":
        return _show_form(form)
    if form.website.data:
        return _pretend_received()
    valid = form.validate()
    if form.is_minor():
        return render_template("public/adults_only.html", urgent=form.need_help_now.data == "yes")
    if not valid:
        return _show_form(form)
    token = read_form_token(form.form_token.data)
    if token is None or token.age_seconds < current_app.config["ENQUIRY_MIN_FILL_SECONDS"]:
        form.form_errors.append(TOO_QUICK)
        return _show_form(form)
    return _store(form, token)


@bp.errorhandler(CSRFError)
def form_expired(error: CSRFError) -> tuple[str, int]:
    """Show the enquiry form again when its CSRF check fails (an expired session or token).

    The status stays 400, as for every POST refused for CSRF: nothing was stored, and the rate limit
    never counts it. The answers come back only when the request carries this site's session, i.e.
    it came from a form this browser loaded here: a cross-site POST carries no session cookie
    (SameSite=Lax), and its values (a filled honeypot above all) must never reach a form a patient
    then completes. The honeypot is never carried back, and the form token is always renewed, so
    that another site cannot choose the token that later identifies the patient's own enquiry.
    """
    if request.endpoint != "public.enquiry":  # any other POST here keeps the generic page
        return render_template("errors/error.html", code=400), 400
    own_session = _has_own_session()
    current_app.logger.info("enquiry form shown again after a failed CSRF check (answers %s)",
                            "kept" if own_session else "dropped")
    form = EnquiryForm() if own_session else EnquiryForm(formdata=None)
    form.website.data = ""
    form.form_errors.append(FORM_EXPIRED if own_session else FORM_RESTART)
    form.form_token.data = issue_form_token()
    return _show_form(form), 400


def _has_own_session() -> bool:
    """True when the request carries a session this site signed with a CSRF token in it."""
    return bool(session.get(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")))


@bp.get("/thanks")
@public
def thanks():
    """Confirm receipt with the reference code (never PHI); crisis resources first when urgent."""
    receipt = session.get("enquiry")
    if not receipt or time.time() - receipt.get("at", 0) > RECEIPT_SECONDS:
        session.pop("enquiry", None)  # a shared browser must not show it to the next person
        return redirect(url_for("public.enquiry", **language_args()))
    return render_template("public/thanks.html", reference=receipt["reference"], urgent=receipt["urgent"])


@bp.get("/privacy")
@public
def privacy():
    """Show the privacy notice patients acknowledge on the form."""
    return render_template("public/privacy.html")


@bp.get("/health")
@public
def health():
    """Answer a load balancer's liveness probe after one round trip to the database."""
    db.session.execute(text("SELECT 1"))
    db.session.rollback()
    return {"status": "ok"}


def _show_form(form: EnquiryForm) -> str:
    """Render the form, giving it a fresh token unless it already carries a valid one."""
    if read_form_token(form.form_token.data) is None:
        form.form_token.data = issue_form_token()
    return render_template("public/enquiry.html", form=form)


def _store(form: EnquiryForm, token: FormToken) -> Response:
    """Commit the enquiry in one transaction; a repeat of the same form resolves to the first.

    The rows are built and encrypted before the first query: on SQLite that query takes the
    write lock, which is then held until the commit.
    """
    receipt = receive_enquiry(prepare_enquiry(_submission(form, token.digest)))
    db.session.commit()
    current_app.logger.info("enquiry accepted")
    return _thank(receipt.reference, receipt.urgent)


def _thank(reference: str, urgent: bool) -> Response:
    """Carry the receipt in the session and redirect (post/redirect/get)."""
    session["enquiry"] = {"reference": reference, "urgent": urgent, "at": int(time.time())}
    return redirect(url_for("public.thanks", **language_args()), code=303)


def _pretend_received() -> Response:
    """Show a bot the usual success, with a made-up reference, and store nothing."""
    current_app.logger.info("enquiry honeypot filled; nothing stored")
    return _thank(new_reference(), False)


def _submission(form: EnquiryForm, digest: str) -> Submission:
    """Translate the validated form into the operation's input."""
    cards = [Card(side, clean.media_type, clean.content) for side, clean in form.cards()]
    language = page_language()
    version = consent_version(language)
    return Submission(
        contact=_contact(form),
        coverage=_coverage(form),
        language=language,
        consent=Consent(
            version=version,
            language=CONTACT_CONSENT[version].language,
            ip=request.remote_addr,
            privacy_ack=bool(form.privacy_ack.data),
            marketing=bool(form.marketing_consent.data),
            contact=bool(form.contact_consent.data),
        ),
        idempotency_digest=digest,
        crisis=form.need_help_now.data == "yes",
        answers={
            **{name: form[name].data for name in ANSWER_FIELDS},
            "consent_user_agent": (request.user_agent.string or "")[:200],
        },
        cards=tuple(cards),
    )


def _contact(form: EnquiryForm) -> Contact:
    return Contact(
        first_name=form.first_name.data,
        last_name=form.last_name.data,
        dob=form.dob.data,
        phone=form.phone.data or None,
        email=form.email.data or None,
        zip_code=form.zip_code.data or None,
        preferences={
            "contact_method": form.preferred_contact.data,
            "best_time": form.best_time.data,
            "voicemail_ok": bool(form.voicemail_ok.data),
            "text_ok": bool(form.text_ok.data),
        },
    )


def _coverage(form: EnquiryForm) -> Coverage:
    holder = {"yes": True, "no": False}.get(form.is_policyholder.data)
    policyholder = None
    if holder is False:
        policyholder = {
            "name": form.policyholder_name.data,
            "dob": form.policyholder_dob.data.isoformat() if form.policyholder_dob.data else None,
            "relationship": form.policyholder_relationship.data,
        }
    return Coverage(
        coverage_type=form.coverage_type.data,
        carrier=form.carrier.data or None,
        member_id=form.member_id.data or None,
        group_number=form.group_number.data or None,
        patient_is_policyholder=holder,
        policyholder=policyholder,
    )
