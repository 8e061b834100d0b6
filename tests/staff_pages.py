"""A realistic staff workspace for page-level browser tests: 2,000 demo leads, one lead with long values,
many attempts, an overdue callback and appointments, an erased lead, alerts, a failed message, every role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy import select

from crm.models import Insurance, Lead, OutboxMessage, Role, Stage, User, db, utcnow
from crm.operations import alerts as ops_alerts
from crm.operations import appointments as ops_appointments
from crm.operations import leads as ops_leads
from crm.operations import privacy as ops_privacy
from crm.operations import screening as ops_screening
from crm.operations import users as ops_users
from tests import screening

DEMO_LEADS = 2000
LONG_NOTE = ("Asked for the Spanish-speaking coordinator; works nights, so call only after 4 pm on weekdays. "
             "Her referral letter is at https://referrals.example.org/intake/2026/very-long-path-without-breaks"
             "-that-keeps-going/and-going?reference=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")


@dataclass
class Workspace:
    """Ids of the people and records the staff pages are filled from."""

    users: dict[str, User] = field(default_factory=dict)
    lead_id: str = ""
    demo_lead_id: str = ""
    erased_lead_id: str = ""
    invitation_token: str = ""


def build(app: Flask, runner, make_user) -> Workspace:
    """Seed the demo leads and the hand-made records; return their ids."""
    space = Workspace()
    for role in (Role.ADMIN, Role.COORDINATOR, Role.CLINICIAN, Role.MANAGER):
        space.users[role.value] = make_user(email=f"{role.value}@clinic.test", role=role,
                                            display_name=f"Alexandria-Maximiliana {role.value.title()} Worthington")
    space.users["coordinator2"] = make_user(email="second.coordinator@clinic.test", display_name="Sam Lee")
    result = runner.invoke(args=["seed-demo", "--leads", str(DEMO_LEADS), "--seed", "15"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        actors = {key: db.session.get(User, user.id) for key, user in space.users.items()}
        space.lead_id = _long_lead(actors)
        space.erased_lead_id = _erased_lead(actors["admin"])
        space.demo_lead_id = db.session.scalars(select(Lead.id).join(Insurance, Insurance.lead_id == Lead.id)
                                                .where(Lead.stage == Stage.SCHEDULED, Lead.id != space.lead_id)
                                                .order_by(Lead.id).limit(1)).one()
        _alerts_and_messages(actors, space.lead_id)
        _, space.invitation_token = ops_users.invite_user("new.hire@clinic.test", Role.COORDINATOR,
                                                                "Newly Invited Person", actors["admin"])
        db.session.commit()
    return space


def _long_lead(actors: dict[str, User]) -> str:
    """A lead with very long values, fourteen attempts, a screening, an appointment and an overdue callback."""
    coordinator, clinician = actors["coordinator"], actors["clinician"]
    now = utcnow()
    started = now - dt.timedelta(days=12)
    lead = Lead(first_name="Maria-Guadalupe Esperanza Concepción",
                last_name="Fernández-Villaseñor de la Cruz y Montenegro", phone="+1 949 555 0123",
                email="maria.guadalupe.esperanza.fernandez.villasenor@extremely-long-domain-name.example.com",
                dob=dt.date(1979, 11, 30), zip_code="92618", stage=Stage.NEW, assignee_id=coordinator.id,
                urgent=True, created_at=started, stage_changed_at=started, utm_source="google-ads-campaign-network",
                utm_medium="cpc-responsive-search", utm_campaign="spravato-orange-county-treatment-resistant-2026")
    db.session.add(lead)
    db.session.flush()
    for day in range(14):
        outcome = "reached" if day == 13 else "no_answer"
        ops_leads.log_attempt(lead, coordinator, "call", outcome, note=LONG_NOTE,
                              now=started + dt.timedelta(days=day % 12, hours=day))
    ops_leads.add_note(lead, coordinator, LONG_NOTE * 3)
    ops_screening.record_screening(lead, clinician, screening.PASSING, screening.PHQ_MODERATE, screening.NO_RISK,
                                   now=now - dt.timedelta(days=2))
    lead.stage = Stage.ELIGIBLE  # benefits verified by phone: the VOB form has its own tests
    ops_appointments.book(lead, coordinator, "consultation", now + dt.timedelta(hours=3), "clinic", clinician,
                          LONG_NOTE, now=now - dt.timedelta(days=1))
    ops_leads.schedule_callback(lead, coordinator, now - dt.timedelta(hours=5), now=now - dt.timedelta(days=1))
    db.session.flush()
    return lead.id


def _erased_lead(admin: User) -> str:
    """A lead crypto-shredded on request: its page is the tombstone."""
    lead = Lead(first_name="Erased", last_name="Person", phone="+1 714 555 0188", stage=Stage.CONTACTING)
    db.session.add(lead)
    db.session.flush()
    ops_privacy.erase_lead(lead, admin)
    return lead.id


def _alerts_and_messages(actors: dict[str, User], lead_id: str) -> None:
    """An urgent-enquiry alert for every admin, and an e-mail that failed after its last retry."""
    lead = db.session.get(Lead, lead_id)
    ops_alerts.urgent_enquiry(lead.id, lead.reference, utcnow(), "first")
    db.session.add(OutboxMessage(idempotency_key="failed-digest-1", channel="email", kind="digest",
                                 recipient=actors["coordinator"].email, user_id=actors["coordinator"].id,
                                 subject="Daily intake digest", body="Sign in to read it.", status="failed",
                                 attempts=8, last_error="SMTP 550 mailbox unavailable for this very long reason"))
