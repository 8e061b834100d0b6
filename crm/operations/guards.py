"""Refusals every flow that touches a lead must apply: erased leads and do-not-contact requests.

Kept apart from ``privacy`` so the contact operations (``leads``) and the privacy ones can
both use them without importing each other. Merge, record correction and import call
:func:`refuse_if_erased` on every lead they change; contact flows call
:func:`refuse_if_do_not_contact`, and texts :func:`refuse_text_without_consent`.
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from ..models import Channel, ConsentRecord, Lead, db


class PrivacyRefusal(ValueError):
    """A refused action on a lead; ``code`` is the audited reason, the message is for the user."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def refuse_if_erased(lead: Lead) -> None:
    """Refuse any change to an erased lead (merge, edit, export, contact) with a clear message."""
    if lead.is_erased:
        raise PrivacyRefusal("erased", _("This lead was erased on %(day)s; nothing is left to change.",
                                          day=lead.erased_at.strftime("%Y-%m-%d")))


def refuse_if_do_not_contact(lead: Lead) -> None:
    """Refuse a contact attempt or callback for a patient who asked not to be contacted."""
    refuse_if_erased(lead)
    if lead.is_do_not_contact:
        raise PrivacyRefusal("do_not_contact", _(
            "This patient asked not to be contacted on %(day)s: no calls, texts, e-mails or callbacks.",
            day=lead.do_not_contact_at.strftime("%Y-%m-%d")))


def automated_contact_agreed(lead: Lead) -> bool:
    """The patient's latest answer on calls and texts with automated technology.

    Each web enquiry answers it either way; consent staff take on the phone, in writing or
    from an import only ever agrees. No answer at all is no agreement.
    """
    answers = [(enquiry.consented_at, enquiry.contact_consent) for enquiry in lead.enquiries]
    answers += [(taken_at, True) for taken_at in db.session.scalars(
        select(ConsentRecord.taken_at).where(ConsentRecord.lead_id == lead.id))]
    return max(answers, key=lambda answer: answer[0])[1] if answers else False


def refuse_text_without_consent(lead: Lead, channel: str) -> None:
    """Refuse a text to a patient who has not agreed to calls and texts (TCPA)."""
    if channel == Channel.TEXT and not automated_contact_agreed(lead):
        raise PrivacyRefusal("no_text_consent", _("This patient has not agreed to calls and texts with automated "
                                                  "technology, so they can't be texted: call or e-mail instead."))
