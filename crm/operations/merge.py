"""Merge two leads of one person: every child row moves to the survivor, the other closes as a duplicate.

Children are encrypted under their lead's data key, so each moved row is decrypted with the
absorbed lead's key and encrypted again under the survivor's. Both leads are locked in id
order before anything is read, so two merges of the same pair (in either direction) run one
after the other and the second finds the first's result instead of failing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select

from .. import crypto
from ..models import (
    Callback,
    ConsentRecord,
    ContactAttempt,
    Enquiry,
    Insurance,
    Lead,
    LeadChange,
    LeadEvent,
    LeadProposal,
    Screening,
    ScreeningDraft,
    Stage,
    User,
    db,
    encrypted_names,
    utcnow,
)
from .guards import refuse_if_erased
from .leads import add_event, record

#: Every table whose rows belong to one lead, in the order they move.
CHILDREN = (Enquiry, Insurance, ContactAttempt, Callback, LeadEvent, Screening, ScreeningDraft, ConsentRecord,
            LeadProposal, LeadChange)
#: Contact fields a survivor takes from the absorbed lead when it has none of its own.
CONTACT_FIELDS = ("phone", "email", "zip_code", "preferences")


def lock_pair(first_id: str, second_id: str) -> dict[str, Lead]:
    """Lock both leads' rows, always in id order (no deadlock between A-into-B and B-into-A), fresh from the DB."""
    query = (select(Lead).where(Lead.id.in_([first_id, second_id])).order_by(Lead.id)
             .with_for_update().execution_options(populate_existing=True))
    return {lead.id: lead for lead in db.session.scalars(query)}


def check_merge(survivor: Lead | None, absorbed: Lead | None) -> None:
    """Refuse a merge that cannot be right; the message is safe to show."""
    if survivor is None or absorbed is None:
        raise LookupError("lead")
    if survivor.id == absorbed.id:
        raise ValueError(_("A lead cannot be merged with itself."))
    refuse_if_erased(survivor)
    refuse_if_erased(absorbed)
    if survivor.key is None or absorbed.key is None:
        raise ValueError(_("A shredded lead cannot take part in a merge."))
    if survivor.merged_into_id or absorbed.merged_into_id:
        raise ValueError(_("One of these leads has already been merged; open it to find where it went."))


def merge_leads(survivor_id: str, absorbed_id: str, actor: User, now: dt.datetime | None = None) -> Lead:
    """Move everything of ``absorbed_id`` onto ``survivor_id`` and close it as a duplicate pointing there.

    :raises ValueError: merging a lead with itself, with a shredded lead, or an already merged one.
    :raises LookupError: when either lead does not exist.
    """
    if survivor_id == absorbed_id:
        raise ValueError(_("A lead cannot be merged with itself."))
    leads = lock_pair(survivor_id, absorbed_id)
    survivor, absorbed = leads.get(survivor_id), leads.get(absorbed_id)
    check_merge(survivor, absorbed)
    now = now or utcnow()
    try:
        moved = {model.__tablename__: _move_children(model, absorbed, survivor) for model in CHILDREN}
        leftovers = _take_contact_gaps(survivor, absorbed, actor, now)
    except crypto.CryptoError:
        raise ValueError(_("Some of the other lead's details cannot be read, so it cannot be merged.")) from None
    db.session.flush()
    _recompute(survivor, absorbed)
    _close_as_duplicate(absorbed, survivor, actor, now)
    if leftovers:
        db.session.add(LeadProposal(lead=survivor, created_at=now, values=leftovers))
    add_event(survivor, actor, "merged_in", at=now, body=absorbed.reference)
    details = {"survivor": survivor.id, "absorbed": absorbed.id, "moved": sorted(k for k, v in moved.items() if v),
               "moved_rows": sum(moved.values())}
    record("lead_merged", survivor.id, actor, details)
    record("lead_merged", absorbed.id, actor, details)
    return survivor


def _move_children(model: type, absorbed: Lead, survivor: Lead) -> int:
    """Re-key every row of ``model`` from the absorbed lead to the survivor; returns how many moved."""
    rows = list(db.session.scalars(select(model).where(model.lead_id == absorbed.id)))
    for row in rows:
        _move_row(row, survivor)
    return len(rows)


def _move_row(row: Any, survivor: Lead) -> None:
    """Decrypt a row under its old lead's key, attach it to the survivor, encrypt it again under the survivor's."""
    values = {name: getattr(row, name) for name in encrypted_names(type(row))}
    cards = [(card, card.content) for card in getattr(row, "cards", [])]
    row.lead = survivor
    for name, value in values.items():
        setattr(row, name, value)
    for card, content in cards:
        card.content = content  # a card's key is its insurance's lead's, now the survivor's


def _take_contact_gaps(survivor: Lead, absorbed: Lead, actor: User, now: dt.datetime) -> dict[str, Any]:
    """Fill the survivor's empty contact fields from the absorbed lead; return the differing ones as a proposal."""
    leftovers = {}
    for name in CONTACT_FIELDS:
        theirs, ours = getattr(absorbed, name), getattr(survivor, name)
        if theirs in (None, "", {}):
            continue
        if ours in (None, "", {}):
            db.session.add(LeadChange(lead=survivor, at=now, actor_id=actor.id, field=name, cause="merge",
                                      old_value={"value": None}))
            setattr(survivor, name, theirs)
        elif theirs != ours:
            leftovers[name] = theirs
    return leftovers


def _recompute(survivor: Lead, absorbed: Lead) -> None:
    """First contact, speed to lead and counts over both leads' history."""
    survivor.created_at = min(survivor.created_at, absorbed.created_at)
    survivor.first_attempt_at = _earliest(survivor.first_attempt_at, absorbed.first_attempt_at)
    survivor.first_contact_at = _earliest(survivor.first_contact_at, absorbed.first_contact_at)
    survivor.attempt_count = db.session.scalar(
        select(func.count()).select_from(ContactAttempt).where(ContactAttempt.lead_id == survivor.id)) or 0
    survivor.next_callback_at = db.session.scalar(
        select(func.min(Callback.due_at)).where(Callback.lead_id == survivor.id, Callback.done_at.is_(None)))
    survivor.marketing_consent = survivor.marketing_consent or absorbed.marketing_consent
    if absorbed.urgent and absorbed.acknowledged_at is None:
        survivor.flag_urgent()
    if survivor.current_insurance_id is None and absorbed.current_insurance_id:
        survivor.current_insurance_id = absorbed.current_insurance_id
    db.session.expire(survivor, ["insurances", "enquiries"])


def _earliest(*times: dt.datetime | None) -> dt.datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _close_as_duplicate(absorbed: Lead, survivor: Lead, actor: User, now: dt.datetime) -> None:
    """Close the absorbed lead as ``duplicate`` pointing at the survivor; its indexes no longer match anyone."""
    source = absorbed.stage
    absorbed.set_stage(Stage.CLOSED, "duplicate", now)
    absorbed.merged_into_id = survivor.id
    absorbed.phone_bidx = absorbed.email_bidx = absorbed.name_dob_bidx = None
    absorbed.next_callback_at = None
    add_event(absorbed, actor, "stage_changed", at=now, from_stage=source, to_stage=Stage.CLOSED, reason="duplicate")
    add_event(absorbed, actor, "merged_into", at=now, body=survivor.reference)
