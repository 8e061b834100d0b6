"""Retention: a frozen clock shreds exactly the leads due, per reason; holds and patients stay; runs resume."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, update

from crm.models import AuditEvent, Lead, Stage, db
from crm.operations import retention
from tests.auth_helpers import audit_events
from tests.privacy_helpers import store_full_lead

T0 = dt.datetime(2024, 1, 10, 12, 0)


def lead_at(app, tag: str, **values) -> str:
    """A full lead whose times (and any given columns) are set to ``T0`` unless given."""
    lead = store_full_lead(app, tag, phone=f"(949) 555-01{len(tag):02d}", email=f"p{tag.lower()}@example.org")
    columns = {"created_at": T0, "updated_at": T0, "stage_changed_at": T0, **values}
    with app.app_context():
        db.session.execute(update(Lead).where(Lead.id == lead.id).values(**columns)
                           .execution_options(synchronize_session=False))
        db.session.commit()
    return lead.id


@pytest.fixture
def cohort(app) -> dict[str, str]:
    """One lead per case: due under each reason, just short of due, on legal hold, a recent patient."""
    return {
        "stale": lead_at(app, "S"),
        "recent": lead_at(app, "R", updated_at=T0 + dt.timedelta(days=400)),
        "duplicate": lead_at(app, "D", stage=Stage.CLOSED, stage_reason="duplicate"),
        "closed_other": lead_at(app, "CO", stage=Stage.CLOSED, stage_reason="cost",
                                stage_changed_at=T0 + dt.timedelta(days=300), updated_at=T0 + dt.timedelta(days=300)),
        "held": lead_at(app, "H", legal_hold_at=T0),
        "patient": lead_at(app, "P", stage=Stage.CONVERTED, stage_changed_at=T0 + dt.timedelta(days=200)),
        "old_patient": lead_at(app, "OP", stage=Stage.CONVERTED, stage_changed_at=T0 - dt.timedelta(days=2600)),
    }


def erased_ids(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Lead.id).where(Lead.erased_at.is_not(None))))


def test_dry_run_counts_per_reason_at_a_frozen_clock_and_changes_nothing(app, runner, cohort, time_machine):
    time_machine.move_to(T0 + dt.timedelta(days=89), tick=False)
    early = runner.invoke(args=["retention", "run", "--dry-run"])
    assert "duplicate: 0" in early.output and "converted handover: 1" in early.output
    time_machine.move_to(T0 + dt.timedelta(days=91), tick=False)
    result = runner.invoke(args=["retention", "run", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "duplicate: 1\nconverted handover: 1\nnever converted: 0\ntotal due: 2 (dry run" in result.output
    assert erased_ids(app) == set()
    assert audit_events(app, "retention_applied") == []


def test_run_shreds_exactly_the_due_leads_per_reason(app, runner, cohort, time_machine):
    time_machine.move_to(T0 + dt.timedelta(days=731), tick=False)
    result = runner.invoke(args=["retention", "run"])
    assert result.exit_code == 0, result.output
    summary = "duplicate: 1 shredded\nconverted handover: 1 shredded\nnever converted: 1 shredded\ntotal: 3"
    assert summary in result.output
    assert erased_ids(app) == {cohort["stale"], cohort["duplicate"], cohort["old_patient"]}
    with app.app_context():
        query = select(Lead.id, Lead.erasure_reason).where(Lead.erased_at.is_not(None))
        reasons = dict(db.session.execute(query).all())
        held = db.session.get(Lead, cohort["held"])
        assert held.first_name.startswith("Zebulonia") and db.session.get(Lead, cohort["patient"]).phone
    assert reasons == {cohort["stale"]: "retention_never_converted", cohort["duplicate"]: "retention_duplicate",
                       cohort["old_patient"]: "retention_converted_handover"}
    events = audit_events(app, "retention_applied")
    assert {e.actor_kind for e in events} == {"system"} and len(events) == 3
    verify = runner.invoke(args=["audit", "verify"])
    assert verify.exit_code == 0, verify.output
    time_machine.move_to(T0 + dt.timedelta(days=731 + 400), tick=False)
    later = runner.invoke(args=["retention", "run", "--dry-run"])
    assert "never converted: 2" in later.output  # the recent lead and the one closed for cost, never the held one


def test_a_rule_switched_off_shreds_nothing(app, runner, cohort, time_machine):
    app.config["RETENTION_CONVERTED_DAYS"] = None
    time_machine.move_to(T0 + dt.timedelta(days=731), tick=False)
    assert "converted handover: 0 shredded" in runner.invoke(args=["retention", "run"]).output
    assert cohort["old_patient"] not in erased_ids(app)


def test_an_interrupted_run_resumes_without_double_work(app, runner, monkeypatch, time_machine):
    ids = [lead_at(app, f"N{i}") for i in range(5)]
    time_machine.move_to(T0 + dt.timedelta(days=800), tick=False)
    real, calls = retention.shred_batch, []

    def crash_on_second(reason, lead_ids, now):
        calls.append(list(lead_ids))
        if len(calls) == 2:
            raise RuntimeError("power cut")
        real(reason, lead_ids, now)

    monkeypatch.setattr(retention, "shred_batch", crash_on_second)
    crashed = runner.invoke(args=["retention", "run", "--batch-size", "2"])
    assert crashed.exit_code != 0
    assert erased_ids(app) == set(calls[0])
    monkeypatch.setattr(retention, "shred_batch", real)
    resumed = runner.invoke(args=["retention", "run", "--batch-size", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert "never converted: 3 shredded" in resumed.output
    assert erased_ids(app) == set(ids)
    with app.app_context():
        batches = [e.details for e in db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "retention_applied").order_by(AuditEvent.seq))]
    shredded = [lead for details in batches for lead in json.loads(details)["leads"]]
    assert sorted(shredded) == sorted(ids)  # every lead shredded exactly once across both runs


def test_a_batch_is_the_configured_size_or_else_the_databases_own(app):
    with app.app_context():
        dialect = db.session.get_bind().dialect.name
        assert retention.batch_size() == {"sqlite": 200, "postgresql": 1000}[dialect]
        app.config["RETENTION_BATCH_SIZE"] = 50
        assert retention.batch_size() == 50


def test_the_command_shreds_in_batches_of_the_configured_size(app, runner, time_machine):
    ids = [lead_at(app, f"B{i}") for i in range(5)]
    app.config["RETENTION_BATCH_SIZE"] = 2
    time_machine.move_to(T0 + dt.timedelta(days=800), tick=False)
    assert runner.invoke(args=["retention", "run"]).exit_code == 0
    assert erased_ids(app) == set(ids)
    with app.app_context():
        sizes = [json.loads(e.details)["erased"] for e in db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "retention_applied").order_by(AuditEvent.seq))]
    assert sizes == [2, 2, 1]
