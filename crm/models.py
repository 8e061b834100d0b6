"""Database models: typed SQLAlchemy tables, encrypted attributes, enums and the stage graph.

PHI columns are stored as AES-GCM ciphertext (``*_enc``) and exposed as plain Python
attributes through :class:`Encrypted`, so views and operations never call ``crypto``.
All timestamps are naive UTC (see :func:`utcnow`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import secrets
import time
import uuid
from collections import Counter
from enum import StrEnum
from typing import Any

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from . import crypto, payers


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


db = SQLAlchemy(model_class=Base)


def utcnow() -> dt.datetime:
    """Return the current time as a naive UTC datetime, the storage convention."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


#: The text of a UUID as stored (lower case).
UUID_TEXT = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")


def new_id() -> str:
    """Return a time-ordered UUID (version 7, RFC 9562), made in Python so associated data is known before INSERT.

    New rows' keys, and the ``lead_id`` of every row hanging off a new lead, land at the end of
    their B-tree indexes instead of on a random page: at a million leads an enquiry touches
    pages already in the cache. The 48-bit millisecond time it carries is the row's creation
    time, already stored beside it; 74 random bits keep ids unguessable within a millisecond.
    """
    millis = time.time_ns() // 1_000_000
    rand_a, rand_b = secrets.randbits(12), secrets.randbits(62)
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def keyring() -> crypto.Keyring:
    """The application's loaded keyring."""
    return current_app.extensions["crm_keyring"]


def indexer() -> crypto.BlindIndexer:
    """The application's blind indexer."""
    return current_app.extensions["crm_indexer"]


# --- enums and the stage graph -------------------------------------------------------


class Role(StrEnum):
    COORDINATOR = "coordinator"
    CLINICIAN = "clinician"
    MANAGER = "manager"  # reads reports (aggregates only), never a lead's PHI
    ADMIN = "admin"


class Stage(StrEnum):
    NEW = "new"
    CONTACTING = "contacting"
    CONTACTED = "contacted"
    SCREENING = "screening"
    INSURANCE_REVIEW = "insurance_review"
    ELIGIBLE = "eligible"
    SCHEDULED = "scheduled"
    CONVERTED = "converted"
    INELIGIBLE = "ineligible"
    UNREACHABLE = "unreachable"
    CLOSED = "closed"


OPEN_STAGES = (
    Stage.NEW,
    Stage.CONTACTING,
    Stage.CONTACTED,
    Stage.SCREENING,
    Stage.INSURANCE_REVIEW,
    Stage.ELIGIBLE,
    Stage.SCHEDULED,
)
EXIT_STAGES = (Stage.INELIGIBLE, Stage.UNREACHABLE, Stage.CLOSED)
REOPENABLE_STAGES = (Stage.UNREACHABLE, Stage.CLOSED)

#: Forward moves along the pipeline, from first enquiry to a converted patient.
FORWARD: dict[Stage, tuple[Stage, ...]] = {
    Stage.NEW: (Stage.CONTACTING, Stage.CONTACTED),
    Stage.CONTACTING: (Stage.CONTACTED,),
    Stage.CONTACTED: (Stage.SCREENING, Stage.INSURANCE_REVIEW),
    Stage.SCREENING: (Stage.INSURANCE_REVIEW, Stage.ELIGIBLE),
    Stage.INSURANCE_REVIEW: (Stage.SCREENING, Stage.ELIGIBLE),
    Stage.ELIGIBLE: (Stage.SCHEDULED,),
    Stage.SCHEDULED: (Stage.CONVERTED,),
}

#: Reasons an exit stage accepts; every exit and reopen needs one.
EXIT_REASONS: dict[Stage, tuple[str, ...]] = {
    Stage.INELIGIBLE: (
        "under_18",
        "contraindication",
        "not_trd_or_mdsi",
        "active_untreated_sud",
        "no_transport",
        "other",
    ),
    Stage.UNREACHABLE: ("cadence_exhausted", "wrong_number", "other"),
    Stage.CLOSED: (
        "chose_other_provider",
        "cost",
        "not_ready",
        "referred_out",
        "do_not_contact",
        "duplicate",
        "other",
    ),
}
#: The funnel's steps in pipeline order; screening and insurance review run in either order, so they share one.
PIPELINE_STEPS: tuple[tuple[Stage, ...], ...] = (
    (Stage.NEW,), (Stage.CONTACTING,), (Stage.CONTACTED,), (Stage.SCREENING, Stage.INSURANCE_REVIEW),
    (Stage.ELIGIBLE,), (Stage.SCHEDULED,), (Stage.CONVERTED,),
)
STEP_OF: dict[str, int] = {stage: step for step, stages in enumerate(PIPELINE_STEPS) for stage in stages}
REOPEN_REASONS = ("patient_returned", "new_information", "closed_in_error", "other")

#: Languages a lead may prefer (ISO 639-1 codes): the public pages' two, then those most spoken at home
#: in Orange County that a coordinator may hear on the phone.
PREFERRED_LANGUAGES = ("en", "es", "vi", "ko", "zh", "tl", "fa", "ar")


def allowed_moves(stage: Stage) -> tuple[Stage, ...]:
    """Return every stage a lead in ``stage`` may move to."""
    if stage in REOPENABLE_STAGES:
        return (Stage.CONTACTING,)
    if stage in OPEN_STAGES:
        return FORWARD.get(stage, ()) + EXIT_STAGES
    return ()


def move_needs_reason(source: Stage, target: Stage) -> bool:
    """True when a move is an exit or a reopen, which must carry a reason."""
    return target in EXIT_STAGES or source in REOPENABLE_STAGES


class Channel(StrEnum):
    CALL = "call"
    TEXT = "text"
    EMAIL = "email"


class AttemptOutcome(StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail_left"
    WRONG_NUMBER = "wrong_number"
    CALL_LATER = "asked_to_call_later"


class CoverageType(StrEnum):
    PPO = "ppo"
    HMO = "hmo"
    EPO = "epo"
    MEDICARE = "medicare"
    MEDICAID = "medi_cal"
    VA_TRICARE = "va_tricare"
    SELF_PAY = "self_pay"
    NOT_SURE = "not_sure"


COMMERCIAL_COVERAGE = (CoverageType.PPO, CoverageType.HMO, CoverageType.EPO)


class LeadSource(StrEnum):
    WEB_FORM = "web_form"
    PHONE = "phone"
    REFERRAL = "referral"
    FIND_A_CENTER = "find_a_center"
    PAYER_DIRECTORY = "payer_directory"
    VA_COMMUNITY_CARE = "va_community_care"
    WALK_IN = "walk_in"
    OTHER = "other"


# --- encrypted attributes ------------------------------------------------------------


class Encrypted:
    """A plain attribute stored as AES-GCM ciphertext in the ``<name>_enc`` column.

    The owning model supplies ``field_cipher()`` (its lead's data key) and ``id``;
    the associated data binds each value to its table, column and row.
    ``kind`` is one of ``str``, ``date``, ``json`` or ``bytes``. ``on_set`` names a method
    called with the new value as a keyword argument (``None`` when cleared).
    """

    def __init__(self, kind: str = "str", on_set: str | None = None):
        self.kind = kind
        self.on_set = on_set
        self.encode, self.decode = _CODECS[kind]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.column = f"{name}_enc"

    # Loaded column values live in the instance __dict__; reading them there is SQLAlchemy's
    # own fast path and keeps a field read near the cost of the AES-GCM call itself.

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        loaded = obj.__dict__
        blob = loaded[self.column] if self.column in loaded else getattr(obj, self.column)
        if blob is None:
            return None
        row_id = loaded["id"] if "id" in loaded else obj.id
        return self.decrypt_value(obj.field_cipher(), obj.__tablename__, row_id, blob)

    def __set__(self, obj: Any, value: Any) -> None:
        if is_blank(value):
            value = blob = None
        else:
            loaded = obj.__dict__
            row_id = loaded["id"] if "id" in loaded else obj.id
            blob = obj.field_cipher().encrypt(obj.__tablename__, self.name, row_id, self.encode(value))
        setattr(obj, self.column, blob)
        if self.on_set:
            getattr(obj, self.on_set)(**{self.name: value})

    def encrypt_value(self, cipher: crypto.FieldCipher, table: str, row_id: str, value: Any) -> bytes:
        """Return the stored ciphertext of a non-empty ``value``; bulk loaders share this encoding."""
        return cipher.encrypt(table, self.name, row_id, self.encode(value))

    def decrypt_value(self, cipher: crypto.FieldCipher, table: str, row_id: str, blob: bytes) -> Any:
        """Return the value of a stored ciphertext (read with Core, or through the attribute)."""
        return self.decode(cipher.decrypt(table, self.name, row_id, blob))


def is_blank(value: Any) -> bool:
    """Nothing to store: ``None`` or an empty string, kept as NULL rather than as ciphertext."""
    return value is None or value == ""


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


#: ``kind`` → (encode to bytes, decode from bytes) for :class:`Encrypted`.
_CODECS: dict[str, tuple[Any, Any]] = {
    "str": (lambda value: str(value).encode(), bytes.decode),
    "bytes": (bytes, bytes),
    "date": (lambda value: value.isoformat().encode(), lambda raw: dt.date.fromisoformat(raw.decode())),
    "json": (_encode_json, json.loads),
}


def encrypted_names(model: type) -> list[str]:
    """Names of a model's encrypted attributes (used by tests and key tooling)."""
    return [k for k, v in vars(model).items() if isinstance(v, Encrypted)]


class Identified:
    """Mixin: Python-generated UUID id, set first so encrypted kwargs can bind to it."""

    def __init__(self, **kwargs: Any):
        self.id = kwargs.pop("id", None) or new_id()
        secret = {k: kwargs.pop(k) for k in list(kwargs) if isinstance(getattr(type(self), k, None), Encrypted)}
        super().__init__(**kwargs)
        for name, value in secret.items():
            setattr(self, name, value)


class LeadOwned(Identified):
    """Mixin for rows whose fields are encrypted with their lead's data key (pass ``lead=``)."""

    def field_cipher(self) -> crypto.FieldCipher:
        """The owning lead's field cipher."""
        return self.lead.field_cipher()


# --- staff ---------------------------------------------------------------------------


class User(Identified, db.Model):
    """A staff account: one per person, never shared, never seeded."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[str] = mapped_column(String(16), default=Role.COORDINATOR)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active_flag: Mapped[bool] = mapped_column("is_active", Boolean, default=True)
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Set under the 8-character rule with fewer than 15: must be replaced if it ever stands alone.
    short_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    security_mac: Mapped[bytes | None] = mapped_column(LargeBinary)  # see PROTECTED and crm.crypto.row_mac

    sessions: Mapped[list[UserSession]] = relationship(back_populates="user")

    #: Columns a database writer must not change unnoticed: covered by ``security_mac``.
    PROTECTED = ("id", "email", "password_hash", "role", "is_active_flag", "totp_secret_sealed")
    #: False once a load found the row's MAC wrong; such an account is refused everywhere.
    integrity_ok = True

    # Flask-Login's user protocol; the id it stores is the server-side session token.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        """False once an admin deactivates the account."""
        return self.is_active_flag

    def get_id(self) -> str | None:
        """The current session's token (set at sign-in or by the user loader), never the user id."""
        return self.__dict__.get("session_token")

    @property
    def is_admin(self) -> bool:
        """True for administrators."""
        return self.role == Role.ADMIN

    @property
    def shown_name(self) -> str:
        """How the person is named on screen: their display name, else their e-mail address."""
        return self.display_name or self.email

    @property
    def has_totp(self) -> bool:
        """True once a second factor is enrolled."""
        return self.totp_secret_sealed is not None


class UserSession(db.Model):
    """A server-side sign-in session; the cookie carries only its random token."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reauth_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    second_factor_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    security_mac: Mapped[bytes | None] = mapped_column(LargeBinary)

    user: Mapped[User] = relationship(back_populates="sessions")

    #: What makes a session valid: whose it is, when it began, its second factor, its revocation.
    PROTECTED = ("id", "user_id", "created_at", "second_factor_at", "revoked_at")
    integrity_ok = True


class EmergencyGrant(db.Model):
    """Break-glass access: for a limited time a named user signs in without the second factor.

    Granted only from the command line on the application host (``flask break-glass``); every
    request made under it is audited. The reason is sealed: it may name a patient.
    """

    __tablename__ = "emergency_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    reason_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    security_mac: Mapped[bytes | None] = mapped_column(LargeBinary)

    PROTECTED = ("id", "user_id", "granted_at", "expires_at", "ended_at")
    integrity_ok = True


class ReferringPractice(db.Model):
    """A referring provider's practice, named once: referral leads point at it, so reports count per practice.

    Not patient data, but a practice may bear a provider's own name, so the name is sealed and
    shown only on the report rows that need it. ``practice_key`` is a keyed HMAC of the
    normalised name (:func:`crm.crypto.normalize_text`): one row per practice however it is typed.
    """

    __tablename__ = "referring_practices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    practice_key: Mapped[str] = mapped_column(String(64), unique=True)
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


Protected = User | UserSession | EmergencyGrant


def protected_mac(row: Protected) -> bytes:
    """The MAC of a row's :attr:`PROTECTED` values under the keyring's row key (never in the database)."""
    return crypto.row_mac(keyring().row_key, row.__tablename__, tuple(getattr(row, n) for n in row.PROTECTED))


def mac_matches(row: Protected) -> bool:
    """True when the stored MAC is the one the row's protected values give (a missing MAC never is)."""
    stored = row.security_mac
    return stored is not None and hmac.compare_digest(bytes(stored), protected_mac(row))


def _seal_insert(_mapper: Any, _connection: Any, row: Protected) -> None:
    """MAC a new row's protected values as they are written."""
    _apply_defaults(row)
    row.security_mac = protected_mac(row)


def _seal_update(_mapper: Any, connection: Any, row: Protected) -> None:
    """Renew the MAC when a protected value changes, but only over a stored row that was intact.

    The stored row is re-read and checked first: the application never launders a change
    made behind its back into a valid MAC (a tampered row keeps its bad MAC).
    """
    state = inspect(row)
    if not any(state.attrs[name].history.has_changes() for name in row.PROTECTED):
        return
    table = row.__table__
    names = [_column_name(row, name) for name in row.PROTECTED]
    stored = connection.execute(
        select(*(table.c[n] for n in names), table.c.security_mac).where(table.c.id == row.id)
    ).one()
    expected = crypto.row_mac(keyring().row_key, row.__tablename__, tuple(stored[:-1]))
    if stored[-1] is None or not hmac.compare_digest(bytes(stored[-1]), expected):
        row.integrity_ok = False
        return
    row.security_mac = protected_mac(row)


def _apply_defaults(row: Protected) -> None:
    """Fill unset protected columns with their Python defaults now, so the MAC covers what is stored."""
    columns = row.__table__.columns
    for name in row.PROTECTED:
        default = columns[_column_name(row, name)].default
        if getattr(row, name) is None and default is not None:
            setattr(row, name, default.arg(None) if default.is_callable else default.arg)


def _column_name(row: Protected, attribute: str) -> str:
    return type(row).__mapper__.attrs[attribute].columns[0].name


def _check_row(row: Protected, *_args: Any) -> None:
    """Check a row's MAC each time it is loaded or refreshed from the database.

    A refresh under pending changes to protected values is left to :func:`_seal_update`,
    which checks the stored row before it writes.
    """
    if not all(name in row.__dict__ for name in (*row.PROTECTED, "security_mac")):
        return
    state = inspect(row)
    if not any(state.attrs[name].history.has_changes() for name in row.PROTECTED):
        row.integrity_ok = mac_matches(row)


PROTECTED_MODELS = (User, UserSession, EmergencyGrant)
for _model in PROTECTED_MODELS:
    event.listen(_model, "before_insert", _seal_insert)
    event.listen(_model, "before_update", _seal_update)
    event.listen(_model, "load", _check_row)
    event.listen(_model, "refresh", _check_row)


class RecoveryCode(db.Model):
    """A one-time second-factor recovery code, stored only as a hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class LoginAttempt(db.Model):
    """One sign-in attempt, kept in the database so every worker shares throttling."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    ip: Mapped[str] = mapped_column(String(45), index=True)
    email_digest: Mapped[str] = mapped_column(String(64), index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)


class Invitation(db.Model):
    """A single-use, expiring set-password link; only its hash is stored."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# --- leads ---------------------------------------------------------------------------


class LeadKey(db.Model):
    """A lead's data key wrapped by a master key. Deleting it shreds the lead."""

    __tablename__ = "lead_keys"

    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    kid: Mapped[int] = mapped_column(Integer, index=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    dek_version: Mapped[int] = mapped_column(Integer, default=1)
    wrapped_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


#: The non-PHI ``leads`` columns reports aggregate (kept through a shred), date first for range scans.
REPORT_COLUMNS = ("created_at", "stage", "stage_reason", "reached_step", "source", "assignee_id", "urgent",
                  "first_attempt_at", "first_contact_at", "attempt_count")
#: The ``leads`` columns the per-referring-practice report reads, from its partial index alone (source first:
#: with the date first, SQLite takes ``ix_leads_source_created`` and reads the wide rows).
PRACTICE_REPORT_COLUMNS = ("source", "created_at", "referring_practice_id", "stage", "stage_reason",
                           "reached_step", "assignee_id", "urgent")
_HAS_CALLBACK = text("next_callback_at IS NOT NULL")
_ACCESS_OPEN = text("access_due_at IS NOT NULL AND access_fulfilled_at IS NULL")
_HAS_PRACTICE = text("referring_practice_id IS NOT NULL")


class Lead(Identified, db.Model):
    """A prospective patient; PHI encrypted with the lead's own data key."""

    __tablename__ = "leads"
    __table_args__ = (
        # Each index serves a page's query (tests/test_query_plans.py proves every one index-served);
        # (assignee, stage) and (urgent, acknowledged_at) served none and were dropped. The lead list's
        # indexes end with ``erased_at``, which the list filters on, so its capped count reads the index alone.
        Index("ix_leads_stage_created", "stage", "created_at", "erased_at"),
        Index("ix_leads_source_created", "source", "created_at", "erased_at"),
        Index("ix_leads_assignee_created", "assignee_id", "created_at", "erased_at"),
        Index("ix_leads_language_created", "preferred_language", "created_at", "erased_at"),
        # the home page's "urgent, not yet acknowledged" queue, oldest first
        Index("ix_leads_urgent_open", "created_at", "erased_at",
              sqlite_where=text("urgent = 1 AND acknowledged_at IS NULL"),
              postgresql_where=text("urgent = true AND acknowledged_at IS NULL")),
        # reports read a date range of these columns only: the index answers them without the wide rows
        Index("ix_leads_report", *REPORT_COLUMNS, "erased_at"),
        # referral leads naming a practice, for the per-practice report; others write nothing into it
        Index("ix_leads_practice_report", *PRACTICE_REPORT_COLUMNS, sqlite_where=_HAS_PRACTICE,
              postgresql_where=_HAS_PRACTICE),
        # the lead list filtered by stage and source: its page in date order and its total, from the index alone
        Index("ix_leads_stage_source", "stage", "source", "created_at", "erased_at"),
        # the home page's "new, nobody has claimed it" queue, oldest first, from its first entry. New leads are the
        # newest: without it PostgreSQL walked ix_leads_report in date order through nearly every lead to reach them
        Index("ix_leads_stage_assignee_created", "stage", "assignee_id", "created_at"),
        # the list sorted by callback; a new lead has none, so an enquiry writes nothing into it
        Index("ix_leads_next_callback_at", "next_callback_at", "erased_at", sqlite_where=_HAS_CALLBACK,
              postgresql_where=_HAS_CALLBACK),
        # the worker's reminders of open requests for a copy; an enquiry writes nothing into it
        Index("ix_leads_access_open", "access_due_at", sqlite_where=_ACCESS_OPEN, postgresql_where=_ACCESS_OPEN),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    stage: Mapped[str] = mapped_column(String(24), default=Stage.NEW)
    stage_reason: Mapped[str | None] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(24), default=LeadSource.WEB_FORM)
    utm_source: Mapped[str | None] = mapped_column(String(80))
    utm_medium: Mapped[str | None] = mapped_column(String(80))
    utm_campaign: Mapped[str | None] = mapped_column(String(80))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    first_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    first_contact_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    stage_changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    next_callback_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    reached_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # furthest PIPELINE_STEPS index
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    preferred_language: Mapped[str | None] = mapped_column(String(8))  # a language code such as "es"; not PHI

    # Privacy lifecycle (crm.operations.privacy): plain codes, times and staff ids, never PHI.
    do_not_contact_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    do_not_contact_by: Mapped[str | None] = mapped_column(String(36))
    legal_hold_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    legal_hold_by: Mapped[str | None] = mapped_column(String(36))
    access_requested_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    access_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    access_fulfilled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    erased_by: Mapped[str | None] = mapped_column(String(36))  # None: the system (retention, restore check)
    erasure_reason: Mapped[str | None] = mapped_column(String(40))

    # phone, referral and imported leads; corrections and merges (no FK: the columns were added later)
    created_by: Mapped[str | None] = mapped_column(String(36))
    current_insurance_id: Mapped[str | None] = mapped_column(String(36))
    merged_into_id: Mapped[str | None] = mapped_column(String(36))  # no index: IS NULL would lure the planner
    referring_practice_id: Mapped[str | None] = mapped_column(String(36))  # referral leads: the practice named

    first_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    last_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    dob_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    email_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    zip_code_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    preferences_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    source_details_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    first_treatment_on_enc: Mapped[bytes | None] = mapped_column(LargeBinary)  # recorded on converting

    phone_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
    email_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
    name_dob_bidx: Mapped[int | None] = mapped_column(Integer, index=True)

    first_name = Encrypted()
    last_name = Encrypted(on_set="_index_name_dob")
    dob = Encrypted("date", on_set="_index_name_dob")
    phone = Encrypted(on_set="_index_phone")
    email = Encrypted(on_set="_index_email")
    zip_code = Encrypted()
    preferences = Encrypted("json")
    source_details = Encrypted("json")  # referring provider or VA authorisation
    first_treatment_on = Encrypted("date")

    key: Mapped[LeadKey | None] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    enquiries: Mapped[list[Enquiry]] = relationship(back_populates="lead", order_by="Enquiry.received_at")
    insurances: Mapped[list[Insurance]] = relationship(back_populates="lead", order_by="Insurance.created_at")
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id])

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("id", new_id())
        kwargs.setdefault("reference", new_reference())
        kwargs.setdefault("reached_step", STEP_OF.get(kwargs.get("stage", Stage.NEW), 0))
        self._cipher, key_row = new_lead_key(kwargs["id"])
        super().__init__(key=LeadKey(**key_row), **kwargs)

    def field_cipher(self) -> crypto.FieldCipher:
        """Return this lead's field cipher, unwrapping its data key on first use."""
        cipher = self.__dict__.get("_cipher")
        if cipher is None:
            key = self.key
            if key is None:
                raise crypto.DecryptionError(f"lead {self.id} has been shredded")
            cipher = self._cipher = lead_cipher(self.id, key.kid, key.nonce, key.wrapped, key.dek_version)
        return cipher

    # Blind-index hooks: each gets the value just set, so that value is not decrypted again.

    def _index_phone(self, phone: str | None) -> None:
        self.phone_bidx = phone_index(phone)

    def _index_email(self, email: str | None) -> None:
        self.email_bidx = email_index(email)

    def _index_name_dob(self, **changed: Any) -> None:
        last = changed["last_name"] if "last_name" in changed else self.last_name
        dob = changed["dob"] if "dob" in changed else self.dob
        self.name_dob_bidx = name_dob_index(last, dob)

    def set_stage(self, stage: str, reason: str | None, at: dt.datetime) -> None:
        """Put the lead in ``stage`` (operations check the move and record it first)."""
        self.stage, self.stage_reason, self.stage_changed_at = stage, reason, at
        if stage in STEP_OF:  # the funnel counts the furthest step ever reached, through exits and reopens
            self.reached_step = max(self.reached_step or 0, STEP_OF[stage])

    def flag_urgent(self) -> None:
        """Mark the lead urgent; any earlier acknowledgement no longer covers it."""
        self.urgent = True
        self.acknowledged_by = self.acknowledged_at = None

    @property
    def is_open(self) -> bool:
        """True while the lead is still moving through the pipeline."""
        return self.stage in OPEN_STAGES

    @property
    def is_erased(self) -> bool:
        """True once the lead is a tombstone: its data key and PHI are destroyed."""
        return self.erased_at is not None

    @property
    def is_do_not_contact(self) -> bool:
        """True once the patient asked not to be contacted (no attempts, callbacks or alerts)."""
        return self.do_not_contact_at is not None

    @property
    def current_insurance(self) -> Insurance | None:
        """The insurance a coordinator chose; by default the first complete one, else the first on file.

        A later enquiry adds its own insurance but never replaces this one by itself.
        """
        chosen = [i for i in self.insurances if i.id == self.current_insurance_id]
        complete = [i for i in self.insurances if i.is_complete]
        return (chosen or complete or self.insurances or [None])[0]


def new_lead_key(lead_id: str) -> tuple[crypto.FieldCipher, dict[str, Any]]:
    """A new lead's random data key: its field cipher and its ``lead_keys`` row, wrapped by the primary key."""
    dek = crypto.new_data_key()
    kid, nonce, wrapped = crypto.wrap_data_key(keyring(), lead_id, dek)
    return crypto.FieldCipher(dek), {"lead_id": lead_id, "kid": kid, "nonce": nonce, "wrapped": wrapped,
                                     "dek_version": 1}


def lead_cipher(lead_id: str, kid: int, nonce: bytes, wrapped: bytes, dek_version: int) -> crypto.FieldCipher:
    """A lead's field cipher from its ``lead_keys`` columns (the data key unwrapped by its master key)."""
    dek = crypto.unwrap_data_key(keyring(), lead_id, kid, bytes(nonce), bytes(wrapped))
    return crypto.FieldCipher(dek, dek_version)


def encrypted_columns(model: type, row_id: str, cipher: crypto.FieldCipher, **values: Any) -> dict[str, bytes | None]:
    """The ``*_enc`` columns of ``model`` for ``values``, encrypted exactly as its attributes would be.

    For rows written with Core inserts (bulk loads, the public intake), not through the ORM.
    """
    table = model.__tablename__
    out: dict[str, bytes | None] = {}
    for name, value in values.items():
        field = vars(model)[name]
        out[field.column] = None if is_blank(value) else field.encrypt_value(cipher, table, row_id, value)
    return out


def table_row(model: type, **values: Any) -> dict[str, Any]:
    """One Core insert row of ``model``'s table: every column, from ``values`` or else its default.

    A column without a default gets None (one with only a server default is left to the
    database unless given), so rows built here share their keys and insert as one batch, and
    a column added to the model is never forgotten by a hand-written list.
    """
    defaults = _row_defaults(model.__table__)
    unknown = values.keys() - defaults.keys()
    if unknown:
        raise KeyError(f"{model.__tablename__} has no column {sorted(unknown)[0]!r}")
    row = {key: values[key] if key in values else make() for key, make in defaults.items() if make is not None}
    row.update((key, values[key]) for key, make in defaults.items() if make is None and key in values)
    return row


_ROW_DEFAULTS: dict[str, dict[str, Any]] = {}


def _row_defaults(table: Any) -> dict[str, Any]:
    """Each column's producer of an insert value (None for a column the database fills), once per table."""
    found = _ROW_DEFAULTS.get(table.name)
    if found is None:
        found = _ROW_DEFAULTS[table.name] = {column.key: _default_of(column) for column in table.columns}
    return found


def _default_of(column: Any) -> Any:
    default = column.default
    if default is None:
        return None if column.server_default is not None else (lambda: None)
    if default.is_callable:
        return lambda: default.arg(None)
    return lambda: default.arg


def lead_blind_indexes(phone: str | None, email: str | None, last_name: str | None,
                       dob: dt.date | None) -> dict[str, int | None]:
    """The blind-index columns of a ``leads`` row written with a Core insert."""
    return {"phone_bidx": phone_index(phone), "email_bidx": email_index(email),
            "name_dob_bidx": name_dob_index(last_name, dob)}


#: The letters of a reference code: no 0/O, 1/I/L, so it is easy to read out.
REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_reference() -> str:
    """Return a short random reference code a patient can quote on the phone."""
    code = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"


def phone_index(value: str | None) -> int | None:
    """Blind index of a phone number in any common format, or ``None`` if it is not a number."""
    normalized = crypto.normalize_phone(value, current_app.config["PHONE_REGION"]) if value else None
    return indexer().compute("leads|phone", normalized) if normalized else None


def email_index(value: str | None) -> int | None:
    """Blind index of an e-mail address in any letter case."""
    return indexer().compute("leads|email", crypto.normalize_email(value)) if value else None


def name_dob_index(last_name: str | None, dob: dt.date | None) -> int | None:
    """Compound blind index of last name and date of birth (never the name alone)."""
    if not last_name or not dob:
        return None
    return indexer().compute("leads|name_dob", f"{crypto.normalize_text(last_name)}|{dob.isoformat()}")


_HAS_DIGEST = text("idempotency_digest IS NOT NULL")


class Enquiry(LeadOwned, db.Model):
    """One public-form submission, immutable, attached to a lead."""

    __tablename__ = "enquiries"
    # Only web-form enquiries carry a digest: a partial index keeps seeded, imported and migrated
    # rows out of it, so the planner always sees it as selective (see tests/test_query_plans.py).
    __table_args__ = (
        Index("ux_enquiries_idempotency_digest", "idempotency_digest", unique=True,
              sqlite_where=_HAS_DIGEST, postgresql_where=_HAS_DIGEST),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    idempotency_digest: Mapped[str | None] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(16), unique=True, index=True)
    crisis: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_version: Mapped[str] = mapped_column(String(32))
    consent_language: Mapped[str | None] = mapped_column(String(8))  # the language of that wording
    consented_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    privacy_ack: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # calls and texts with automated technology, answered either way; before wording 2026-12b the box was
    # required, so every earlier enquiry agreed
    contact_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("true"))

    answers_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    consent_ip_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    answers = Encrypted("json")
    consent_ip = Encrypted()

    lead: Mapped[Lead] = relationship(back_populates="enquiries")


class Insurance(LeadOwned, db.Model):
    """A lead's coverage as the patient gave it, plus the verification of benefits."""

    __tablename__ = "insurances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    enquiry_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    coverage_type: Mapped[str] = mapped_column(String(16), default=CoverageType.NOT_SURE)
    patient_is_policyholder: Mapped[bool | None] = mapped_column(Boolean)
    vob_status: Mapped[str] = mapped_column(String(16), default="not_started")
    vob_outcome: Mapped[str | None] = mapped_column(String(32))
    pa_status: Mapped[str | None] = mapped_column(String(24))
    pa_units: Mapped[int | None] = mapped_column(Integer)
    pa_start: Mapped[dt.date | None] = mapped_column()
    pa_end: Mapped[dt.date | None] = mapped_column()
    verified_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    payer: Mapped[str | None] = mapped_column(String(32))  # known-payer code from the carrier (reports), no PHI
    pa_submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    pa_decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    carrier_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    member_id_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    group_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    policyholder_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    benefits_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    pa_auth_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)

    carrier = Encrypted(on_set="_classify_payer")
    member_id = Encrypted()
    group_number = Encrypted()
    policyholder = Encrypted("json")  # name, dob, relationship when not the patient
    benefits = Encrypted("json")  # network, deductible, coinsurance, reference number…
    pa_auth_number = Encrypted()

    lead: Mapped[Lead] = relationship(back_populates="insurances")
    cards: Mapped[list[InsuranceCard]] = relationship(back_populates="insurance", cascade="all, delete-orphan")

    def _classify_payer(self, carrier: str | None) -> None:
        self.payer = payers.classify(carrier)

    @property
    def is_complete(self) -> bool:
        """A known kind of coverage, with the carrier and member ID when it is a commercial plan."""
        if self.coverage_type == CoverageType.NOT_SURE:
            return False
        return self.coverage_type not in COMMERCIAL_COVERAGE or bool(self.carrier_enc and self.member_id_enc)


class InsuranceCard(LeadOwned, db.Model):
    """A photo or scan of one side of an insurance card, encrypted, never served publicly."""

    __tablename__ = "insurance_cards"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    insurance_id: Mapped[str] = mapped_column(ForeignKey("insurances.id", ondelete="CASCADE"), index=True)
    side: Mapped[str] = mapped_column(String(8))
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    content_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    content = Encrypted("bytes")

    insurance: Mapped[Insurance] = relationship(back_populates="cards")

    @property
    def lead(self) -> Lead:  # type: ignore[override]
        """The lead whose data key encrypts this card."""
        return self.insurance.lead


class Screening(LeadOwned, db.Model):
    """An eligibility pre-screen: answers and reasons encrypted, outcome plain for queues."""

    __tablename__ = "screenings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    performed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    performed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(24))
    signed_off_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    signed_off_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sign_off_decision: Mapped[str | None] = mapped_column(String(24))  # eligible, not_eligible, needs_more_information
    sign_off_reason: Mapped[str | None] = mapped_column(String(40))  # an ineligible exit reason, for not_eligible

    answers_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    result_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    sign_off_note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    answers = Encrypted("json")
    result = Encrypted("json")
    sign_off_note = Encrypted()

    lead: Mapped[Lead] = relationship()


class ScreeningDraft(LeadOwned, db.Model):
    """A pre-screen saved part-way to finish later: the answers so far, encrypted; never scored or counted."""

    __tablename__ = "screening_drafts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    saved_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    saved_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    answers_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    answers = Encrypted("json")  # form field name → the answer given

    lead: Mapped[Lead] = relationship()


class ContactAttempt(LeadOwned, db.Model):
    """One call, text or e-mail to a lead and how it went."""

    __tablename__ = "contact_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    channel: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(24))
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    note = Encrypted()

    lead: Mapped[Lead] = relationship()


class Callback(Identified, db.Model):
    """A scheduled callback; done when the next attempt is logged or it is cancelled."""

    __tablename__ = "callbacks"
    __table_args__ = (
        Index("ix_callbacks_due", "done_at", "due_at"),
        Index("ix_callbacks_open_due", "due_at", sqlite_where=text("done_at IS NULL"),
              postgresql_where=text("done_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    lead: Mapped[Lead] = relationship()


class AppointmentKind(StrEnum):
    CONSULTATION = "consultation"
    REMS_FIRST_TREATMENT = "rems_first_treatment"
    OTHER = "other"


class AppointmentPlace(StrEnum):
    CLINIC = "clinic"
    TELEHEALTH = "telehealth"


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    ATTENDED = "attended"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


class Appointment(LeadOwned, db.Model):
    """A booked visit (consultation, REMS enrolment / first treatment…); notes encrypted with the lead's key."""

    __tablename__ = "appointments"
    __table_args__ = (Index("ix_appointments_status_starts", "status", "starts_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime)  # naive UTC; shown in the clinic's zone
    place: Mapped[str] = mapped_column(String(16))
    clinician_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=AppointmentStatus.BOOKED)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    notes = Encrypted()

    lead: Mapped[Lead] = relationship()
    clinician: Mapped[User] = relationship(foreign_keys=[clinician_id])


class LeadEvent(LeadOwned, db.Model):
    """One entry of a lead's timeline: created, returned, stage change, note, assignment…"""

    __tablename__ = "lead_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(24))
    from_stage: Mapped[str | None] = mapped_column(String(24))
    to_stage: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(String(40))
    body_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    body = Encrypted()

    lead: Mapped[Lead] = relationship()


class DoNotContact(db.Model):
    """A do-not-contact request kept as blind indexes only, so it outlives the lead's erasure."""

    __tablename__ = "do_not_contact"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
    email_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
    lead_id: Mapped[str | None] = mapped_column(String(36), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # how the request came: phone, stop_reply, email, letter
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(36))


class LeadProposal(LeadOwned, db.Model):
    """Details an unverified enquiry brought that differ from the lead's: a coordinator accepts or dismisses them."""

    __tablename__ = "lead_proposals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    enquiry_id: Mapped[str | None] = mapped_column(String(36))
    origin: Mapped[str | None] = mapped_column(String(12))  # "enquiry" or "import"; none for a merge's leftovers
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    values_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    values = Encrypted("json")  # field name -> the value the enquiry gave

    lead: Mapped[Lead] = relationship()


class LeadChange(LeadOwned, db.Model):
    """The previous value of one corrected field, kept encrypted; shown only through an audited reveal."""

    __tablename__ = "lead_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    field: Mapped[str] = mapped_column(String(40))
    cause: Mapped[str] = mapped_column(String(24), default="correction")
    old_value_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    old_value = Encrypted("json")

    lead: Mapped[Lead] = relationship()


class ConsentRecord(LeadOwned, db.Model):
    """Contact consent taken outside the web form (on the phone, in person): wording, who took it, when."""

    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(12))  # verbal | written | import
    wording_version: Mapped[str] = mapped_column(String(32))
    taken_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    taken_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    lead: Mapped[Lead] = relationship()


class ImportedRow(db.Model):
    """One imported CSV row, by keyed fingerprint only: importing the same row again creates nothing."""

    __tablename__ = "imported_rows"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(24))
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ImportUpload(db.Model):
    """A CSV an admin uploaded for preview, sealed under the master key until it is imported or abandoned."""

    __tablename__ = "import_uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    uploaded_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(24))
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary)


# --- audit ---------------------------------------------------------------------------


_HAS_ACTOR = text("actor_id IS NOT NULL")


class AuditEvent(db.Model):
    """One link of the append-only, HMAC-chained audit log. Details never hold PHI."""

    __tablename__ = "audit_events"
    # The viewer filters by lead, actor or action and pages newest-first by seq; a date range
    # becomes a seq range (see crm.audit), so seq-ordered indexes serve it too. Anonymous
    # events (every public enquiry) have no actor and stay out of the actor index.
    __table_args__ = (
        Index("ix_audit_object", "object_type", "object_id", "seq"),
        Index("ix_audit_actor_seq", "actor_id", "seq", sqlite_where=_HAS_ACTOR, postgresql_where=_HAS_ACTOR),
        Index("ix_audit_action_seq", "action", "seq"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    actor_kind: Mapped[str] = mapped_column(String(8))  # user | public | system
    actor_id: Mapped[str | None] = mapped_column(String(36))
    # The actor's e-mail as it was, inside the MAC: a later change to users cannot move history.
    actor_email: Mapped[str | None] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(48))
    object_type: Mapped[str | None] = mapped_column(String(24))
    object_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(36))
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_mac: Mapped[bytes] = mapped_column(LargeBinary)
    mac: Mapped[bytes] = mapped_column(LargeBinary)


AUDIT_APPEND_ONLY_DDL = {
    "sqlite": [
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
        "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_events is append-only'; END; $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    ],
}


def install_triggers(table: Any, ddl: dict[str, list[str]]) -> None:
    """Run ``ddl`` (statements per dialect) right after ``table`` is created by ``create_all``."""

    def install(_target: Any, connection: Any, **_kw: Any) -> None:
        for statement in ddl.get(connection.dialect.name, []):
            connection.exec_driver_sql(statement)

    event.listen(table, "after_create", install)


install_triggers(AuditEvent.__table__, AUDIT_APPEND_ONLY_DDL)  # refuse UPDATE and DELETE on the audit log


# --- stage counts ------------------------------------------------------------------


class LeadStageCount(db.Model):
    """How many leads sit in a stage, kept exact by triggers on ``leads`` (see :data:`STAGE_COUNT_DDL`).

    The home page sums a few dozen rows instead of counting a million leads. Every insert,
    delete and stage change of a lead, whatever path makes it (the ORM, the intake's Core
    inserts, ``seed-demo``, an erasure), adjusts the counts in the same transaction. On
    PostgreSQL each transaction adds to the shard of its transaction id, so concurrent
    enquiries update different rows and never wait on one another; the shards are summed.
    """

    __tablename__ = "lead_stage_counts"
    __table_args__ = {"sqlite_with_rowid": False}  # the key is the table: one page written per change, not two

    stage: Mapped[str] = mapped_column(String(24), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    leads: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)


#: Each change adds to (or takes from) its stage's count; an upsert, as a count row appears on first use.
#: On PostgreSQL the shard is the transaction id modulo 64, so concurrent transactions use different rows.
STAGE_COUNT_DDL = {
    "sqlite": [
        "CREATE TRIGGER leads_count_insert AFTER INSERT ON leads BEGIN "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (NEW.stage, 0, 1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads + 1; END",
        "CREATE TRIGGER leads_count_delete AFTER DELETE ON leads BEGIN "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (OLD.stage, 0, -1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads - 1; END",
        "CREATE TRIGGER leads_count_stage AFTER UPDATE OF stage ON leads WHEN OLD.stage IS NOT NEW.stage BEGIN "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (OLD.stage, 0, -1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads - 1; "
        "INSERT INTO lead_stage_counts (stage, shard, leads) VALUES (NEW.stage, 0, 1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = leads + 1; END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION lead_stage_count() RETURNS trigger AS $$ "
        "DECLARE slot integer := mod(txid_current(), 64)::integer; "
        "BEGIN "
        "IF TG_OP = 'UPDATE' AND OLD.stage IS NOT DISTINCT FROM NEW.stage THEN RETURN NULL; END IF; "
        "IF TG_OP IN ('UPDATE', 'DELETE') THEN "
        "INSERT INTO lead_stage_counts AS c (stage, shard, leads) VALUES (OLD.stage, slot, -1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = c.leads - 1; END IF; "
        "IF TG_OP IN ('UPDATE', 'INSERT') THEN "
        "INSERT INTO lead_stage_counts AS c (stage, shard, leads) VALUES (NEW.stage, slot, 1) "
        "ON CONFLICT (stage, shard) DO UPDATE SET leads = c.leads + 1; END IF; "
        "RETURN NULL; END; $$ LANGUAGE plpgsql",
        "CREATE TRIGGER leads_stage_count AFTER INSERT OR DELETE OR UPDATE OF stage ON leads "
        "FOR EACH ROW EXECUTE FUNCTION lead_stage_count()",
    ],
}


install_triggers(Lead.__table__, STAGE_COUNT_DDL)  # keep LeadStageCount exact


def stage_counts() -> dict[str, int]:
    """How many leads sit in each stage (every stage listed, zero included)."""
    rows = db.session.execute(select(LeadStageCount.stage, func.sum(LeadStageCount.leads))
                              .group_by(LeadStageCount.stage))
    counts = {str(stage): 0 for stage in Stage}
    counts.update({stage: int(total) for stage, total in rows})
    return counts


# --- alerts and the outbox -----------------------------------------------------------


class OutboxMessage(db.Model):
    """One message to send (an e-mail or a webhook POST), written in the transaction that caused it.

    The worker claims a due row by pushing ``next_attempt_at`` one lease ahead, sends it with
    its idempotency key, then marks it sent; a worker that dies mid-send leaves the row due
    again once the lease runs out. Subjects and bodies never hold PHI; a secret link (an
    invitation) is sealed under the primary master key and dropped once sent.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    channel: Mapped[str] = mapped_column(String(8))  # email | webhook
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str | None] = mapped_column(String(254))  # a staff address (webhooks: None)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lead_id: Mapped[str | None] = mapped_column(String(36))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Alert(db.Model):
    """An alert shown to one staff member in the app; ``key`` makes each alert happen once per person."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_alerts_user_key"),
        Index("ix_alerts_user_unread", "user_id", "read_at", "created_at"),
        Index("ix_alerts_lead_kind", "lead_id", "kind", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(32))
    round: Mapped[int] = mapped_column(Integer, default=0)  # repeats of an unacknowledged urgent alert
    lead_id: Mapped[str | None] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class AlertPreference(db.Model):
    """A staff member's choice to receive, or not, one kind of alert (no row: receive it)."""

    __tablename__ = "alert_preferences"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class OnCallMember(db.Model):
    """A staff member on the urgent-enquiry on-call list (an empty list means every admin)."""

    __tablename__ = "on_call_members"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    added_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class JobRun(db.Model):
    """A daily worker job: the clinic day it last started, and the lease of the worker running it.

    A worker takes the run by one conditional UPDATE (a new day, or an unfinished run whose
    lease ran out), so several workers or hosts never run it at once, and one that dies
    mid-run leaves the rest to whoever comes next.
    """

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[dt.date | None] = mapped_column(Date)
    holder: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# --- what each master key protects (key tooling and the start-up check) -------------


class KeyCheck(db.Model):
    """A key check value (a MAC of a constant) per key: a different keyring with the same ids is told apart."""

    __tablename__ = "key_checks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # master:<kid>, index, audit
    value: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


#: Columns holding small secrets sealed directly under a master key: (table, column, purpose).
SEALED_COLUMNS = (
    (User.__table__, User.__table__.c.totp_secret_sealed, "totp"),
    (OutboxMessage.__table__, OutboxMessage.__table__.c.secret_sealed, "outbox"),
    (EmergencyGrant.__table__, EmergencyGrant.__table__.c.reason_sealed, "break-glass"),
    (ReferringPractice.__table__, ReferringPractice.__table__.c.name_sealed, "referring-practice"),
)


def lead_key_counts() -> dict[int, int]:
    """How many lead data keys each master key wraps."""
    rows = db.session.execute(select(LeadKey.kid, func.count()).group_by(LeadKey.kid))
    return {kid: count for kid, count in rows}


def sealed_secret_counts() -> Counter[int]:
    """How many sealed secrets (TOTP seeds) each master key protects."""
    counts: Counter[int] = Counter()
    present = set(inspect(db.session.connection()).get_table_names())  # a database not yet upgraded
    for table, column, _purpose in SEALED_COLUMNS:
        if table.name not in present:
            continue
        for blob in db.session.scalars(select(column).where(column.is_not(None))):
            counts[crypto.sealed_kid(blob)] += 1
    return counts
