"""The audit viewer's rows in words: staff names, lead reference codes, action labels, summarised details.

Audit details never hold PHI, only codes, counts and ids; this turns the ids into what an admin
recognises (a staff member's name, a lead's reference code) and a list of ids into a count with
the references behind a disclosure, so nothing on the page is a raw UUID or a JSON blob.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy import select

from ..labels import label, shown
from ..models import AuditEvent, Lead, User, db

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Detail keys whose value names a staff member.
_STAFF_KEYS = frozenset({"assignee", "clinician", "user", "caller", "members", "taken_by", "granted_to"})
#: What the viewer calls each detail key.
DETAIL_KEYS = {
    "from": _l("From"), "to": _l("To"), "reason": _l("Reason"), "channel": _l("Channel"), "outcome": _l("Outcome"),
    "view": _l("View"), "page": _l("Page"), "source": _l("Source"), "rows": _l("Rows"), "kind": _l("Kind"),
    "place": _l("Place"), "cards": _l("Cards"), "returning": _l("Returning"), "urgent": _l("Urgent"),
    "by": _l("By"), "assignee": _l("Assigned to"), "clinician": _l("With"), "format": _l("Format"),
    "fields": _l("Fields"), "field": _l("Field"), "during": _l("During"), "role": _l("Role"), "own": _l("Own"),
    "count": _l("Count"), "sessions_revoked": _l("Sessions revoked"), "via": _l("Via"), "event": _l("Event"),
    "verbal_consent": _l("Verbal consent"), "possible_matches": _l("Possible matches"), "language": _l("Language"),
    "status": _l("Status"), "decision": _l("Decision"), "what": _l("What"), "hours": _l("Hours"),
    "members": _l("Members"), "second_factor": _l("Second factor"), "leads": _l("Leads"), "action": _l("Action"),
    "lead": _l("Lead"), "user": _l("User"), "date_from": _l("From"), "date_to": _l("To"), "table": _l("Table"),
    "erased": _l("Erased"), "reshredded": _l("Shredded again"), "draft_replaced": _l("Draft replaced"),
}


@dataclass
class Fact:
    """One detail of an event: its name, its value in words, and the references behind a count."""

    name: str
    value: str
    references: list[str] = field(default_factory=list)


@dataclass
class EventRow:
    """One audit event as the viewer shows it."""

    event: AuditEvent
    who: str
    action: str
    object: str
    lead_id: str | None
    outcome: str
    facts: list[Fact]


def event_rows(rows: list[Any]) -> list[EventRow]:
    """The page's events in words, with every staff member and lead looked up once."""
    events = [row.AuditEvent for row in rows]
    parsed = {event.seq: _details(event) for event in events}
    staff = {user.id: user for user in db.session.scalars(select(User))}
    lead_ids = {event.object_id for event in events if event.object_type == "lead" and event.object_id}
    lead_ids |= {value for details in parsed.values() for value in _ids_in(details)}
    references = _references(lead_ids)
    names = _Names(staff, references)
    return [EventRow(event, names.actor(event, email), label(event.action, "audit_actions"), names.object(event),
                     event.object_id if event.object_type == "lead" else None, label(event.outcome, "audit_words"),
                     names.facts(event.action, parsed[event.seq]))
            for event, email in ((row.AuditEvent, row.actor_email) for row in rows)]


def _details(event: AuditEvent) -> dict[str, Any]:
    try:
        details = json.loads(event.details or "{}")
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


def _ids_in(details: dict[str, Any]) -> list[str]:
    values = [v for value in details.values() for v in (value if isinstance(value, list) else [value])]
    return [v for v in values if isinstance(v, str) and _UUID.match(v)]


def _references(lead_ids: set[str]) -> dict[str, str]:
    if not lead_ids:
        return {}
    rows = db.session.execute(select(Lead.id, Lead.reference).where(Lead.id.in_(sorted(lead_ids))))
    return {row.id: row.reference for row in rows if row.reference}


class _Names:
    """Turns the ids an event carries into names and reference codes."""

    def __init__(self, staff: dict[str, User], references: dict[str, str]) -> None:
        self.staff, self.references = staff, references

    def actor(self, event: AuditEvent, email: str | None) -> str:
        """The e-mail the event recorded (the chained history), with the person's name from an intact account."""
        user = self.staff.get(event.actor_id) if event.actor_id else None
        name = user.display_name if user is not None and user.integrity_ok else None
        recorded = email or (user.email if user is not None and user.integrity_ok else None)
        if name and recorded:
            return f"{name} ({recorded})"
        return name or recorded or label(event.actor_kind, "audit_words")

    def person(self, user_id: str) -> str:
        """A staff member's name, never read from an account row changed outside the application."""
        user = self.staff[user_id]
        return user.shown_name if user.integrity_ok else _("an account changed outside the application")

    def object(self, event: AuditEvent) -> str:
        if not event.object_type:
            return ""
        if event.object_type == "lead" and event.object_id:
            return self.references.get(event.object_id) or _("an erased lead")
        if event.object_type == "user" and event.object_id in self.staff:
            return self.person(event.object_id)
        kind = label(event.object_type, "audit_words")
        shown_id = event.object_id and not _UUID.match(event.object_id)
        return f"{kind} {event.object_id}" if shown_id else kind

    def facts(self, action: str, details: dict[str, Any]) -> list[Fact]:
        """The details worth showing, in words."""
        return [fact for key, value in details.items() if (fact := self.fact(action, key, value))]

    def fact(self, action: str, key: str, value: Any) -> Fact | None:
        if key.endswith("_id") or key == "grant":  # the record an event touched: internal, meaningless on screen
            return None
        name = str(DETAIL_KEYS.get(key, label(key)))
        if isinstance(value, list):
            return self._many(action, key, name, value)
        return Fact(name, self.word(key, value))

    def _many(self, action: str, key: str, name: str, values: list[Any]) -> Fact:
        if key == "leads":
            refs = [self.references.get(v, _("an erased lead")) for v in values]
            if action == "leads_listed":
                return Fact(name, ngettext("%(num)d lead listed", "%(num)d leads listed", len(values)), refs)
            return Fact(name, ngettext("%(num)d lead", "%(num)d leads", len(values)), refs)
        return Fact(name, ", ".join(self.word(key, v) for v in values))

    def word(self, key: str, value: Any) -> str:
        if isinstance(value, str) and _UUID.match(value):
            if value in self.staff:
                return self.person(value)
            return self.references.get(value, _("a record"))
        if key in _STAFF_KEYS and value is None:
            return "—"
        return shown(value) if not isinstance(value, str) else label(value)
