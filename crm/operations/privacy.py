"""The privacy lifecycle of a lead: access requests, do-not-contact, legal hold and erasure.

Erasure is crypto-shredding: the wrapped data key is deleted and every ciphertext column of
the lead and its rows is set to NULL (card images are deleted), in the caller's transaction.
What remains is a tombstone with no PHI: ids, the reference code, times, stages and their
reasons, source, coverage type and outcome codes, so reports and the audit chain stay whole.
Do-not-contact requests are kept as blind indexes in ``do_not_contact`` and outlive erasure.

Public helpers for other flows (merge, record correction, import, alerts):
:func:`do_not_contact_match`, :func:`may_alert`, :func:`refuse_if_erased` and
``Lead.is_erased`` / ``Lead.is_do_not_contact``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, delete, func, literal_column, or_, select, update
from sqlalchemy import inspect as sa_inspect

from .. import audit, ledger
from ..models import (
    Callback,
    DoNotContact,
    Insurance,
    InsuranceCard,
    Lead,
    LeadKey,
    Stage,
    User,
    db,
    email_index,
    encrypted_names,
    phone_index,
    utcnow,
)
from .guards import PrivacyRefusal, refuse_if_do_not_contact, refuse_if_erased  # noqa: F401  (re-exported)
from .leads import add_event, record

#: Why an erasure request is refused, in words for the page and the command line.
REFUSALS = {
    "converted": "This lead became a patient: the clinic must keep the record (California: at least 7 years). "
                 "Correct it instead, or erase it once the retention period has passed.",
    "legal_hold": "An admin placed this lead on legal hold; release the hold before erasing it.",
}
DNC_CHANNELS = ("phone", "stop_reply", "email", "letter", "in_person")


# --- tombstones ----------------------------------------------------------------------


def erasure_refusal(lead: Lead) -> str | None:
    """The reason an erasure request must be refused (a code of :data:`REFUSALS`), or None."""
    if lead.legal_hold_at is not None:
        return "legal_hold"
    if lead.stage == Stage.CONVERTED:
        return "converted"
    return None


def erase_lead(lead: Lead, actor: User | None, reason: str = "patient_request", now: dt.datetime | None = None) -> bool:
    """Crypto-shred one lead on a deletion request; False (a no-op) when it is already erased.

    :raise PrivacyRefusal: for a converted patient or a lead on legal hold (audited).
    """
    if lead.is_erased:
        return False
    refusal = erasure_refusal(lead)
    if refusal:
        record("lead_erased", lead.id, actor, {"reason": reason, "refused": refusal}, outcome="refused")
        raise PrivacyRefusal(refusal, REFUSALS[refusal])
    shred([lead.id], reason, actor, now or utcnow())
    record("lead_erased", lead.id, actor, {"reason": reason})
    db.session.expire(lead)
    return True


@cache
def _owned_models() -> tuple[type, ...]:
    """Every model other than Lead with encrypted columns and a ``lead_id`` (found, not listed,
    so a new lead-owned table is shredded too; one without ``lead_id`` is refused loudly)."""
    models = []
    for mapper in db.Model.registry.mappers:
        model = mapper.class_
        if model is Lead or model is InsuranceCard or not encrypted_names(model):
            continue
        if "lead_id" not in model.__table__.c:
            raise RuntimeError(f"{model.__name__} holds ciphertext but no lead_id: teach privacy.shred about it")
        models.append(model)
    return tuple(models)


def _nulls(model: type) -> dict[str, None]:
    return {f"{name}_enc": None for name in encrypted_names(model)}


def among(column: Any, ids: Sequence[str]) -> ColumnElement[bool]:
    """``column IN ids`` with the ids bound as one value (an array on PostgreSQL, a JSON array on SQLite).

    A batch of a thousand ids then compiles once and binds as fast as one, where an expanding
    ``IN`` renders and binds a thousand parameters into every statement of the batch.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(String)))
    return column.in_(select(literal_column("value")).select_from(func.json_each(json.dumps(list(ids)))))


def shred(lead_ids: Sequence[str], reason: str, actor: User | None, now: dt.datetime,
          in_ledger: bool = False) -> None:
    """Destroy the data keys and ciphertexts of ``lead_ids`` and mark them erased; not committed.

    The ledger entry is written first (unless the ledger already names them): an erasure
    that then fails to commit is finished by the next restore check, while an erased lead
    missing from the ledger could come back with a restored backup. One statement per
    table for the whole batch; objects of these leads already loaded in the session are expired.
    """
    ids = list(lead_ids)
    if not ids:
        return
    if not in_ledger:
        ledger.append((lead_id, now, reason) for lead_id in ids)
    session = db.session
    cards = select(Insurance.id).where(among(Insurance.lead_id, ids)).scalar_subquery()
    session.execute(delete(InsuranceCard.__table__).where(InsuranceCard.insurance_id.in_(cards)))
    for model in _owned_models():  # rows already without ciphertext are left alone: fewer pages rewritten
        table = model.__table__
        columns = [table.c[name] for name in _nulls(model)]
        session.execute(update(table).where(among(table.c.lead_id, ids), or_(*(c.is_not(None) for c in columns)))
                        .values(_nulls(model)))
    session.execute(delete(LeadKey.__table__).where(among(LeadKey.__table__.c.lead_id, ids)))
    callbacks = Callback.__table__
    # by lead id alone: "done_at IS NULL" would lead SQLite to walk the open-callbacks index instead
    session.execute(update(callbacks).where(among(callbacks.c.lead_id, ids))
                    .values(done_at=func.coalesce(callbacks.c.done_at, now)))
    leads = Lead.__table__
    session.execute(update(leads).where(among(leads.c.id, ids)).values(
        **_nulls(Lead), phone_bidx=None, email_bidx=None, name_dob_bidx=None, next_callback_at=None,
        erased_at=now, erased_by=actor.id if actor else None, erasure_reason=reason, updated_at=now))
    _expire_loaded(set(ids))


def _expire_loaded(ids: set[str]) -> None:
    """Expire loaded objects of the shredded leads, which the table-level statements left stale."""
    for obj in list(db.session.identity_map.values()):
        loaded = sa_inspect(obj).dict  # what is in memory: reading an attribute could reload a deleted row
        owner = loaded.get("id") if isinstance(obj, Lead) else loaded.get("lead_id")
        if owner in ids or isinstance(obj, InsuranceCard):  # a card knows its lead only through its insurance
            db.session.expire(obj)


# --- do not contact ------------------------------------------------------------------


def set_do_not_contact(lead: Lead, actor: User, channel: str, now: dt.datetime | None = None) -> None:
    """Record the patient's request to stop: no attempts, callbacks or alerts; kept past erasure."""
    refuse_if_erased(lead)
    if channel not in DNC_CHANNELS:
        raise ValueError(_("Choose how the patient asked."))
    if lead.is_do_not_contact:
        raise ValueError(_("This lead is already marked do not contact."))
    now = now or utcnow()
    lead.do_not_contact_at, lead.do_not_contact_by = now, actor.id
    if lead.phone_bidx is not None or lead.email_bidx is not None:
        db.session.add(DoNotContact(phone_bidx=lead.phone_bidx, email_bidx=lead.email_bidx, lead_id=lead.id,
                                    channel=channel, created_at=now, created_by=actor.id))
    _close_open_callbacks(lead, now)
    add_event(lead, actor, "do_not_contact", at=now, reason=channel)
    record("do_not_contact_set", lead.id, actor, {"channel": channel})


def lift_do_not_contact(lead: Lead, actor: User, now: dt.datetime | None = None) -> None:
    """Lift do-not-contact when the patient asks to be contacted again (their list entries go too)."""
    refuse_if_erased(lead)
    if not lead.is_do_not_contact:
        raise ValueError(_("This lead is not marked do not contact."))
    lead.do_not_contact_at = lead.do_not_contact_by = None
    db.session.execute(delete(DoNotContact).where(DoNotContact.lead_id == lead.id))
    add_event(lead, actor, "do_not_contact_lifted", at=now or utcnow(), reason="patient_asked_again")
    record("do_not_contact_lifted", lead.id, actor, {"reason": "patient_asked_again"})


def _close_open_callbacks(lead: Lead, now: dt.datetime) -> None:
    db.session.execute(update(Callback).where(Callback.lead_id == lead.id, Callback.done_at.is_(None))
                       .values(done_at=now))
    lead.next_callback_at = None


@dataclass(frozen=True)
class DoNotContactMatch:
    """A do-not-contact entry matching a phone or e-mail: when it was asked, and how."""

    asked_at: dt.datetime
    channel: str
    lead_id: str | None


def do_not_contact_match(phone: str | None = None, email: str | None = None) -> DoNotContactMatch | None:
    """The newest do-not-contact entry for this phone (any format) or e-mail (any case), if any.

    Blind indexes are truncated, so a match is a reason to check with the patient, not proof:
    staff entry and import flows warn the coordinator; the patient's own web enquiry is accepted.
    """
    conditions = []
    if (phone_bidx := phone_index(phone)) is not None:
        conditions.append(DoNotContact.phone_bidx == phone_bidx)
    if (email_bidx := email_index(email)) is not None:
        conditions.append(DoNotContact.email_bidx == email_bidx)
    if not conditions:
        return None
    row = db.session.execute(select(DoNotContact.created_at, DoNotContact.channel, DoNotContact.lead_id)
                             .where(or_(*conditions)).order_by(DoNotContact.created_at.desc()).limit(1)).first()
    return DoNotContactMatch(*row) if row else None


def listed_indexes(phone_bidxs: set[int], email_bidxs: set[int]) -> tuple[set[int], set[int]]:
    """Which of these phone and e-mail blind indexes are on the do-not-contact list, in one query."""
    if not phone_bidxs and not email_bidxs:
        return set(), set()
    rows = db.session.execute(select(DoNotContact.phone_bidx, DoNotContact.email_bidx).where(
        or_(DoNotContact.phone_bidx.in_(phone_bidxs), DoNotContact.email_bidx.in_(email_bidxs))))
    phones, emails = set(), set()
    for phone_bidx, email_bidx in rows:
        phones.add(phone_bidx)
        emails.add(email_bidx)
    return phones & phone_bidxs, emails & email_bidxs


def lead_do_not_contact_match(lead: Lead) -> DoNotContactMatch | None:
    """A do-not-contact entry left by another lead (e.g. an erased one) with this lead's phone or e-mail."""
    conditions = []
    if lead.phone_bidx is not None:
        conditions.append(DoNotContact.phone_bidx == lead.phone_bidx)
    if lead.email_bidx is not None:
        conditions.append(DoNotContact.email_bidx == lead.email_bidx)
    if not conditions:
        return None
    row = db.session.execute(select(DoNotContact.created_at, DoNotContact.channel, DoNotContact.lead_id)
                             .where(or_(*conditions), or_(DoNotContact.lead_id.is_(None),
                                                          DoNotContact.lead_id != lead.id))
                             .order_by(DoNotContact.created_at.desc()).limit(1)).first()
    return DoNotContactMatch(*row) if row else None


def may_alert(lead: Lead) -> bool:
    """False for a lead nobody may be alerted about or contact: erased or do-not-contact (the outbox's hook)."""
    return not lead.is_erased and not lead.is_do_not_contact




# --- legal hold and access requests -------------------------------------------------


def set_legal_hold(lead: Lead, actor: User, hold: bool, now: dt.datetime | None = None) -> None:
    """Place or release a legal hold: a held lead is never erased, by request or by retention."""
    refuse_if_erased(lead)
    if hold == (lead.legal_hold_at is not None):
        raise ValueError(_("The lead is already on legal hold.") if hold else _("The lead is not on legal hold."))
    now = now or utcnow()
    lead.legal_hold_at, lead.legal_hold_by = (now, actor.id) if hold else (None, None)
    action = "legal_hold_set" if hold else "legal_hold_released"
    add_event(lead, actor, action, at=now)
    record(action, lead.id, actor)


def request_access(lead: Lead, actor: User, now: dt.datetime | None = None) -> dt.datetime:
    """Record a patient's request for a copy of their data; returns the date it is due."""
    refuse_if_erased(lead)
    if lead.access_requested_at is not None and lead.access_fulfilled_at is None:
        raise ValueError(_("A request for a copy is already open on this lead."))
    now = now or utcnow()
    lead.access_requested_at = now
    lead.access_due_at = now + dt.timedelta(days=int(current_app.config["ACCESS_REQUEST_DAYS"]))
    lead.access_fulfilled_at = None
    add_event(lead, actor, "access_requested", at=now)
    record("access_requested", lead.id, actor, {"due": lead.access_due_at.date().isoformat()})
    return lead.access_due_at


def access_requests_due(before: dt.datetime) -> list[tuple[str, str, dt.datetime]]:
    """Open access requests due before ``before``: (lead id, reference, due) for reminders."""
    rows = db.session.execute(select(Lead.id, Lead.reference, Lead.access_due_at).where(
        Lead.access_due_at < before, Lead.access_fulfilled_at.is_(None), Lead.erased_at.is_(None))
        .order_by(Lead.access_due_at))
    return [tuple(row) for row in rows]


def record_export(lead: Lead, actor: User | None, details: dict[str, Any], now: dt.datetime | None = None) -> None:
    """Audit a patient's copy being produced and close any open access request."""
    refuse_if_erased(lead)
    if lead.access_requested_at is not None and lead.access_fulfilled_at is None:
        lead.access_fulfilled_at = now or utcnow()
        details = {**details, "fulfils_request": True}
    record("lead_exported", lead.id, actor, details)


# --- restores ------------------------------------------------------------------------


def unshredded_from_ledger(batch: int = 1000) -> list[list[str]]:
    """Leads the shred ledger names that the database still holds unerased (after a restore), in batches."""
    named = list(ledger.entries())
    found: list[str] = []
    for start in range(0, len(named), batch):
        chunk = named[start:start + batch]
        found += db.session.scalars(select(Lead.id).where(Lead.id.in_(chunk), Lead.erased_at.is_(None)))
    return [found[i:i + batch] for i in range(0, len(found), batch)]


def reapply_ledger(lead_ids: list[str], now: dt.datetime | None = None) -> None:
    """Shred again leads a restored backup brought back, as the system; not committed."""
    now = now or utcnow()
    shred(lead_ids, "restore_reapplied", None, now, in_ledger=True)
    audit.record("restore_checked", object_type="lead", details={"reshredded": len(lead_ids), "leads": lead_ids})


def ledger_behind_database() -> bool:
    """True when the ledger names more leads than the database has erased: a restore to check."""
    erased = db.session.scalar(select(func.count()).select_from(Lead).where(Lead.erased_at.is_not(None))) or 0
    return ledger.count() > erased
