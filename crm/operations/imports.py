"""Import leads from a referral partner's or a previous system's CSV file.

Header names are matched case-insensitively (spaces, dashes and underscores alike) through
:data:`HEADERS`. Each row is checked with the public form's own fields and rules, after
dates and coverage words in common spellings are brought to the form's shape. A row for a
person who already has a lead (the same date of birth and phone or e-mail, exactly as the
web form's dedupe decides), in the database or earlier in the file, is attached to that lead
instead of creating one. Every row leaves a keyed fingerprint, so importing the same file
again creates nothing. A refused row writes nothing; all rows of one lead go into one
transaction, so no lead is ever partial.

The caller (the CLI or the admin page) writes each :class:`Batch` and commits it; this
module only builds rows, looks up matches and audits.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from types import SimpleNamespace
from typing import Any, TextIO

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import Table, or_, select
from sqlalchemy.orm import contains_eager
from werkzeug.datastructures import MultiDict

from .. import audit, crypto, statements
from ..forms.intake import PatientFields
from ..forms.leads import parse_date
from ..models import (
    ImportedRow,
    Insurance,
    Lead,
    LeadEvent,
    LeadKey,
    LeadProposal,
    Stage,
    User,
    db,
    encrypted_columns,
    indexer,
    lead_blind_indexes,
    new_id,
    new_lead_key,
    new_reference,
    table_row,
    utcnow,
)
from .enquiries import PROPOSABLE, Contact, Coverage, unverified_details_rows
from .privacy import listed_indexes

#: Canonical field → the header names accepted for it (compared without case, spaces, dashes, underscores).
HEADERS: dict[str, tuple[str, ...]] = {
    "first_name": ("first name", "first", "given name", "patient first name"),
    "last_name": ("last name", "last", "surname", "family name", "patient last name"),
    "dob": ("dob", "date of birth", "birth date", "birthdate", "birthday"),
    "phone": ("phone", "phone number", "mobile", "mobile phone", "cell", "cell phone", "telephone", "tel"),
    "email": ("email", "e-mail", "email address", "e-mail address"),
    "zip_code": ("zip", "zip code", "zipcode", "postal code", "postcode"),
    "coverage_type": ("coverage", "coverage type", "plan type", "insurance type"),
    "carrier": ("carrier", "insurance", "insurance company", "payer", "insurer"),
    "member_id": ("member id", "member number", "subscriber id", "insurance id"),
    "group_number": ("group", "group number", "group no", "group #"),
    "is_policyholder": ("patient is policyholder", "policyholder", "is policyholder"),
    "referrer_name": ("referring provider", "referrer", "referred by", "referring physician"),
    "referrer_npi": ("referring npi", "npi", "referrer npi"),
}
#: Coverage words in common spellings → the form's codes.
COVERAGE_WORDS = {
    "ppo": "ppo", "hmo": "hmo", "epo": "epo", "medicare": "medicare", "medi-cal": "medi_cal", "medical": "medi_cal",
    "medicaid": "medi_cal", "medi cal": "medi_cal", "medi_cal": "medi_cal", "va": "va_tricare", "tricare": "va_tricare",
    "va/tricare": "va_tricare", "va_tricare": "va_tricare", "self pay": "self_pay", "self-pay": "self_pay",
    "self_pay": "self_pay", "cash": "self_pay", "": "not_sure", "unknown": "not_sure", "not sure": "not_sure",
    "not_sure": "not_sure", "none": "self_pay",
}
YES_WORDS = {"y": "yes", "yes": "yes", "true": "yes", "1": "yes", "n": "no", "no": "no", "false": "no", "0": "no"}
MAX_ROW_FIELDS = 64
FINGERPRINT = "imports|row"

#: Checks run on each slice's new rows after validation: each returns line → warning (no PHI).
ROW_CHECKS: list[Callable[[list[ParsedRow]], dict[int, str]]] = []


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (not CSV, no usable header)."""


@dataclass(frozen=True)
class ParsedRow:
    """One valid row, in the shape the lead rows are built from."""

    line: int
    values: dict[str, Any]  # lead attributes and ``insurance.*``
    source_details: dict[str, Any] | None
    fingerprint: str

    @cached_property
    def indexes(self) -> dict[str, int | None]:
        """The row's blind indexes, as its lead stores them and the lookups use them (computed once)."""
        values = self.values
        return lead_blind_indexes(values.get("phone"), values.get("email"), values.get("last_name"),
                                  values.get("dob"))

    @cached_property
    def keys(self) -> list[tuple[str, str]]:
        """The identities the row's person is matched by."""
        return identity_keys(self.values, current_app.config["PHONE_REGION"])


@dataclass
class Summary:
    """What an import did or, in a dry run, would do; line numbers and reasons only, never values."""

    created: int = 0
    attached: int = 0
    already_imported: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Every data row seen."""
        return self.created + self.attached + self.already_imported + len(self.refused)


@dataclass
class Batch:
    """The rows one transaction writes, and the leads it creates or attaches to."""

    rows: dict[Table, list[dict[str, Any]]] = field(default_factory=dict)
    lead_ids: list[str] = field(default_factory=list)
    created: int = 0
    attached: int = 0
    proposals: int = 0

    def add(self, table: Table, row: dict[str, Any]) -> None:
        """Queue one row for ``table``."""
        self.rows.setdefault(table, []).append(row)


def _squash(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum() or ch == "#")


_ALIASES = {_squash(alias): canonical for canonical, names in HEADERS.items()
            for alias in (canonical, *names)}


def map_headers(header: list[str]) -> dict[int, str]:
    """Column position → canonical field, for every header the mapping knows (first one wins)."""
    mapping: dict[int, str] = {}
    for position, name in enumerate(header):
        canonical = _ALIASES.get(_squash(name or ""))
        if canonical and canonical not in mapping.values():
            mapping[position] = canonical
    if not {"first_name", "last_name", "dob"} <= set(mapping.values()):
        raise ImportFileError(_("The file needs columns for first name, last name and date of birth."))
    return mapping


def read_csv(source: str | TextIO) -> tuple[dict[int, str], Iterator[tuple[int, list[str]]]]:
    """The header mapping and the data rows (with their line numbers) of CSV text or an open text file.

    A file is read as the rows are consumed, never whole.
    """
    handle = io.StringIO(source) if isinstance(source, str) else source
    sample = handle.read(4096)
    handle.seek(0)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(handle, dialect)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise ImportFileError(_("The file is empty or is not a CSV file.")) from None
    return map_headers(header), _numbered(reader)


def _numbered(reader: Any) -> Iterator[tuple[int, list[str]]]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield reader.line_num, None  # an unreadable line is refused, the rest go on
            continue
        if any(cell.strip() for cell in row):
            yield reader.line_num, row


class ImportRowForm(PatientFields):
    """CSV rows, one after another, held to the public form's rules; built once per file."""

    class Meta:
        csrf = False

    def __init__(self) -> None:
        super().__init__(formdata=None)
        for bound in self:  # choice labels are translated once per file, not once per row and field
            if hasattr(bound, "choices"):
                bound.choices = bound.choices

    def check(self, formdata: MultiDict) -> bool:
        """Load one row's values into the fields and validate them (every earlier row's state is replaced)."""
        self.process(formdata)
        return self.validate()


def _form_data(cells: dict[str, str]) -> MultiDict:
    """Bring a row's dates, coverage and yes/no words to the form's shape; anything unknown stays as typed."""
    data = {name: value.strip() for name, value in cells.items()}
    for name in ("dob",):
        if data.get(name):
            try:
                data[name] = parse_date(data[name]).isoformat()
            except ValueError:
                pass
    coverage = data.get("coverage_type", "").casefold()
    data["coverage_type"] = COVERAGE_WORDS.get(coverage, coverage)
    holder = YES_WORDS.get(data.get("is_policyholder", "").casefold())
    data["is_policyholder"] = holder or ("yes" if data["coverage_type"] in ("ppo", "hmo", "epo") else "")
    return MultiDict({k: v for k, v in data.items() if v})


def parse_row(line: int, cells: list[str] | None, mapping: dict[int, str], source: str,
              form: ImportRowForm | None = None) -> ParsedRow | str:
    """A valid row, or the reason it is refused (the form's own message, never the value)."""
    if cells is None or len(cells) > MAX_ROW_FIELDS:
        return "The line could not be read as CSV."
    named = {canonical: cells[position] for position, canonical in mapping.items() if position < len(cells)}
    form = form or ImportRowForm()
    if not form.check(_form_data(named)):
        name, errors = next((n, e) for n, e in form.errors.items() if e)
        return f"{form[name].label.text}: {errors[0]}"
    values = form.lead_values()
    details = {k: named[k].strip() for k in ("referrer_name", "referrer_npi") if named.get(k, "").strip()}
    return ParsedRow(line, values, details or None, _fingerprint(source, values, details))


DO_NOT_CONTACT_WARNING = "this phone or e-mail is on the do-not-contact list"


def do_not_contact_warnings(rows: list[ParsedRow]) -> dict[int, str]:
    """Flag rows whose phone or e-mail asked not to be contacted (imported, but nobody should call); one query."""
    phones, emails = listed_indexes({row.indexes["phone_bidx"] for row in rows} - {None},
                                    {row.indexes["email_bidx"] for row in rows} - {None})
    return {row.line: DO_NOT_CONTACT_WARNING for row in rows
            if row.indexes["phone_bidx"] in phones or row.indexes["email_bidx"] in emails}


def do_not_contact_warning(row: ParsedRow) -> str | None:
    """The do-not-contact warning of one row, if any."""
    return do_not_contact_warnings([row]).get(row.line)


ROW_CHECKS.append(do_not_contact_warnings)


def _fingerprint(source: str, values: dict[str, Any], details: dict[str, Any]) -> str:
    """A keyed digest of the row's normalised content: the same row imported twice has the same one."""
    parts = [source] + [f"{k}={_normal(v)}" for k, v in sorted({**values, **details}.items())]
    return indexer().fingerprint(FINGERPRINT, "\x1f".join(parts))


def _normal(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return repr(sorted(value.items()))
    return crypto.normalize_text(str(value)) if value is not None else ""


class Importer:
    """Sorts rows into new leads, attachments to existing ones and repeats, and builds their rows.

    Memory stays bounded by the slice: once a slice is written, its leads and fingerprints are
    in the session's transaction, where the next slice's lookups find them. Only a dry run,
    which writes nothing, remembers the people and rows of the whole file.
    """

    def __init__(self, source: str, actor: User | None, dry_run: bool = False):
        self.source, self.actor, self.dry_run = source, actor, dry_run
        self.summary = Summary()
        self.region = current_app.config["PHONE_REGION"]
        self._people: dict[tuple[str, str], str] = {}  # (phone or e-mail key, dob) → lead id
        self._seen: set[str] = set()
        self._leads: dict[str, tuple[Any, crypto.FieldCipher]] = {}  # lead id → (its details, its cipher)

    def batch(self, parsed: Iterable[ParsedRow | tuple[int, str]]) -> Batch:
        """Handle one slice of the file: refusals counted, matches attached, the rest created."""
        rows = []
        for item in parsed:
            if isinstance(item, ParsedRow):
                rows.append(item)
            else:
                self.summary.refused.append(item)
        if not self.dry_run:
            self._people, self._seen = {}, set()
        self._leads = {}
        batch, now = Batch(), utcnow()
        known = self._imported({row.fingerprint for row in rows})
        fresh = [row for row in rows if row.fingerprint not in known]
        warnings = {line: warning for check in ROW_CHECKS for line, warning in check(fresh).items()}
        self._remember_existing(fresh)
        for row in rows:
            self._place(row, batch, known, warnings.get(row.line), now)
        return batch

    def _place(self, row: ParsedRow, batch: Batch, known: set[str], warning: str | None, now: dt.datetime) -> None:
        if row.fingerprint in known or row.fingerprint in self._seen:
            self.summary.already_imported += 1
            return
        self._seen.add(row.fingerprint)
        if warning:
            self.summary.warnings.append((row.line, warning))
        lead_id = self._match(row)
        if lead_id:
            self.summary.attached += 1
            batch.attached += 1
            if not self.dry_run:
                self._attach_rows(batch, lead_id, row, now)
        else:
            self.summary.created += 1
            batch.created += 1
            lead_id = new_id() if self.dry_run else self._new_lead_rows(batch, row, now)
            for key in row.keys:
                self._people[key] = lead_id
        batch.lead_ids.append(lead_id)

    # --- matching ----------------------------------------------------------------------

    def _match(self, row: ParsedRow) -> str | None:
        return next((self._people[key] for key in row.keys if key in self._people), None)

    def _remember_existing(self, rows: list[ParsedRow]) -> None:
        """Load, in one query, the existing leads sharing a phone or e-mail index with this slice.

        Blind indexes coincide by design, so most candidates are strangers: each is decrypted
        only as far as needed, its date of birth first, and compared to the slice's people.
        """
        phones = {i for r in rows if (i := r.indexes["phone_bidx"]) is not None}
        emails = {i for r in rows if (i := r.indexes["email_bidx"]) is not None}
        if not phones and not emails:
            return
        wanted = {key for row in rows for key in row.keys}
        births = {dob for _contact, dob in wanted}
        # the key is joined, not loaded by a second IN query, which PostgreSQL may answer with a full scan
        query = (select(Lead).join(LeadKey, LeadKey.lead_id == Lead.id).options(contains_eager(Lead.key))
                 .where(or_(Lead.phone_bidx.in_(phones), Lead.email_bidx.in_(emails))))
        for lead in db.session.scalars(query):
            if lead.merged_into_id:
                continue
            try:
                dob = lead.dob
                if dob is None or dob.isoformat() not in births:
                    continue
                keys = identity_keys({"dob": dob, "phone": lead.phone, "email": lead.email}, self.region)
            except crypto.CryptoError:
                continue  # an unreadable lead is never matched; a new one is created instead
            for key in keys:
                if key in wanted and key not in self._people:
                    self._people[key] = lead.id
                    self._leads[lead.id] = (lead, None)

    def _imported(self, fingerprints: set[str]) -> set[str]:
        if not fingerprints:
            return set()
        query = select(ImportedRow.digest).where(ImportedRow.digest.in_(fingerprints))
        return set(db.session.scalars(query))

    # --- rows --------------------------------------------------------------------------

    def _new_lead_rows(self, batch: Batch, row: ParsedRow, now: dt.datetime) -> str:
        lead_id, values = new_id(), row.values
        cipher, key_row = new_lead_key(lead_id)
        insurance_id = new_id()
        batch.add(Lead.__table__, table_row(
            Lead, id=lead_id, reference=new_reference(), stage=Stage.NEW, source=self.source,
            created_at=now, updated_at=now, stage_changed_at=now,
            created_by=self.actor.id if self.actor else None, current_insurance_id=insurance_id,
            **row.indexes,
            **encrypted_columns(Lead, lead_id, cipher, first_name=values["first_name"], last_name=values["last_name"],
                                dob=values["dob"], phone=values.get("phone"), email=values.get("email"),
                                zip_code=values.get("zip_code"), source_details=row.source_details),
        ))
        batch.add(LeadKey.__table__, {**key_row, "wrapped_at": now})
        batch.add(Insurance.__table__, {
            "id": insurance_id, "lead_id": lead_id, "created_at": now,
            "coverage_type": values["insurance.coverage_type"],
            "patient_is_policyholder": values["insurance.patient_is_policyholder"],
            **encrypted_columns(Insurance, insurance_id, cipher, carrier=values.get("insurance.carrier"),
                                member_id=values.get("insurance.member_id"),
                                group_number=values.get("insurance.group_number"),
                                policyholder=values.get("insurance.policyholder")),
        })
        batch.add(LeadEvent.__table__, self._event(lead_id, "created", now, to_stage=Stage.NEW))
        batch.add(ImportedRow.__table__, self._imported_row(lead_id, row, now))
        stored = SimpleNamespace(id=lead_id, marketing_consent=False, preferences=None,
                                 **{name: values.get(name) for name in PROPOSABLE if name != "preferences"})
        self._leads[lead_id] = (stored, cipher)
        return lead_id

    def _attach_rows(self, batch: Batch, lead_id: str, row: ParsedRow, now: dt.datetime) -> None:
        """Attach the row as a returning enquiry is attached: the lead's details stay, what differs is proposed."""
        batch.add(LeadEvent.__table__, self._event(lead_id, "import_attached", now))
        batch.add(ImportedRow.__table__, self._imported_row(lead_id, row, now))
        lead, cipher = self._leads[lead_id]
        try:
            rows = unverified_details_rows(lead, cipher or lead.field_cipher(), *contact_and_coverage(row.values),
                                           now, origin="import")
        except crypto.CryptoError:
            return  # a detail of the lead is unreadable: nothing to compare with, the row is still attached
        for table, table_rows in rows.items():
            for values in table_rows:
                batch.add(table, values)
        batch.proposals += len(rows.get(LeadProposal.__table__, []))

    def _event(self, lead_id: str, kind: str, now: dt.datetime, to_stage: str | None = None) -> dict[str, Any]:
        return table_row(LeadEvent, id=new_id(), lead_id=lead_id, at=now,
                         actor_id=self.actor.id if self.actor else None, kind=kind, to_stage=to_stage,
                         reason=f"import_{self.source}")

    def _imported_row(self, lead_id: str, row: ParsedRow, now: dt.datetime) -> dict[str, Any]:
        return {"digest": row.fingerprint, "lead_id": lead_id, "source": self.source, "imported_at": now}

    # --- writing -----------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        """Insert one batch in the session's transaction and audit it (counts and lead ids); not committed."""
        if self.dry_run or not batch.lead_ids:
            return
        for table in (Lead.__table__, LeadKey.__table__, Insurance.__table__, LeadProposal.__table__,
                      LeadEvent.__table__, ImportedRow.__table__):
            if batch.rows.get(table):
                statements.insert_rows(table, batch.rows[table])
        details = {"source": self.source, "created": batch.created, "attached": batch.attached,
                   "proposals": batch.proposals, "leads": list(dict.fromkeys(batch.lead_ids))}
        audit.record("leads_imported", actor=self.actor, object_type="lead", details=details)


def contact_and_coverage(values: dict[str, Any]) -> tuple[Contact, Coverage]:
    """A valid row's values in the shape an enquiry gives them, for comparing with a lead."""
    contact = Contact(first_name=values["first_name"], last_name=values["last_name"], dob=values["dob"],
                      phone=values.get("phone"), email=values.get("email"), zip_code=values.get("zip_code"),
                      preferences=values.get("preferences") or {})
    coverage = Coverage(coverage_type=values["insurance.coverage_type"], carrier=values.get("insurance.carrier"),
                        member_id=values.get("insurance.member_id"),
                        group_number=values.get("insurance.group_number"),
                        patient_is_policyholder=values.get("insurance.patient_is_policyholder"),
                        policyholder=values.get("insurance.policyholder"))
    return contact, coverage


def identity_keys(values: dict[str, Any], region: str) -> list[tuple[str, str]]:
    """The identities a person is matched by: phone + DOB and e-mail + DOB (as the web form's dedupe)."""
    dob = values["dob"].isoformat()
    keys = []
    if values.get("phone") and (phone := crypto.normalize_phone(values["phone"], region)):
        keys.append((f"p:{phone}", dob))
    if values.get("email"):
        keys.append((f"e:{crypto.normalize_email(values['email'])}", dob))
    return keys


def parsed_rows(text: str | TextIO, source: str) -> Iterator[ParsedRow | tuple[int, str]]:
    """Every data row of the file, parsed as it is read, or ``(line, reason)`` when refused.

    :raises ImportFileError: when the file has no usable header.
    """
    mapping, rows = read_csv(text)
    return _parsed(rows, mapping, source)


def _parsed(rows: Iterator[tuple[int, list[str]]], mapping: dict[int, str],
            source: str) -> Iterator[ParsedRow | tuple[int, str]]:
    form = ImportRowForm()
    for line, cells in rows:
        parsed = parse_row(line, cells, mapping, source, form)
        yield parsed if isinstance(parsed, ParsedRow) else (line, parsed)


def line_of(item: ParsedRow | tuple[int, str]) -> int:
    """The file line a parsed or refused row ended on."""
    return item.line if isinstance(item, ParsedRow) else item[0]


def in_batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def preview(row: ParsedRow) -> dict[str, Any]:
    """What the preview shows of a valid row: enough to recognise the file, not to identify anyone."""
    values = row.values
    phone = "".join(ch for ch in values.get("phone") or "" if ch.isdigit())
    return {"line": row.line, "name": f"{values['first_name']} {values['last_name'][:1]}.",
            "born": values["dob"].year, "phone": f"…{phone[-4:]}" if phone else "",
            "email": "yes" if values.get("email") else "", "coverage": values["insurance.coverage_type"]}


def seal_upload(upload_id: str, content: bytes) -> bytes:
    """Encrypt an uploaded file under the primary master key until it is imported."""
    return crypto.seal(current_app.extensions["crm_keyring"], "import_upload", upload_id, content)


def unseal_upload(upload_id: str, blob: bytes) -> bytes:
    """The uploaded file's bytes."""
    return crypto.unseal(current_app.extensions["crm_keyring"], "import_upload", upload_id, blob)
