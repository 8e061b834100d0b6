"""The stage pipeline under random sequences of coordinator actions (Hypothesis stateful test).

The machine keeps its own model of what each action should do and checks the operations
against it: a move happens exactly when the graph, the reason rules and the eligibility
prerequisites allow it; every refused move leaves the lead untouched; the recorded history
only ever contains legal moves, each audited once.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from crm import cadence
from crm.models import (
    EXIT_REASONS,
    EXIT_STAGES,
    OPEN_STAGES,
    REOPEN_REASONS,
    REOPENABLE_STAGES,
    AttemptOutcome,
    AuditEvent,
    Channel,
    ConsentRecord,
    Lead,
    LeadEvent,
    Role,
    Screening,
    Stage,
    User,
    allowed_moves,
    db,
    move_needs_reason,
)
from crm.operations import insurance as ops_insurance
from crm.operations import leads as ops
from crm.operations import screening as ops_screening
from tests.screening import NO_RISK, PASSING, PHQ_MODERATE

ALL_REASONS = sorted({r for reasons in EXIT_REASONS.values() for r in reasons} | set(REOPEN_REASONS))
SCREENS = {"eligible": {}, "needs_review": {"caution_bp": "yes"}, "ineligible": {"transport": "no"}}


def vob_data(status: str, coverage: str) -> dict:
    """A minimal verification of benefits."""
    return {"coverage_type": coverage, "vob_status": status,
            "vob_outcome": "in_network_no_pa" if status == "verified" else None, "pa_status": None,
            "pa_units": None, "pa_start": None, "pa_end": None, "carrier": None, "member_id": None,
            "group_number": None, "pa_auth_number": None, "policyholder": {}, "benefits": {},
            "patient_is_policyholder": None}


def reason_is_valid(source: Stage, target: Stage, reason: str | None) -> bool:
    """The model's own statement of the reason rule."""
    if not move_needs_reason(source, target):
        return True
    return reason in (REOPEN_REASONS if source in REOPENABLE_STAGES else EXIT_REASONS[target])


class Pipeline(RuleBasedStateMachine):
    """One lead driven by random actions, checked against a model."""

    def __init__(self, app, coordinator_id: str, clinician_id: str):
        super().__init__()
        self.ctx = app.app_context()
        self.ctx.push()
        self.actor = db.session.get(User, coordinator_id)
        self.clinician = db.session.get(User, clinician_id)
        self.lead = Lead(first_name="Pipe", last_name="Line")
        db.session.add(self.lead)  # consent taken on the phone, so every channel may be tried
        db.session.add(ConsentRecord(lead=self.lead, method="verbal", wording_version=app.config["CONSENT_VERSION"],
                                     taken_by=coordinator_id))
        db.session.commit()
        self.stage = Stage.NEW
        self.screen: str | None = None
        self.signed = False
        self.benefits_done = False

    def teardown(self) -> None:
        db.session.rollback()
        self.ctx.pop()

    def _run(self, action, expect_ok: bool) -> bool:
        """Commit like a view on success, roll back on a refused rule; the outcome must match the model."""
        try:
            action()
        except ValueError:
            db.session.rollback()
            assert not expect_ok, "the operation refused a move the model allows"
            assert self.lead.stage == self.stage, "a refused action changed the stage"
            return False
        db.session.commit()
        assert expect_ok, "the operation allowed a move the model refuses"
        return True

    def _ready(self) -> bool:
        passed = self.screen == "eligible" or self.screen == "needs_review" and self.signed
        return passed and self.benefits_done

    @rule(to=st.sampled_from(list(Stage)), reason=st.one_of(st.none(), st.sampled_from(ALL_REASONS)))
    def move(self, to: Stage, reason: str | None) -> None:
        legal = (to in allowed_moves(self.stage) and reason_is_valid(self.stage, to, reason)
                 and (to != Stage.ELIGIBLE or self._ready()))
        if self._run(lambda: ops.move_stage(self.lead, to, reason, self.actor), legal):
            self.stage = to

    @rule(to=st.sampled_from([*EXIT_STAGES, Stage.CONTACTING]))
    def exit_or_reopen_without_reason(self, to: Stage) -> None:
        if to in allowed_moves(self.stage) and move_needs_reason(self.stage, to):
            self._run(lambda: ops.move_stage(self.lead, to, None, self.actor), False)
            self._run(lambda: ops.move_stage(self.lead, to, "", self.actor), False)

    @rule(channel=st.sampled_from(list(Channel)), outcome=st.sampled_from(list(AttemptOutcome)))
    def attempt(self, channel: Channel, outcome: AttemptOutcome) -> None:
        expected = self.stage
        live = outcome in cadence.RULES["live_outcomes"]
        if live and self.stage in (Stage.NEW, Stage.CONTACTING):
            expected = Stage.CONTACTED
        elif not live and self.stage == Stage.NEW:
            expected = Stage.CONTACTING
        if self._run(lambda: ops.log_attempt(self.lead, self.actor, channel, outcome), self.stage in OPEN_STAGES):
            self.stage = expected
            assert self.lead.stage == expected

    @rule(kind=st.sampled_from(sorted(SCREENS)))
    def screen_lead(self, kind: str) -> None:
        answers = {**PASSING, **SCREENS[kind]}
        action = lambda: ops_screening.record_screening(self.lead, self.actor, answers, PHQ_MODERATE, NO_RISK)  # noqa: E731
        if self._run(action, self.stage in OPEN_STAGES):
            self.screen, self.signed = kind, False

    @rule()
    def sign_off_latest(self) -> None:
        latest = db.session.scalars(select(Screening).where(Screening.lead_id == self.lead.id)
                                    .order_by(Screening.performed_at.desc())).first()
        if latest is not None:
            action = lambda: ops_screening.sign_off(latest, self.clinician, "eligible", "Reviewed")  # noqa: E731
            if self._run(action, not self.signed):
                self.signed = True

    @rule(status=st.sampled_from(["in_progress", "verified"]), coverage=st.sampled_from(["ppo", "self_pay"]))
    def verify_benefits(self, status: str, coverage: str) -> None:
        action = lambda: ops_insurance.record_vob(self.lead, self.actor, vob_data(status, coverage))  # noqa: E731
        if self._run(action, self.stage in OPEN_STAGES):
            self.benefits_done = status == "verified" or coverage == "self_pay"

    @invariant()
    def stage_is_known_and_matches_model(self) -> None:
        assert Stage(self.lead.stage) == self.stage

    @invariant()
    def history_holds_only_legal_audited_moves(self) -> None:
        events = list(db.session.scalars(select(LeadEvent).where(
            LeadEvent.lead_id == self.lead.id, LeadEvent.kind == "stage_changed").order_by(LeadEvent.at)))
        current = Stage.NEW
        for event in events:
            source, target = Stage(event.from_stage), Stage(event.to_stage)
            assert source == current and target in allowed_moves(source)
            assert reason_is_valid(source, target, event.reason)
            assert (event.reason is not None) == move_needs_reason(source, target)
            current = target
        audited = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "stage_changed", AuditEvent.object_id == self.lead.id))
        assert audited == len(events)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_pipeline_never_reaches_an_invalid_stage(app, make_user):
    coordinator = make_user()
    clinician = make_user(role=Role.CLINICIAN)
    run_state_machine_as_test(lambda: Pipeline(app, coordinator.id, clinician.id),
                              settings=settings(stateful_step_count=25))
