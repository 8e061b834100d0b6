"""Demo data for demos and benchmarks: realistic fake leads written through the real crypto.

Rows go in with batched Core inserts (one transaction per batch), so a million leads take
minutes, yet every value is encrypted exactly as the models do it: a random data key per
lead wrapped by the primary key, :meth:`Encrypted.encrypt_value` for each field and the
models' blind-index helpers. ``--seed`` makes the people, stages and answers repeatable;
data keys are always random and dates are relative to today.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import Connection, Table, select
from sqlalchemy.exc import IntegrityError

from .. import crypto, payers
from ..forms.public import BEST_TIMES, CONCERNS, CONTACT_METHODS, HEARD_ABOUT, INTERESTS, MEDS_TRIED
from ..models import (
    EXIT_REASONS,
    REFERENCE_ALPHABET,
    STEP_OF,
    Appointment,
    AppointmentKind,
    AppointmentPlace,
    AppointmentStatus,
    AttemptOutcome,
    Callback,
    Channel,
    ContactAttempt,
    CoverageType,
    Enquiry,
    Insurance,
    Lead,
    LeadEvent,
    LeadKey,
    LeadSource,
    Role,
    Stage,
    User,
    db,
    encrypted_columns,
    lead_blind_indexes,
    new_lead_key,
    table_row,
    utcnow,
)
from ..operations.practices import practice_id
from ..settings import is_production

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Sophia", "Mateo", "Isabella", "Ethan", "Mia", "Daniel", "Camila",
    "Lucas", "Ava", "Benjamin", "Valeria", "Jacob", "Emily", "Sebastian", "Abigail", "Julian", "Harper",
    "Gabriel", "Nguyen", "Minh", "Thao", "Linh", "Priya", "Arjun", "Hana", "Kenji", "Sara", "David",
    "Maria", "Jose", "Luis", "Carmen", "Rosa", "Patricia", "Robert", "Linda", "Michael", "Jennifer",
    "William", "Elizabeth", "James", "Susan", "Thomas", "Karen", "Christopher", "Nancy", "Andrew", "Grace",
)
LAST_NAMES = (
    "Garcia", "Nguyen", "Smith", "Martinez", "Tran", "Johnson", "Lopez", "Williams", "Hernandez", "Le",
    "Brown", "Gonzalez", "Pham", "Jones", "Rodriguez", "Kim", "Miller", "Perez", "Davis", "Sanchez",
    "Wilson", "Ramirez", "Anderson", "Torres", "Taylor", "Flores", "Thomas", "Rivera", "Moore", "Gomez",
    "Jackson", "Diaz", "Martin", "Reyes", "Lee", "Cruz", "Thompson", "Park", "White", "Patel",
    "Harris", "Chen", "Clark", "Huynh", "Lewis", "Vo", "Robinson", "Shah", "Walker", "Castillo",
)
AREA_CODES = ("949", "714", "562")
DOB_FROM = dt.date(1950, 1, 1)
DOB_SPAN_DAYS = (dt.date(2006, 1, 1) - DOB_FROM).days  # born 1950 to 2005
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
ZIP_CODES = (
    "92618", "92620", "92604", "92660", "92663", "92627", "92626", "92656", "92677", "92651", "92629",
    "92701", "92704", "92705", "92801", "92805", "92806", "92840", "92843", "92683", "92647", "92648",
    "90802", "90803", "90804", "90805", "90807", "90808", "90815", "90630", "90720", "90740",
)
#: Carrier name, member-id prefix, and the coverage types it sells here.
CARRIERS = (
    ("Aetna", "W", (CoverageType.PPO, CoverageType.HMO, CoverageType.MEDICARE)),
    ("Cigna", "U", (CoverageType.PPO, CoverageType.EPO)),
    ("Blue Shield of California", "XEA", (CoverageType.PPO, CoverageType.HMO, CoverageType.EPO)),
    ("Anthem Blue Cross", "XDL", (CoverageType.PPO, CoverageType.HMO, CoverageType.MEDICAID)),
    ("UnitedHealthcare", "9", (CoverageType.PPO, CoverageType.HMO, CoverageType.MEDICARE)),
    ("Health Net", "R", (CoverageType.HMO, CoverageType.PPO, CoverageType.MEDICAID)),
    ("TRICARE West (TriWest)", "TW", (CoverageType.VA_TRICARE,)),
)
COVERAGE_WEIGHTS = {
    CoverageType.PPO: 52, CoverageType.HMO: 10, CoverageType.EPO: 5, CoverageType.MEDICARE: 9,
    CoverageType.MEDICAID: 5, CoverageType.VA_TRICARE: 5, CoverageType.SELF_PAY: 8, CoverageType.NOT_SURE: 6,
}
SOURCE_WEIGHTS = {
    LeadSource.WEB_FORM: 55, LeadSource.PHONE: 14, LeadSource.REFERRAL: 15, LeadSource.FIND_A_CENTER: 6,
    LeadSource.PAYER_DIRECTORY: 4, LeadSource.VA_COMMUNITY_CARE: 3, LeadSource.OTHER: 3,
}
#: Demo referring practices; about one referral in eight names none.
DEMO_PRACTICES = ("Irvine Psychiatric Associates", "Newport Family Medicine", "Harbor Behavioral Health",
                  "Coastline Primary Care", "Saddleback Counseling Group", "Orange County VA Clinic")
UTM_CAMPAIGNS = (("google", "cpc", "spravato-oc"), ("bing", "cpc", "trd-irvine"), ("newsletter", "email", "spring"))
#: Share of leads in each stage, and how many days old a lead in it can be.
STAGE_MIX = {
    Stage.NEW: (10, 3), Stage.CONTACTING: (14, 14), Stage.CONTACTED: (8, 30), Stage.SCREENING: (8, 45),
    Stage.INSURANCE_REVIEW: (10, 60), Stage.ELIGIBLE: (6, 75), Stage.SCHEDULED: (6, 90),
    Stage.CONVERTED: (10, 90), Stage.INELIGIBLE: (8, 90), Stage.UNREACHABLE: (11, 90), Stage.CLOSED: (9, 90),
}
STAGE_WEIGHTS = {stage: weight for stage, (weight, _) in STAGE_MIX.items()}
PIPELINE = (Stage.NEW, Stage.CONTACTING, Stage.CONTACTED, Stage.SCREENING, Stage.INSURANCE_REVIEW,
            Stage.ELIGIBLE, Stage.SCHEDULED, Stage.CONVERTED)
NEEDS_CALLBACK = (Stage.CONTACTING, Stage.CONTACTED, Stage.SCREENING, Stage.INSURANCE_REVIEW)
VOB_DONE = (Stage.ELIGIBLE, Stage.SCHEDULED, Stage.CONVERTED)
NOTES = (
    "Left voicemail without clinical details.",
    "Asked for a call back after work.",
    "Wants to know the cost of Spravato with her plan.",
    "Referred by her therapist; records to follow.",
    "Prefers a text first.",
    "Spouse will drive to sessions.",
    "Has tried three antidepressants; interested in esketamine.",
    "Asked whether ketamine is covered by insurance.",
)
MESSAGES = (
    "I've tried several medications for depression and nothing has worked. Is Spravato an option for me?",
    "My psychiatrist mentioned esketamine. Do you take my insurance?",
    "Looking for information about ketamine therapy and costs.",
    "Please call me about starting treatment, mornings are best.",
    "",
)
#: Share of patients who tick the (optional) box agreeing to calls and texts
TEXT_CONSENT_SHARE = 0.8
#: Share of converted patients with a follow-up session booked in the coming two weeks
FOLLOW_UP_SHARE = 0.5
REFERENCE_SPACE = len(REFERENCE_ALPHABET) ** 8
REFERENCE_STEP = 2_654_435_761  # coprime with 31, so number -> reference is one-to-one (and looks random)


def _codes(choices: Any) -> tuple[str, ...]:
    """The stored codes of a form's choices (pairs or a mapping), without the empty placeholder."""
    return tuple(code for code in dict(choices) if code)


#: The public form's own answer codes, so demo enquiries look like real ones.
CHOICES = {
    name: _codes(choices)
    for name, choices in (("contact_method", CONTACT_METHODS), ("best_time", BEST_TIMES), ("interest", INTERESTS),
                          ("concerns", CONCERNS), ("meds_tried", MEDS_TRIED), ("heard_about", HEARD_ABOUT))
}
TABLES: tuple[Table, ...] = tuple(
    model.__table__ for model in (Lead, LeadKey, Enquiry, Insurance, ContactAttempt, LeadEvent, Callback, Appointment)
)


class DemoLeads:
    """Builds the rows of one fake lead at a time from one seeded random generator."""

    def __init__(self, seed: int, assignees: list[str], consent_version: str, clinicians: list[str] | None = None,
                 practices: dict[str, str] | None = None):
        self.rng = random.Random(seed)  # noqa: S311  (fake people, not secrets: data keys use os.urandom)
        self.referrals = random.Random(seed + 1)  # noqa: S311  (its own, so the people stay those of the seed)
        self.practices = list((practices or {}).items())  # practice id → name
        self.now = utcnow().replace(microsecond=0)
        self.assignees = assignees
        self.clinicians = clinicians or []
        self.consent_version = consent_version
        self.reference_offset = self.rng.randrange(REFERENCE_SPACE)

    def uid(self) -> str:
        """A UUID4 string from the seeded generator."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def reference(self, number: int) -> str:
        """A ``ABCD-EFGH`` reference, unique within one run."""
        value = (self.reference_offset + number * REFERENCE_STEP) % REFERENCE_SPACE
        chars = []
        for _ in range(8):
            value, digit = divmod(value, len(REFERENCE_ALPHABET))
            chars.append(REFERENCE_ALPHABET[digit])
        return f"{''.join(chars[:4])}-{''.join(chars[4:])}"

    def pick(self, weights: dict[Any, int]) -> Any:
        """One key of ``weights``, chosen in proportion to its weight."""
        return self.rng.choices(tuple(weights), weights=tuple(weights.values()))[0]

    def after(self, start: dt.datetime, max_hours: float) -> dt.datetime:
        """A moment up to ``max_hours`` after ``start``, never in the future."""
        return min(start + dt.timedelta(hours=self.rng.uniform(0.05, max_hours)), self.now)

    def person(self, number: int) -> dict[str, Any]:
        """Name, date of birth and contact details of one fictional patient (555 numbers, example.* mail)."""
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return {
            "first_name": first,
            "last_name": last,
            "dob": DOB_FROM + dt.timedelta(days=rng.randrange(DOB_SPAN_DAYS)),
            "phone": f"({rng.choice(AREA_CODES)}) 555-{rng.randrange(10_000):04d}",
            "email": f"{first}.{last}{number % 1000}@{rng.choice(EMAIL_DOMAINS)}".lower(),
            "zip_code": rng.choice(ZIP_CODES),
            "preferences": {
                "contact_method": rng.choice(CHOICES["contact_method"]),
                "best_time": rng.choice(CHOICES["best_time"]),
                "voicemail_ok": rng.random() < 0.7,
                "text_ok": rng.random() < 0.6,
            },
        }

    def rows(self, number: int) -> dict[Table, list[dict[str, Any]]]:
        """Every row of one lead, keyed by table."""
        lead_id, stage = self.uid(), self.pick(STAGE_WEIGHTS)
        created = self.now - dt.timedelta(days=self.rng.uniform(0, STAGE_MIX[stage][1]))
        cipher, key_row = new_lead_key(lead_id)
        assignee = self.rng.choice(self.assignees) if self.assignees and stage != Stage.NEW else None
        person = self.person(number)
        coverage = self.pick(COVERAGE_WEIGHTS)
        lead = self.lead_row(lead_id, number, stage, created, assignee, person, cipher)
        texts = self.rng.random() < TEXT_CONSENT_SHARE
        attempts = self.attempt_rows(lead, cipher, texts)
        events = self.event_rows(lead, cipher)
        appointments = self.appointment_rows(lead, cipher)
        events += [self.event(lead, "appointment", a["created_at"], None, None, reason="booked") for a in appointments]
        return {
            Lead.__table__: [lead],
            LeadKey.__table__: [{**key_row, "wrapped_at": created}],
            Enquiry.__table__: [self.enquiry_row(lead, person, coverage, cipher, texts)],
            Insurance.__table__: self.insurance_rows(lead, coverage, cipher),
            ContactAttempt.__table__: attempts,
            LeadEvent.__table__: events,
            Callback.__table__: self.callback_rows(lead),
            Appointment.__table__: appointments,
        }

    def lead_row(self, lead_id: str, number: int, stage: Stage, created: dt.datetime, assignee: str | None,
                 person: dict[str, Any], cipher: crypto.FieldCipher) -> dict[str, Any]:
        """The ``leads`` row: workflow columns plain, PHI encrypted, blind indexes computed."""
        rng = self.rng
        source = self.pick(SOURCE_WEIGHTS)
        utm = rng.choice(UTM_CAMPAIGNS) if source == LeadSource.WEB_FORM and rng.random() < 0.5 else (None,) * 3
        urgent = rng.random() < 0.03
        acknowledged = urgent and assignee is not None and rng.random() < 0.8
        return table_row(
            Lead, id=lead_id, reference=self.reference(number), stage=stage,
            stage_reason=rng.choice(EXIT_REASONS[stage]) if stage in EXIT_REASONS else None,
            source=source, utm_source=utm[0], utm_medium=utm[1], utm_campaign=utm[2],
            urgent=urgent, acknowledged_by=assignee if acknowledged else None,
            acknowledged_at=self.after(created, 0.5) if acknowledged else None,
            assignee_id=assignee, created_at=created, updated_at=created, stage_changed_at=created,
            marketing_consent=rng.random() < 0.3,
            **lead_blind_indexes(person["phone"], person["email"], person["last_name"], person["dob"]),
            **self.referral(lead_id, source, cipher),
            **encrypted_columns(Lead, lead_id, cipher, **person),
        )

    def referral(self, lead_id: str, source: str, cipher: crypto.FieldCipher) -> dict[str, Any]:
        """A referral's practice (most name one of the demo practices) and its encrypted details."""
        if source != LeadSource.REFERRAL or not self.practices or self.referrals.random() < 0.125:
            return {"referring_practice_id": None, "source_details_enc": None}  # every row of a batch has both
        practice_id, name = self.referrals.choice(self.practices)
        details = {"referrer_name": f"Dr {self.referrals.choice(LAST_NAMES)}", "referrer_practice": name}
        return {"referring_practice_id": practice_id,
                **encrypted_columns(Lead, lead_id, cipher, source_details=details)}

    def enquiry_row(self, lead: dict[str, Any], person: dict[str, Any], coverage: CoverageType,
                    cipher: crypto.FieldCipher, texts: bool = True) -> dict[str, Any]:
        """The public-form submission that created the lead, with answers and consent."""
        rng, enquiry_id = self.rng, self.uid()
        answers = {
            "interest": rng.choice(CHOICES["interest"]),
            "concerns": sorted({rng.choice(CHOICES["concerns"]) for _ in range(rng.randint(1, 2))}),
            "meds_tried": rng.choice(CHOICES["meds_tried"]),
            "has_psychiatrist": rng.choice(("yes", "no")),
            "heard_about": rng.choice(CHOICES["heard_about"]),
            "veteran": "yes" if lead["source"] == LeadSource.VA_COMMUNITY_CARE else "no",
            "need_help_now": "yes" if lead["urgent"] else "no",
            "coverage_type": str(coverage),
            "message": rng.choice(MESSAGES),
            "submitted": {**{k: v for k, v in person.items() if k != "preferences"},
                          "dob": person["dob"].isoformat()},
        }
        return {
            "id": enquiry_id, "lead_id": lead["id"], "received_at": lead["created_at"],
            "idempotency_digest": None, "crisis": lead["urgent"], "consent_version": self.consent_version,
            "consented_at": lead["created_at"], "privacy_ack": True, "marketing_consent": lead["marketing_consent"],
            "contact_consent": texts,
            **encrypted_columns(Enquiry, enquiry_id, cipher, answers=answers,
                      consent_ip=f"203.0.113.{rng.randrange(1, 255)}"),
        }

    def insurance_rows(self, lead: dict[str, Any], coverage: CoverageType,
                       cipher: crypto.FieldCipher) -> list[dict[str, Any]]:
        """The coverage the patient gave and, past insurance review, the verification of benefits."""
        if coverage in (CoverageType.SELF_PAY, CoverageType.NOT_SURE):
            return []
        rng, insurance_id = self.rng, self.uid()
        carrier, prefix, _ = rng.choice([c for c in CARRIERS if coverage in c[2]] or CARRIERS)
        holder = rng.random() < 0.85
        done = lead["stage"] in VOB_DONE
        verified_at = self.after(lead["created_at"], 72) if done else None
        policyholder = None if holder else {
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "dob": (dt.date(1945, 1, 1) + dt.timedelta(days=rng.randrange(21_000))).isoformat(),
            "relationship": rng.choice(("spouse", "parent", "other")),
        }
        return [{
            "id": insurance_id, "lead_id": lead["id"], "created_at": lead["created_at"],
            "coverage_type": coverage, "patient_is_policyholder": holder,
            "vob_status": "complete" if done else "in_progress" if lead["stage"] == Stage.INSURANCE_REVIEW
            else "not_started",
            "vob_outcome": "covered_with_pa" if done else None,
            "pa_status": "approved" if lead["stage"] in (Stage.SCHEDULED, Stage.CONVERTED) else None,
            "pa_submitted_at": verified_at if lead["stage"] in (Stage.SCHEDULED, Stage.CONVERTED) else None,
            "pa_decided_at": self.after(verified_at, 240) if verified_at and lead["stage"] in (
                Stage.SCHEDULED, Stage.CONVERTED) else None,
            "payer": payers.classify(carrier),
            "pa_units": None, "pa_start": None, "pa_end": None,
            "verified_by": lead["assignee_id"] if done else None, "verified_at": verified_at,
            **encrypted_columns(Insurance, insurance_id, cipher, carrier=carrier,
                      member_id=f"{prefix}{rng.randrange(10**8, 10**9)}",
                      group_number=f"{rng.randrange(10**5, 10**6)}", policyholder=policyholder,
                      benefits=self.benefits() if done else None, pa_auth_number=None),
        }]

    def benefits(self) -> dict[str, Any]:
        """A plausible verification-of-benefits result."""
        rng = self.rng
        deductible = rng.choice((500, 1000, 1500, 2500, 3000))
        return {
            "network": rng.choice(("in_network", "out_of_network")),
            "deductible": deductible, "deductible_met": rng.randrange(0, deductible + 1, 50),
            "coinsurance_pct": rng.choice((0, 10, 20, 30)), "oop_max": rng.choice((4000, 6000, 8700)),
            "pa_required": rng.random() < 0.8, "reference": f"VOB{rng.randrange(10**7, 10**8)}",
        }

    def attempt_rows(self, lead: dict[str, Any], cipher: crypto.FieldCipher,
                     texts: bool = True) -> list[dict[str, Any]]:
        """Calls, texts (only to a patient who agreed) and e-mails so far; reached once the lead has been contacted."""
        stage, rng = lead["stage"], self.rng
        if stage == Stage.NEW:
            return []
        reached = stage not in (Stage.CONTACTING, Stage.UNREACHABLE)
        count = rng.randint(6, 8) if stage == Stage.UNREACHABLE else rng.randint(1, 4)
        rows, at = [], lead["created_at"]
        channels = (Channel.CALL, Channel.CALL, Channel.TEXT, Channel.EMAIL) if texts else (
            Channel.CALL, Channel.CALL, Channel.EMAIL)
        for index in range(count):
            at = self.after(at, 30)
            last = index == count - 1
            outcome = AttemptOutcome.REACHED if reached and last else rng.choice(
                (AttemptOutcome.NO_ANSWER, AttemptOutcome.VOICEMAIL, AttemptOutcome.CALL_LATER))
            attempt_id = self.uid()
            note = rng.choice(NOTES) if rng.random() < 0.4 else None
            rows.append({
                "id": attempt_id, "lead_id": lead["id"], "user_id": lead["assignee_id"], "at": at,
                "channel": rng.choice(channels),
                "outcome": outcome, **encrypted_columns(ContactAttempt, attempt_id, cipher, note=note),
            })
        lead.update(first_attempt_at=rows[0]["at"], attempt_count=count, updated_at=at,
                    first_contact_at=at if reached else None)
        return rows

    def path(self, stage: Stage) -> list[Stage]:
        """The stages a lead passed through to reach ``stage``, along allowed moves."""
        if stage in PIPELINE:
            return list(PIPELINE[: PIPELINE.index(stage) + 1])
        if stage == Stage.UNREACHABLE:
            return [Stage.NEW, Stage.CONTACTING, stage]
        return [*PIPELINE[: self.rng.randint(3, 6)], stage]

    def event_rows(self, lead: dict[str, Any], cipher: crypto.FieldCipher) -> list[dict[str, Any]]:
        """The timeline: created, each stage change (exits with their reason) and the odd note."""
        stages, at = self.path(lead["stage"]), lead["created_at"]
        rows = [self.event(lead, "created", at, None, Stage.NEW)]
        for source, target in zip(stages, stages[1:], strict=False):
            at = self.after(at, 72)
            rows.append(self.event(lead, "stage_changed", at, source, target))
        rows[-1]["reason"] = lead["stage_reason"]
        lead["reached_step"] = max(STEP_OF.get(stage, 0) for stage in stages)
        if self.rng.random() < 0.3:
            rows.append(self.event(lead, "note", self.after(at, 24), None, None,
                                   self.rng.choice(NOTES), cipher))
        lead["stage_changed_at"] = at
        return rows

    def event(self, lead: dict[str, Any], kind: str, at: dt.datetime, source: Stage | None,
              target: Stage | None, body: str | None = None,
              cipher: crypto.FieldCipher | None = None, reason: str | None = None) -> dict[str, Any]:
        """One ``lead_events`` row."""
        event_id = self.uid()
        blob = {} if body is None else encrypted_columns(LeadEvent, event_id, cipher, body=body)
        actor = lead["assignee_id"] if kind != "created" else None
        return table_row(LeadEvent, id=event_id, lead_id=lead["id"], at=at, actor_id=actor, kind=kind,
                         from_stage=source, to_stage=target, reason=reason, **blob)

    def appointment_rows(self, lead: dict[str, Any], cipher: crypto.FieldCipher) -> list[dict[str, Any]]:
        """Visits of scheduled and converted leads: a booked consultation or first treatment ahead for a
        scheduled one; for a converted one both attended, the first treatment's date, and often a
        booked follow-up session."""
        stage, rng = lead["stage"], self.rng
        if not self.clinicians or stage not in (Stage.SCHEDULED, Stage.CONVERTED):
            return []
        booked_at = lead["stage_changed_at"]
        if stage == Stage.SCHEDULED:
            kind = rng.choice((AppointmentKind.CONSULTATION, AppointmentKind.REMS_FIRST_TREATMENT))
            return [self.appointment(lead, kind, self.ahead(), AppointmentStatus.BOOKED, booked_at)]
        consult = self.after(lead["created_at"], 24 * 20)
        first = self.after(consult, 24 * 10)
        lead.update(encrypted_columns(Lead, lead["id"], cipher, first_treatment_on=first.date()))
        rows = [self.appointment(lead, AppointmentKind.CONSULTATION, consult, AppointmentStatus.ATTENDED, booked_at),
                self.appointment(lead, AppointmentKind.REMS_FIRST_TREATMENT, first, AppointmentStatus.ATTENDED,
                                 booked_at)]
        if rng.random() < FOLLOW_UP_SHARE:
            rows.append(self.appointment(lead, AppointmentKind.OTHER, self.ahead(), AppointmentStatus.BOOKED,
                                         booked_at))
        return rows

    def ahead(self) -> dt.datetime:
        """A visit time in the coming two weeks, on the quarter hour."""
        at = self.now + dt.timedelta(minutes=self.rng.randrange(30, 14 * 24 * 60))
        return at.replace(minute=at.minute - at.minute % 15, second=0)

    def appointment(self, lead: dict[str, Any], kind: str, starts_at: dt.datetime, status: str,
                    booked_at: dt.datetime) -> dict[str, Any]:
        """One ``appointments`` row, without notes."""
        rng = self.rng
        booked_at = min(booked_at, starts_at)
        place = (AppointmentPlace.CLINIC if kind != AppointmentKind.CONSULTATION or rng.random() < 0.5
                 else AppointmentPlace.TELEHEALTH)
        return table_row(Appointment, id=self.uid(), lead_id=lead["id"], kind=kind, starts_at=starts_at, place=place,
                         clinician_id=rng.choice(self.clinicians), status=status, created_by=lead["assignee_id"],
                         created_at=booked_at, updated_at=booked_at)

    def callback_rows(self, lead: dict[str, Any]) -> list[dict[str, Any]]:
        """An open callback for leads still being worked (some already overdue)."""
        if lead["stage"] not in NEEDS_CALLBACK:
            return []
        due = self.now + dt.timedelta(hours=self.rng.uniform(-24, 72))
        lead["next_callback_at"] = due
        return [{"id": self.uid(), "lead_id": lead["id"], "assignee_id": lead["assignee_id"], "due_at": due,
                 "created_by": lead["assignee_id"], "created_at": lead["updated_at"], "done_at": None}]


def _coordinators() -> list[str]:
    """Ids of active coordinators, the people demo leads are assigned to."""
    return _staff(Role.COORDINATOR)


def _staff(role: Role) -> list[str]:
    """Ids of active staff with ``role``, in a stable order."""
    query = select(User.id).where(User.role == role, User.is_active_flag.is_(True)).order_by(User.id)
    return list(db.session.scalars(query))


def _demo_practices() -> dict[str, str]:
    """The demo referring practices, recorded once: id → name."""
    ids = {practice_id({"referrer_practice": name}): name for name in DEMO_PRACTICES}
    db.session.commit()
    return ids


def _insert_batch(conn: Connection, factory: DemoLeads, start: int, stop: int) -> None:
    """Build and insert leads ``start..stop-1`` in one transaction."""
    batch: dict[Table, list[dict[str, Any]]] = {table: [] for table in TABLES}
    for number in range(start, stop):
        for table, rows in factory.rows(number).items():
            batch[table].extend(rows)
    with conn.begin():
        for table in TABLES:
            if batch[table]:
                conn.execute(table.insert(), batch[table])


@contextmanager
def _bulk_connection() -> Iterator[Connection]:
    """A connection tuned for bulk loading: on SQLite a large page cache and fsync at checkpoints only.

    Demo rows lost to a power cut can simply be seeded again; the settings end with the command.
    """
    with db.engine.connect() as conn:
        # the driver connection runs in autocommit, where SQLite allows these pragmas
        sqlite = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if sqlite:
            sqlite.execute("PRAGMA cache_size = -131072")
            sqlite.execute("PRAGMA synchronous = NORMAL")
        try:
            yield conn
        finally:
            if sqlite:
                conn.rollback()
                sqlite.execute("PRAGMA synchronous = FULL")
                sqlite.execute("PRAGMA cache_size = -2000")


@click.command("seed-demo")
@click.option("--leads", "count", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=int, default=None, help="Repeat the same people and stages.")
@click.option("--batch-size", type=click.IntRange(1, 50_000), default=5_000, show_default=True)
@click.option("--force", is_flag=True, help="Allow seeding in production mode.")
@with_appcontext
def seed_demo(count: int, seed: int | None, batch_size: int, force: bool) -> None:
    """Create realistic fake leads with enquiries, insurance, attempts, callbacks, timelines and, when the
    clinic has clinicians, appointments."""
    if is_production(current_app) and not force:
        raise click.ClickException("refusing to add demo leads in production mode; pass --force if you mean it")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    factory = DemoLeads(seed, _coordinators(), current_app.config["CONSENT_VERSION"], _staff(Role.CLINICIAN),
                        _demo_practices())
    db.session.rollback()
    click.echo(f"Seeding {count} demo leads (seed {seed}).")
    started = time.perf_counter()
    with _bulk_connection() as conn:
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            try:
                _insert_batch(conn, factory, start, stop)
            except IntegrityError:
                raise click.ClickException(f"this database already holds demo leads made with seed {seed}; "
                                           "choose another --seed") from None
            rate = stop / max(time.perf_counter() - started, 1e-9)
            click.echo(f"  {stop}/{count} leads ({rate:,.0f}/s)")
