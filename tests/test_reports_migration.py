"""Migration 0007 backfills each existing lead's furthest pipeline step from its stage and history."""

from __future__ import annotations

from sqlalchemy import text

from crm.models import db
from tests.test_migrations import BACKENDS, fresh  # noqa: F401  (the fixture)

assert BACKENDS  # the same SQLite and PostgreSQL parameters as the other migration tests

LEADS = [  # id, stage, the stages its history passed through, expected reached_step
    ("a", "contacted", ["contacting", "contacted"], 2),
    ("b", "ineligible", ["contacting", "contacted", "screening", "ineligible"], 3),
    ("c", "contacting", ["contacting", "contacted", "insurance_review", "closed", "contacting"], 3),  # reopened
    ("d", "converted", [], 6),  # history lost: the stage alone
    ("e", "new", [], 0),
]


def test_upgrade_backfills_the_furthest_step_reached(fresh):  # noqa: F811
    runner = fresh.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0002"]).exit_code == 0
    with fresh.app_context():
        for lead_id, stage, history, _step in LEADS:
            db.session.execute(text(
                "INSERT INTO leads (id, reference, stage, source, urgent, created_at, updated_at, stage_changed_at, "
                "attempt_count, marketing_consent) VALUES (:id, :id, :stage, 'web_form', false, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, false)"), {"id": lead_id, "stage": stage})
            for n, target in enumerate(history):
                db.session.execute(text(
                    "INSERT INTO lead_events (id, lead_id, at, kind, to_stage) "
                    "VALUES (:id, :lead, CURRENT_TIMESTAMP, 'stage_changed', :to)"),
                    {"id": f"{lead_id}{n}", "lead": lead_id, "to": target})
        db.session.commit()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with fresh.app_context():
        steps = dict(db.session.execute(text("SELECT id, reached_step FROM leads")).all())
    assert steps == {lead_id: step for lead_id, _stage, _history, step in LEADS}
