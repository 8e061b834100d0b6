"""The home page's stage counts stay exact through every path that adds, moves or removes a lead."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select

from crm.leads import queries
from crm.models import Lead, LeadStageCount, Role, Stage, db
from crm.operations import leads as ops
from tests.test_public_form import submit


def counted(app) -> dict[str, int]:
    """The counts as the home page reads them."""
    with app.app_context():
        counts = queries.stage_counts()
        db.session.rollback()
        return counts


def actual(app) -> dict[str, int]:
    """The counts by counting every lead (what the table must always equal)."""
    with app.app_context():
        counts = {str(stage): 0 for stage in Stage}
        counts.update(dict(db.session.execute(select(Lead.stage, func.count()).group_by(Lead.stage)).all()))
        db.session.rollback()
        return counts


def test_counts_follow_intake_stage_moves_reopening_and_deletion(app, client, make_user, make_lead):
    user = make_user(role=Role.COORDINATOR)
    assert submit(client, app).status_code == 303
    make_lead(stage=Stage.CONTACTED)
    make_lead(stage=Stage.CLOSED, stage_reason="cost", phone="+1 415 555 0199", dob=dt.date(1990, 1, 2))
    assert counted(app) == actual(app)
    assert counted(app)["new"] == 1 and counted(app)["contacted"] == 1 and counted(app)["closed"] == 1
    with app.app_context():
        lead = db.session.scalars(select(Lead).where(Lead.stage == Stage.NEW)).one()
        ops.move_stage(lead, Stage.CONTACTING, None, db.session.get(type(user), user.id))
        db.session.commit()
    assert counted(app)["new"] == 0 and counted(app)["contacting"] == 1
    assert counted(app) == actual(app)
    with app.app_context():
        db.session.execute(delete(Lead).where(Lead.stage == Stage.CONTACTED))
        db.session.commit()
    assert counted(app)["contacted"] == 0
    assert counted(app) == actual(app)


def test_a_returning_patient_reopening_a_closed_lead_moves_the_count(app, client, make_lead):
    assert submit(client, app).status_code == 303
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        lead.set_stage(Stage.CLOSED, "cost", lead.created_at)
        db.session.commit()
    assert counted(app)["closed"] == 1
    assert submit(client, app).status_code == 303  # the same patient writes again: reopened
    assert counted(app)["closed"] == 0 and counted(app)["contacting"] == 1
    assert counted(app) == actual(app)


def test_a_rolled_back_change_leaves_the_counts_alone(app, make_lead):
    lead_id = make_lead()
    with app.app_context():
        db.session.get(Lead, lead_id).set_stage(Stage.CONTACTING, None, db.session.get(Lead, lead_id).created_at)
        db.session.flush()
        db.session.rollback()
    assert counted(app)["new"] == 1 and counted(app)["contacting"] == 0


def test_seed_demo_keeps_the_counts_exact(app, runner):
    result = runner.invoke(args=["seed-demo", "--leads", "300", "--seed", "4", "--batch-size", "70"])
    assert result.exit_code == 0, result.output
    assert counted(app) == actual(app)
    assert sum(counted(app).values()) == 300
    with app.app_context():
        rows = db.session.scalar(select(func.count()).select_from(LeadStageCount))
    assert rows <= len(Stage) * 64  # a handful of rows, whatever the number of leads
