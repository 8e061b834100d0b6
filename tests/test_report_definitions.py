"""The shared metric definitions and the clinic's opening hours, table-driven on hand-made cases."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from crm import metrics, payers
from crm.hours import ClinicHours
from crm.models import Stage

LA = ZoneInfo("America/Los_Angeles")
WEEKDAYS_8_TO_6 = {day: "08:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
HOURS = ClinicHours.from_config(LA, WEEKDAYS_8_TO_6, ["2026-02-16", "2026-12-25"])  # Presidents' Day, Christmas


def utc(local: str) -> dt.datetime:
    """Naive UTC of a Los Angeles wall-clock time ``YYYY-MM-DD HH:MM``."""
    return dt.datetime.fromisoformat(local).replace(tzinfo=LA).astimezone(dt.UTC).replace(tzinfo=None)


@pytest.mark.parametrize("values,median,p90", [
    ([], None, None),  # no lead: no figure, not zero
    ([300.0], 300.0, 300.0),  # one lead is every percentile of itself
    ([60.0, 180.0], 120.0, 168.0),  # two: the mean is the median; p90 lies 90% of the way up
    ([1.0, 2.0, 3.0, 4.0, 100.0], 3.0, 61.6),
])
def test_percentiles_at_the_edges(values, median, p90):
    assert metrics.percentile(values, 50) == median
    assert metrics.percentile(values, 90) == (pytest.approx(p90) if p90 is not None else None)


@pytest.mark.parametrize("local,is_open", [
    ("2026-03-06 07:59", False),
    ("2026-03-06 08:00", True),
    ("2026-03-06 17:59", True),  # Friday, a minute before closing
    ("2026-03-06 18:00", False),
    ("2026-03-06 18:01", False),
    ("2026-03-07 11:00", False),  # Saturday
    ("2026-02-16 11:00", False),  # a Monday holiday
    ("2026-03-09 08:30", True),  # the Monday after the spring-forward weekend, in PDT
    ("2026-11-02 08:30", True),  # the Monday after the fall-back weekend, in PST
])
def test_opening_hours_are_read_in_the_clinics_zone(local, is_open):
    assert HOURS.is_open(utc(local)) is is_open


@pytest.mark.parametrize("submitted,deadline", [
    ("2026-03-13 17:59", "2026-03-16 17:59"),  # Friday inside hours: same clock time on Monday
    ("2026-03-13 18:01", "2026-03-17 08:00"),  # Friday after closing: clock starts Monday 08:00
    ("2026-03-14 10:00", "2026-03-17 08:00"),  # Saturday: the same
    ("2026-03-16 06:30", "2026-03-17 08:00"),  # Monday before opening: starts at 08:00
    ("2026-02-13 17:59", "2026-02-17 17:59"),  # Friday before a Monday holiday: Tuesday
    ("2026-12-24 10:00", "2026-12-28 10:00"),  # Thursday before Christmas (a Friday holiday): Monday
    ("2026-12-25 10:00", "2026-12-29 08:00"),  # on the holiday itself: from Monday's opening
    ("2026-03-06 09:00", "2026-03-09 09:00"),  # across the spring-forward weekend: 71 hours, not 72
    ("2026-10-30 09:00", "2026-11-02 09:00"),  # across the fall-back weekend: 73 hours
])
def test_one_business_day_deadline(submitted, deadline):
    assert HOURS.business_day_deadline(utc(submitted)) == utc(deadline)


def test_daylight_saving_changes_the_utc_length_of_a_business_day():
    spring = HOURS.business_day_deadline(utc("2026-03-06 09:00")) - utc("2026-03-06 09:00")
    autumn = HOURS.business_day_deadline(utc("2026-10-30 09:00")) - utc("2026-10-30 09:00")
    assert spring == dt.timedelta(hours=71) and autumn == dt.timedelta(hours=73)


def test_a_calendar_without_business_days_has_no_deadline():
    closed = ClinicHours.from_config(LA, {}, [])
    assert closed.business_day_deadline(utc("2026-03-06 09:00")) is None
    assert closed.is_open(utc("2026-03-06 09:00")) is False


@pytest.mark.parametrize("spec,message", [
    ({"monday": "08:00-18:00"}, "unknown weekday"),
    ({"mon": "18:00-08:00"}, "closes before it opens"),
])
def test_malformed_opening_hours_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        ClinicHours.from_config(LA, spec, [])


@pytest.mark.parametrize("created,attempted,expected", [
    (dt.datetime(2026, 3, 2, 17, 0), None, None),
    (dt.datetime(2026, 3, 2, 17, 0), dt.datetime(2026, 3, 2, 17, 4, 30), dt.timedelta(minutes=4, seconds=30)),
])
def test_speed_to_lead_is_first_attempt_minus_submission(created, attempted, expected):
    assert metrics.speed_to_lead(created, attempted) == expected


@pytest.mark.parametrize("stage,reason,duplicate", [
    (Stage.CLOSED, "duplicate", True),
    (Stage.CLOSED, "cost", False),
    (Stage.CONTACTING, None, False),  # a reopened lead counts
    (Stage.INELIGIBLE, "other", False),
])
def test_only_leads_closed_as_duplicates_are_left_out(stage, reason, duplicate):
    assert metrics.is_duplicate(stage, reason) is duplicate


@pytest.mark.parametrize("step,contacted,eligible,converted", [
    (0, False, False, False), (1, False, False, False), (2, True, False, False), (3, True, False, False),
    (4, True, True, False), (6, True, True, True),
])
def test_contacted_eligible_and_converted_follow_the_furthest_step(step, contacted, eligible, converted):
    assert (metrics.is_contacted(step), metrics.is_eligible(step), metrics.is_converted(step)) == (
        contacted, eligible, converted)


@pytest.mark.parametrize("carrier,code", [
    ("Aetna PPO", "aetna"), ("  aetna ", "aetna"), ("Blue Shield of California", "blue_shield_ca"),
    ("Anthem Blue Cross", "anthem"), ("UnitedHealthcare", "uhc"), ("Some Local Plan", "other"),
    ("", None), (None, None),
])
def test_carriers_fall_into_known_payers(carrier, code):
    assert payers.classify(carrier) == code


@pytest.mark.parametrize("period,first,last", [
    ("this_week", "2026-03-02", "2026-03-04"),  # Monday to today (a Wednesday)
    ("last_week", "2026-02-23", "2026-03-01"),
    ("last_30", "2026-02-03", "2026-03-04"),
    ("last_90", "2025-12-05", "2026-03-04"),
    ("this_quarter", "2026-01-01", "2026-03-04"),
    ("custom", "2025-11-01", "2025-11-30"),
    ("nonsense", "2026-02-03", "2026-03-04"),  # falls back to the default period
])
def test_period_presets_in_clinic_days(period, first, last):
    from crm.forms.reports import period_bounds

    bounds = period_bounds(period, dt.date(2026, 3, 4), dt.date(2025, 11, 1), dt.date(2025, 11, 30))
    assert bounds == (dt.date.fromisoformat(first), dt.date.fromisoformat(last))
