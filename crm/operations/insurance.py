"""Verification of benefits and prior authorisation on a lead's insurance."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import gettext as _

from .. import vob
from ..models import Insurance, Lead, User, db, utcnow
from .leads import add_event, record
from .refusals import Refused

KEEP_WHEN_BLANK = ("member_id", "group_number")
#: What an approved authorisation must record.
APPROVAL_DETAILS = ("pa_auth_number", "pa_units", "pa_start", "pa_end")


def check_vob(current: Insurance | None, data: dict[str, Any]) -> None:
    """Refuse a verification the workflow does not allow."""
    if data["vob_status"] not in vob.codes("statuses"):
        raise Refused(_("Choose a verification status."), "vob_status")
    if data["vob_status"] == vob.RULES["finished_status"] and not data["vob_outcome"]:
        raise Refused(_("Choose an outcome before marking the benefits verified."), "vob_outcome")
    if not vob.pa_move_allowed(current.pa_status if current else None, data["pa_status"]):
        raise Refused(_("The prior authorisation cannot move to that status from where it is."), "pa_status")
    if data["pa_status"] == vob.RULES["pa_approved"]:
        _check_approval(data)


def _check_approval(data: dict[str, Any]) -> None:
    missing = [name for name in APPROVAL_DETAILS if not data[name]]
    if missing:
        raise Refused(_("An approved authorisation needs its number, units and start and end dates."), *missing)
    if data["pa_end"] < data["pa_start"]:
        raise Refused(_("The authorisation ends before it starts."), "pa_end")


def record_vob(lead: Lead, actor: User, data: dict[str, Any], now: dt.datetime | None = None) -> Insurance:
    """Store a verification of benefits on the lead's current insurance (creating one if needed)."""
    if not lead.is_open:
        raise ValueError(_("Reopen the lead before verifying benefits."))
    insurance = lead.current_insurance
    check_vob(insurance, data)
    if insurance is None:
        insurance = Insurance(lead=lead)
        db.session.add(insurance)
    now = now or utcnow()
    _stamp_pa(insurance, data.get("pa_status"), now)
    _apply(insurance, data)
    if data["vob_status"] == vob.RULES["finished_status"]:
        insurance.verified_by, insurance.verified_at = actor.id, now
    add_event(lead, actor, "vob_recorded", reason=data["vob_status"])
    record("vob_recorded", lead.id, actor, {"insurance_id": insurance.id, "vob_status": data["vob_status"]})
    return insurance


def _stamp_pa(insurance: Insurance, target: str | None, now: dt.datetime) -> None:
    """Note when the authorisation was first submitted and when the payer first decided (reports' turnaround)."""
    if target == insurance.pa_status:
        return
    if target in vob.RULES["pa_submitted"] and insurance.pa_submitted_at is None:
        insurance.pa_submitted_at = now
    if target in vob.RULES["pa_decided"] and insurance.pa_decided_at is None:
        insurance.pa_decided_at = now


def _apply(insurance: Insurance, data: dict[str, Any]) -> None:
    for name, value in data.items():
        if name in KEEP_WHEN_BLANK and not value:
            continue
        setattr(insurance, name, value)
