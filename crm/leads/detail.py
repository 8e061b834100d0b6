"""The lead page (every view audited), its action forms, and card images behind a reveal."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Response, abort, current_app, render_template, session
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms.fields.choices import SelectChoice

from .. import cadence, calling_hours, crypto, eligibility, vob
from ..access import deny
from ..clinic import clinic_zone
from ..forms.clinician import SignOffForm
from ..forms.intake import MergeForm
from ..forms.leads import (
    AssignForm,
    AttemptForm,
    CallbackForm,
    ConfirmForm,
    LanguageForm,
    NoteForm,
    ScreeningForm,
    StageForm,
    VobForm,
    code_label,
    options,
)
from ..i18n import translate
from ..models import InsuranceCard, Lead, Stage, allowed_moves, db, utcnow
from ..operations import leads as ops
from ..operations.guards import automated_contact_agreed
from . import bp, get_lead_or_404, present, queries
from .appointment_panel import appointment_forms, appointments_view
from .privacy_panel import privacy_forms, privacy_view, render_tombstone

REVEALED = "revealed"
#: Re-encoded images are shown in the page; a PDF (kept as sent) is only ever downloaded, never run by the browser.
INLINE_TYPES = {"image/jpeg", "image/png"}
CARD_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}


def remember_reveal(lead_id: str) -> None:
    """Keep this user's reveal of a lead's insurance identifiers for a few minutes."""
    until = time.time() + 60 * current_app.config["REVEAL_MINUTES"]
    live = {key: value for key, value in session.get(REVEALED, {}).items() if value > time.time()}
    session[REVEALED] = {**live, lead_id: until}


def is_revealed(lead_id: str) -> bool:
    """True while this user's reveal of the lead is fresh."""
    return session.get(REVEALED, {}).get(lead_id, 0) > time.time()


# --- forms, shared by the page and by actions that fail validation -------------------


def staff_choices() -> list[SelectChoice]:
    """Active staff as select choices."""
    users = queries.staff_directory().values()
    return options([(u.id, present.staff_name(u)) for u in users if u.is_active_flag])


def stage_form(lead: Lead, formdata: Any = None, **data: Any) -> StageForm:
    """The stage form offering only the moves the pipeline allows from here."""
    form = StageForm(formdata=formdata, expected=lead.stage, **data)
    form.target.choices = options([("", "—")] + [(s, code_label(s)) for s in allowed_moves(Stage(lead.stage))])
    return form


def vob_form(lead: Lead, formdata: Any = None) -> VobForm:
    """The benefits check offering only the prior-authorisation states valid from the stored one."""
    form = VobForm(formdata=formdata)
    current = lead.current_insurance.pa_status if lead.current_insurance else None
    labels = dict([("", "—"), *vob.RULES["pa_statuses"]])
    form.pa_status.choices = options([(code, translate(labels[code])) for code in vob.pa_offered(current)])
    return form


def screening_exit(lead: Lead, screens: list[dict[str, Any]]) -> dict[str, str]:
    """The stage move the newest pre-screen points to when it found the patient ineligible, if allowed here."""
    latest = screens[0]["result"] if screens else {}
    if latest.get("outcome") != eligibility.INELIGIBLE or Stage.INELIGIBLE not in allowed_moves(Stage(lead.stage)):
        return {}
    reasons = eligibility.exit_reasons(latest.get("reasons", []))
    return {"target": Stage.INELIGIBLE, "reason": reasons[0]} if reasons else {}


def assign_form(formdata: Any = None) -> AssignForm:
    """The assign form listing active staff."""
    form = AssignForm(formdata=formdata)
    form.assignee.choices = options([("", "—")]) + staff_choices()
    return form


def callback_form(formdata: Any = None, **data: Any) -> CallbackForm:
    """The callback form listing active staff as callers."""
    form = CallbackForm(formdata=formdata, **data)
    form.caller.choices = options([("", _("Lead's coordinator"))]) + staff_choices()
    return form


def attempt_form(lead: Lead, formdata: Any = None, texts_agreed: bool | None = None) -> AttemptForm:
    """The attempt form, without the text channel for a patient who has not agreed to texts."""
    form = AttemptForm(formdata=formdata)
    agreed = automated_contact_agreed(lead) if texts_agreed is None else texts_agreed
    return form if agreed else form.without_texts()


def default_forms(lead: Lead, view: dict[str, Any]) -> dict[str, FlaskForm]:
    """Fresh action forms, prefilled from what the page already knows."""
    suggested = view["cadence"]["suggested"]
    local_due = cadence.to_local(suggested, clinic_zone()).replace(tzinfo=None) if suggested else None
    benefits = vob_form(lead)
    benefits.load(present.vob_prefill(view["insurance"]))
    age = view["contact"]["age"]
    draft = view["screening_draft"]["answers"] if view["screening_draft"] else {}
    screening = ScreeningForm(formdata=None, **{"adult": None if age is None else ("yes" if age >= 18 else "no"),
                                                **draft})
    return {
        "attempt": attempt_form(lead, texts_agreed=view["texts_agreed"]), "note": NoteForm(formdata=None),
        "confirm": ConfirmForm(formdata=None),
        "callback": callback_form(due_at=local_due), "assign": assign_form(),
        "stage": stage_form(lead, **screening_exit(lead, view["screenings"])),
        "vob": benefits, "screening": screening, "merge": MergeForm(formdata=None), **privacy_forms(lead),
        **appointment_forms(lead), "sign_off": SignOffForm(formdata=None),
        "language": LanguageForm(formdata=None, language=lead.preferred_language or ""),
    }


def build_view(lead: Lead, reader: present.Reader) -> dict[str, Any]:
    """Everything the lead page shows, decrypted into plain values."""
    users, now = queries.staff_directory(), utcnow()
    screens, callbacks = present.screenings(lead, reader, users), queries.lead_callbacks(lead)
    return {
        "contact": present.contact_block(lead, reader),
        "proposals": present.proposals(lead, reader),
        "source_details": present.source_details(lead, reader),
        "has_changes": queries.has_changes(lead),
        "insurance": present.insurance_block(lead, reader, is_revealed(lead.id)),
        "revealed": is_revealed(lead.id),
        "screenings": screens,
        "screening_draft": present.screening_draft(lead, reader, users),
        "timeline": present.timeline(lead, reader, users, screens, callbacks),
        "cadence": present.cadence_status(lead, now, clinic_zone()),
        "callbacks": present.open_callbacks(callbacks),
        "assignee": present.staff_name(users.get(lead.assignee_id)),
        "acknowledged_by": present.staff_name(users.get(lead.acknowledged_by)),
        "consent": present.latest_consent(lead, users),
        "texts_agreed": automated_contact_agreed(lead),
        "rules": eligibility.RULES,
        "criteria_groups": criteria_groups(),
        "vob_disclaimer": translate(vob.RULES["disclaimer"]),
        "privacy": privacy_view(lead),
        "appointments": appointments_view(lead, reader, users),
        "calling_hours_warning": calling_hours.warning(now, calling_hours.patient_zone(clinic_zone())),
    }


def criteria_groups() -> list[tuple[str, list[dict[str, Any]]]]:
    """The screening checklist grouped by heading, in the order the rules list it."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for criterion in eligibility.RULES["criteria"]:
        groups.setdefault(criterion["group"], []).append(criterion)
    return list(groups.items())


def render_detail(lead: Lead, history: list[dict[str, Any]] | None = None, **forms: FlaskForm) -> str:
    """Render the lead page with fresh forms (or the given failing ones) and audit the view.

    ``history`` holds previous values the caller has just revealed (and audited).
    """
    reader = present.Reader()
    view = build_view(lead, reader)
    html = render_template("leads/detail.html", lead=lead, forms={**default_forms(lead, view), **forms},
                           history=history, **view)
    ops.record_view(lead.id, current_user, reader.failed.get(lead.id, []))
    db.session.commit()
    return html


# --- views ---------------------------------------------------------------------------


@bp.get("/<uuid:lead_id>")
def detail(lead_id: uuid.UUID):
    """Show one lead: contact, insurance, screening, timeline and every action, audited; an erased one's tombstone."""
    erased = db.session.get(Lead, str(lead_id))
    if erased is not None and erased.is_erased:
        return render_tombstone(erased)
    return render_detail(get_lead_or_404(lead_id))


@bp.get("/<uuid:lead_id>/cards/<uuid:card_id>")
def card(lead_id: uuid.UUID, card_id: uuid.UUID):
    """Serve one insurance card image after a reveal; audited and never cached."""
    lead = get_lead_or_404(lead_id)
    item = db.session.get(InsuranceCard, str(card_id))
    if item is None or item.insurance.lead_id != lead.id:
        abort(404)
    if not is_revealed(lead.id):
        deny("reveal_required")
    try:
        content = item.content
    except crypto.CryptoError:
        ops.record_unreadable(lead.id, current_user, ["insurance_cards.content"])
        db.session.commit()
        return Response("unreadable", status=422, mimetype="text/plain")
    ops.record_card_view(lead, item, current_user)
    db.session.commit()
    inline = item.media_type in INLINE_TYPES
    side = item.side if item.side in ("front", "back") else "side"
    name = f'card-{side}.{CARD_EXTENSIONS.get(item.media_type, "bin")}'
    return Response(content, mimetype=item.media_type if inline else "application/octet-stream",
                    headers={"Cache-Control": "no-store, private",
                             "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{name}"'})
