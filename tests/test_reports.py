"""Reports over HTTP on hand-built leads: each figure against a count made by hand, scopes, PHI, audit, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import time_machine
from sqlalchemy import select

from crm.models import Callback, Insurance, Lead, Role, Stage, User, db
from crm.operations import leads as ops
from tests import sentinels
from tests.auth_helpers import audit_events
from tests.conftest import phi_sentinels_in
from tests.test_report_definitions import utc

NOW = utc("2026-03-04 12:00")  # a Wednesday; "this week" is Monday March 2 to today
TABLES = ("funnel", "exits", "speed", "speed_distribution", "sources", "payers", "coordinators", "trend")
MIN = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW.replace(tzinfo=dt.UTC), tick=False):
        yield


@pytest.fixture
def people(make_user):
    return {"c1": make_user(display_name="Casey", role=Role.COORDINATOR),
            "c2": make_user(display_name="Robin", role=Role.COORDINATOR),
            "manager": make_user(display_name="Morgan", role=Role.MANAGER),
            "admin": make_user(display_name="Ada", role=Role.ADMIN)}


def _lead(people, key, created, *, stage, reached, source="web_form", who=None, attempt=None, contact=None,
          attempts=0, reason=None, insurance=None):
    lead = Lead(first_name=sentinels.FIRST_NAME, last_name=sentinels.LAST_NAME, phone=sentinels.PHONE,
                email=sentinels.EMAIL, stage=stage, stage_reason=reason, reached_step=reached, source=source,
                assignee_id=people[who].id if who else None, created_at=created,
                first_attempt_at=created + attempt if attempt else None,
                first_contact_at=created + contact if contact else None, attempt_count=attempts)
    db.session.add(lead)
    if insurance:
        coverage, carrier, verified_after, pa = insurance
        ins = Insurance(lead=lead, coverage_type=coverage, carrier=carrier, member_id=sentinels.MEMBER_ID,
                        created_at=created, verified_at=created + verified_after if verified_after else None)
        if pa:
            status, submitted_after, decided_after = pa
            ins.pa_status, ins.pa_submitted_at, ins.pa_decided_at = (status, created + submitted_after,
                                                                     created + decided_after)
        db.session.add(ins)
    return lead


@pytest.fixture
def clinic(app, people):
    """Six leads this week (one a merged duplicate, one reopened), one last month, two callbacks.

    A converted in 3 min; B ineligible, tried at 10 min; C arrived Monday 20:00 (outside hours),
    tried Tuesday 08:30; D untouched; E closed as a duplicate (not counted); F reached screening,
    was closed and reopened; G came in February.
    """
    day, hour = dt.timedelta(days=1), dt.timedelta(hours=1)
    with app.app_context():
        _lead(people, "A", utc("2026-03-02 09:00"), stage=Stage.CONVERTED, reached=6, who="c1", attempt=3 * MIN,
              contact=3 * MIN, attempts=1,
              insurance=("ppo", "Aetna PPO", 24 * hour, ("approved", 1 * day, 3 * day)))
        _lead(people, "B", utc("2026-03-02 10:00"), stage=Stage.INELIGIBLE, reason="under_18", reached=3, who="c1",
              attempt=10 * MIN, contact=20 * MIN, attempts=2, insurance=("hmo", "Blue Shield of California", None,
                                                                         None))
        _lead(people, "C", utc("2026-03-02 20:00"), stage=Stage.CONTACTING, reached=1, source="phone", who="c2",
              attempt=12 * hour + 30 * MIN, attempts=3,
              insurance=("ppo", " aetna ", 48 * hour, ("denied", 1 * day, 6 * day)))
        _lead(people, "D", utc("2026-03-03 11:00"), stage=Stage.NEW, reached=0, source="referral")
        _lead(people, "E", utc("2026-03-03 12:00"), stage=Stage.CLOSED, reason="duplicate", reached=2, who="c2",
              attempt=2 * MIN, contact=2 * MIN, attempts=1, insurance=("ppo", "Aetna", 1 * hour, None))
        _lead(people, "F", utc("2026-03-02 13:00"), stage=Stage.CONTACTING, reached=3, who="c2", attempt=50 * MIN,
              contact=55 * MIN, attempts=4)
        _lead(people, "G", utc("2026-02-05 10:00"), stage=Stage.NEW, reached=0, who="c1", attempt=1 * MIN,
              attempts=1)
        db.session.add_all([
            Callback(lead_id=db.session.scalar(select(Lead.id).where(Lead.source == "phone")),
                     assignee_id=people["c2"].id, due_at=NOW - hour, created_at=NOW - day),
            Callback(lead_id=db.session.scalar(select(Lead.id).where(Lead.source == "referral")),
                     assignee_id=people["c1"].id, due_at=NOW + hour, created_at=NOW - day)])
        db.session.commit()


def signed_in(client, login_as, user):
    login_as(client, user)
    return client


def export(client, table, **args):
    response = client.get(f"/reports/export/{table}.csv", query_string=args)
    assert response.status_code == 200, table
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def by_first_cell(rows):
    return {row[0]: row[1:] for row in rows[1:]}


THIS_WEEK = {"period": "this_week"}


def test_funnel_counts_each_step_reached_and_leaves_out_duplicates(client, login_as, people, clinic):
    signed_in(client, login_as, people["admin"])
    funnel = by_first_cell(export(client, "funnel", **THIS_WEEK))
    # leads A B C D F (E is a duplicate, G is from February); reached ≥ step, by hand
    assert {step: row[0] for step, row in funnel.items()} == {
        "New": "5", "Contacting": "4", "Contacted": "3", "Screening / Insurance review": "3", "Eligible": "1",
        "Scheduled": "1", "Converted": "1"}
    assert funnel["Contacting"][1:3] == ["80.0", "75.0"]  # share of all; conversion to contacted (3 of 4)
    assert funnel["Screening / Insurance review"][2] == "33.3"  # 1 of 3 became eligible
    assert funnel["Converted"][2] == ""  # no next step
    assert funnel["Screening / Insurance review"][3] == "1"  # B left after screening
    exits = export(client, "exits", **THIS_WEEK)
    assert ["Ineligible", "Under 18", "1"] in exits
    assert not any(row[1] == "Duplicate" for row in exits)


def test_speed_to_lead_figures_match_a_hand_count(client, login_as, people, clinic):
    signed_in(client, login_as, people["admin"])
    speed = by_first_cell(export(client, "speed", **THIS_WEEK))
    header = export(client, "speed", **THIS_WEEK)[0]
    every = dict(zip(header[1:], speed["All leads"], strict=True))
    # attempts after 3, 10, 50 min and 12.5 h: median (10 + 50) / 2 = 30 min; p90 = 50 + 0.7 * 700 = 540 min
    assert every == {
        "Leads": "5", "Attempted": "4", "Median (minutes)": "30.0", "90th percentile (minutes)": "540.0",
        "Within 5 minutes (%)": "20.0", "Within 15 minutes (%)": "40.0", "Within 1 hour (%)": "60.0",
        # C arrived after hours: its business day starts Tuesday 08:00, so 08:30 is within it
        "Within 1 business day (%)": "80.0",
        "Median to first live contact (minutes)": "20.0",  # 3, 20 and 55 min
        "Attempts per lead": "2.0", "Contact rate (%)": "60.0"}
    inside = dict(zip(header[1:], speed["Submitted during opening hours"], strict=True))
    outside = dict(zip(header[1:], speed["Submitted outside opening hours"], strict=True))
    assert (inside["Leads"], outside["Leads"]) == ("4", "1")
    assert outside["Median (minutes)"] == "750.0"
    spread = by_first_cell(export(client, "speed_distribution", **THIS_WEEK))
    assert {label: row[0] for label, row in spread.items()} == {
        "Within 5 min": "1", "5 to 15 min": "1", "15 to 60 min": "1", "1 to 4 hours": "0", "4 to 24 hours": "1",
        "Over a day": "0", "No attempt yet": "1"}


def test_sources_coordinators_and_payers_match_a_hand_count(client, login_as, people, clinic):
    signed_in(client, login_as, people["admin"])
    sources = by_first_cell(export(client, "sources", **THIS_WEEK))
    assert sources == {"Web form": ["3", "100.0", "33.3", "33.3"], "Phone": ["1", "0.0", "0.0", "0.0"],
                       "Referral": ["1", "0.0", "0.0", "0.0"]}
    coordinators = by_first_cell(export(client, "coordinators", **THIS_WEEK))
    assert coordinators["Casey"] == ["2", "3", "6.5", "0", "1"]  # A and B: median of 3 and 10 min
    assert coordinators["Robin"] == ["2", "7", "400.0", "1", "0"]  # C and F: median of 50 and 750 min
    assert coordinators["Unassigned"] == ["1", "0", "", "0", "0"]
    payer_rows = export(client, "payers", **THIS_WEEK)
    assert payer_rows[0] == ["Coverage type", "Carrier", "Leads", "Benefits verified",
                             "Median benefits check (requested to verified) (hours)", "Prior authorisations decided",
                             "Approval rate (%)", "Median prior authorisation (submitted to decided) (days)"]
    payer_table = {(row[0], row[1]): row[2:] for row in payer_rows[1:]}
    assert payer_table == {("PPO", "Aetna"): ["2", "2", "36.0", "2", "50.0", "3.5"],  # A approved in 2 d, C denied in 5
                           ("HMO", "Blue Shield of California"): ["1", "0", "", "0", "", ""]}


def test_trend_counts_enquiries_and_median_speed_per_clinic_week(client, login_as, people, clinic):
    signed_in(client, login_as, people["admin"])
    weeks = by_first_cell(export(client, "trend", **THIS_WEEK))
    assert len(weeks) == 26 and list(weeks)[-1] == "2026-03-02" and list(weeks)[0] == "2025-09-08"
    assert weeks["2026-03-02"] == ["5", "30.0"]
    assert weeks["2026-02-02"] == ["1", "1.0"]  # G, whatever the period filter
    assert weeks["2026-02-09"] == ["0", ""]


@pytest.mark.parametrize("args,new_leads", [
    ({"source": "phone"}, "1"),
    ({"urgency": "urgent"}, "0"),
    ({"urgency": "not_urgent"}, "5"),
    ({"coverage": "ppo"}, "2"),
    ({"payer": "blue_shield_ca"}, "1"),
    ({"coordinator": "none"}, "1"),
    ({"period": "last_30"}, "6"),  # February 5 is 27 days back
    ({"period": "last_week"}, "0"),
    ({"period": "custom", "date_from": "2026-02-01", "date_to": "2026-02-28"}, "1"),
])
def test_filters_narrow_the_leads_counted(client, login_as, people, clinic, args, new_leads):
    signed_in(client, login_as, people["admin"])
    funnel = by_first_cell(export(client, "funnel", **{**THIS_WEEK, **args}))
    assert funnel["New"][0] == new_leads


def test_filter_by_coordinator_id(client, login_as, people, clinic):
    signed_in(client, login_as, people["admin"])
    funnel = by_first_cell(export(client, "funnel", coordinator=people["c2"].id, **THIS_WEEK))
    assert funnel["New"][0] == "2"  # C and F (E is a duplicate)


def test_a_coordinator_sees_only_their_own_figures(client, login_as, people, clinic):
    signed_in(client, login_as, people["c1"])
    page = client.get("/reports/", query_string=THIS_WEEK)
    assert page.status_code == 200 and "your leads only" in page.get_data(as_text=True)
    assert by_first_cell(export(client, "funnel", **THIS_WEEK))["New"][0] == "2"  # A and B
    assert list(by_first_cell(export(client, "coordinators", **THIS_WEEK))) == ["Casey"]
    assert client.get("/reports/", query_string={"coordinator": people["c2"].id}).status_code == 400


def test_reopened_and_merged_leads_are_counted_once_through_the_operations(app, client, login_as, people):
    with app.app_context():
        actor = db.session.get(User, people["c1"].id)
        lead = Lead(first_name="Pat", stage=Stage.NEW, created_at=NOW - dt.timedelta(hours=2))
        other = Lead(first_name="Pat", stage=Stage.NEW, created_at=NOW - dt.timedelta(hours=1))
        db.session.add_all([lead, other])
        for target, reason in ((Stage.CONTACTING, None), (Stage.CONTACTED, None), (Stage.SCREENING, None),
                               (Stage.CLOSED, "not_ready"), (Stage.CONTACTING, "patient_returned")):
            ops.move_stage(lead, target, reason, actor)
        ops.move_stage(other, Stage.CLOSED, "duplicate", actor)
        db.session.commit()
        assert (lead.stage, lead.reached_step) == (Stage.CONTACTING, 3)
    signed_in(client, login_as, people["admin"])
    funnel = by_first_cell(export(client, "funnel", **THIS_WEEK))
    assert funnel["New"][0] == "1" and funnel["Screening / Insurance review"][0] == "1"
    assert funnel["Screening / Insurance review"][3] == "0"  # reopened: no longer an exit
    assert not any(row[2] != "0" for row in export(client, "exits", **THIS_WEEK)[1:])


def test_no_phi_on_the_page_or_in_any_export(client, login_as, people, clinic):
    signed_in(client, login_as, people["admin"])
    page = client.get("/reports/", query_string=THIS_WEEK)
    texts = [page.get_data(as_text=True)]
    texts += [client.get(f"/reports/export/{table}.csv", query_string=THIS_WEEK).get_data(as_text=True)
              for table in TABLES]
    assert phi_sentinels_in(texts) == []
    assert not any("Aetna PPO" in text or " aetna " in text for text in texts)  # carriers as typed stay hidden
    assert "<script" not in texts[0]


def test_page_shows_charts_with_text_alternatives_and_tables(client, login_as, people, clinic):
    signed_in(client, login_as, people["manager"])
    html = client.get("/reports/", query_string=THIS_WEEK).get_data(as_text=True)
    for key in ("funnel", "speed_distribution", "trend_enquiries", "trend_speed"):
        assert f'aria-labelledby="{key}-title {key}-desc"' in html
    assert "Leads that reached each step. New: 5; Contacting: 4; Contacted: 3;" in html
    for key in TABLES:
        assert f'id="table-{key}"' in html and f"/reports/export/{key}.csv?period=this_week" in html
    assert ' style=' not in html


def test_opening_filtering_and_exporting_are_audited(app, client, login_as, people, clinic):
    signed_in(client, login_as, people["manager"])
    client.get("/reports/")
    client.get("/reports/", query_string={"period": "last_90", "source": "phone"})
    export(client, "sources", period="last_90", source="phone")
    viewed = audit_events(app, "report_viewed")
    assert [json.loads(e.details)["period"] for e in viewed] == ["last_30", "last_90"]  # the default, then chosen
    assert json.loads(viewed[1].details)["source"] == "phone"
    assert json.loads(viewed[1].details)["from"] == "2025-12-05"
    exported = audit_events(app, "report_exported")
    assert [(e.object_id, e.actor_id, json.loads(e.details)["format"]) for e in exported] == [
        ("sources", people["manager"].id, "csv")]


@pytest.mark.parametrize("args,field,message", [
    ({"period": "custom"}, "date_from", "Enter the first day of the period."),
    ({"period": "custom", "date_from": "2026-03-04", "date_to": "2026-03-01"}, "date_to",
     "The last day comes before the first."),
    ({"period": "custom", "date_from": "2020-01-01", "date_to": "2026-03-01"}, "date_to",
     "Choose at most three years."),
    ({"period": "custom", "date_from": "not a date", "date_to": "2026-03-01"}, "date_from", "Not a valid date value."),
    ({"source": "<b>"}, "source", "Not a valid choice."),
])
def test_bad_filters_show_field_errors_keep_the_input_and_count_nothing(app, client, login_as, people, args, field,
                                                                        message):
    signed_in(client, login_as, people["admin"])
    response = client.get("/reports/", query_string=args)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="{field}-error">{message}' in html
    assert 'id="table-funnel"' not in html and "&lt;b&gt;" not in html.split("</form>")[1]
    if args.get("date_from"):
        assert f'value="{args["date_from"]}"' in html
    assert audit_events(app, "report_viewed") == []
    assert client.get("/reports/export/funnel.csv", query_string=args).status_code == 400


def test_unknown_export_is_404(client, login_as, people):
    signed_in(client, login_as, people["admin"])
    assert client.get("/reports/export/secrets.csv").status_code == 404


def test_exports_neutralise_formulas(app, client, login_as, people, make_user, make_lead):
    evil = make_user(display_name="=HYPERLINK(\"http://evil.example\")", role=Role.COORDINATOR)
    make_lead(assignee_id=evil.id, created_at=NOW - dt.timedelta(hours=1))
    signed_in(client, login_as, people["admin"])
    rows = export(client, "coordinators", **THIS_WEEK)
    assert ["'=HYPERLINK(\"http://evil.example\")", "1", "0", "", "0", "0"] in rows


def test_clinicians_are_refused_reports(app, client, login_as, make_user):
    clinician = make_user(role=Role.CLINICIAN)
    signed_in(client, login_as, clinician)
    assert client.get("/reports/").status_code == 403
    assert client.get("/reports/export/funnel.csv").status_code == 403
    assert [e.object_id for e in audit_events(app, "access_denied")] == ["reports.index", "reports.export"]


def test_an_empty_clinic_reports_zeros_and_dashes(client, login_as, people):
    signed_in(client, login_as, people["admin"])
    assert client.get("/reports/").status_code == 200
    speed = by_first_cell(export(client, "speed"))
    assert speed["All leads"][:4] == ["0", "0", "", ""]


def test_reports_link_in_navigation_by_role(client, login_as, people, make_user):
    signed_in(client, login_as, people["c1"])
    assert 'href="/reports/"' in client.get("/leads/home").get_data(as_text=True)


def test_a_shredded_lead_still_counts_through_its_plain_columns(app, client, login_as, people, clinic):
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.stage == Stage.CONVERTED))
        db.session.delete(lead.key)  # crypto-shred: the data key is gone, the ciphertexts unreadable
        lead.first_name_enc = lead.last_name_enc = lead.phone_enc = lead.email_enc = None
        db.session.commit()
    signed_in(client, login_as, people["admin"])
    funnel = by_first_cell(export(client, "funnel", **THIS_WEEK))
    assert funnel["New"][0] == "5" and funnel["Converted"][0] == "1"


def test_unassigned_filter_counts_only_unassigned_callbacks(client, login_as, people, clinic):
    signed_in(client, login_as, people["admin"])
    coordinators = by_first_cell(export(client, "coordinators", coordinator="none", **THIS_WEEK))
    assert coordinators == {"Unassigned": ["1", "0", "", "0", "0"]}  # Robin's overdue callback is not unassigned


@pytest.mark.parametrize("submitted,inside,within_day", [
    ("2026-02-27 17:59", True, False),  # Friday inside hours: due Monday 17:59, attempted 18:30
    ("2026-02-27 18:01", False, True),  # Friday after closing: due Tuesday 08:00
])
def test_friday_evening_edges_in_the_report(app, client, login_as, people, submitted, inside, within_day):
    with app.app_context():
        created = utc(submitted)
        _lead(people, "X", created, stage=Stage.CONTACTING, reached=1, attempt=utc("2026-03-02 18:30") - created,
              attempts=1)
        db.session.commit()
    signed_in(client, login_as, people["admin"])
    rows = export(client, "speed", period="custom", date_from="2026-02-27", date_to="2026-02-27")
    table = {row[0]: dict(zip(rows[0][1:], row[1:], strict=True)) for row in rows[1:]}
    assert table["Submitted during opening hours"]["Leads"] == ("1" if inside else "0")
    assert table["Submitted outside opening hours"]["Leads"] == ("0" if inside else "1")
    assert table["All leads"]["Within 1 business day (%)"] == ("100.0" if within_day else "0.0")
