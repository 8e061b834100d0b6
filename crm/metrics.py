"""The one definition of the intake metrics the workspace and the reports both show.

* **speed to lead**: first contact attempt minus submission (the lead's creation);
* **speed to contact**: first live conversation minus submission;
* **contacted**: the lead reached the *contacted* step of the pipeline (a live conversation
  moves it there), at any time, even if it later left the pipeline;
* **eligible** / **converted**: the lead reached that step;
* **counted once**: a lead closed as a ``duplicate`` of another is left out of every count,
  so a merged person counts once, through the surviving lead; a reopened lead is one row,
  counted once, at the furthest step it ever reached.

Every figure reads only plain workflow columns (``REPORT_COLUMNS``), which a crypto-shred
keeps, so an erased lead still counts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, not_

from .models import STEP_OF, Lead, Stage

CONTACTED_STEP = STEP_OF[Stage.CONTACTED]
ELIGIBLE_STEP = STEP_OF[Stage.ELIGIBLE]
CONVERTED_STEP = STEP_OF[Stage.CONVERTED]
DUPLICATE_REASON = "duplicate"


def speed_to_lead(created_at: dt.datetime, first_attempt_at: dt.datetime | None) -> dt.timedelta | None:
    """First attempt minus submission, or None while nobody has tried to reach the lead."""
    return first_attempt_at - created_at if first_attempt_at else None


def speed_to_contact(created_at: dt.datetime, first_contact_at: dt.datetime | None) -> dt.timedelta | None:
    """First live conversation minus submission, or None before one."""
    return first_contact_at - created_at if first_contact_at else None


def lead_speed_to_lead(lead: Any) -> dt.timedelta | None:
    """:func:`speed_to_lead` of a lead (or any row with ``created_at`` and ``first_attempt_at``)."""
    return speed_to_lead(lead.created_at, lead.first_attempt_at)


def is_contacted(reached_step: int) -> bool:
    """True once the lead reached the contacted step."""
    return reached_step >= CONTACTED_STEP


def is_eligible(reached_step: int) -> bool:
    """True once the lead reached the eligible step."""
    return reached_step >= ELIGIBLE_STEP


def is_converted(reached_step: int) -> bool:
    """True once the lead converted (first treatment scheduled)."""
    return reached_step >= CONVERTED_STEP


def is_duplicate(stage: str, reason: str | None) -> bool:
    """True for a lead closed as a duplicate of another (merged): it is not counted again."""
    return stage == Stage.CLOSED and reason == DUPLICATE_REASON


def counted_once() -> ColumnElement[bool]:
    """SQL condition leaving out leads closed as duplicates, the Python twin of :func:`is_duplicate`."""
    return not_(and_(Lead.stage == Stage.CLOSED, Lead.stage_reason == DUPLICATE_REASON))


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """The ``pct`` percentile of already sorted values by linear interpolation; None for no values.

    One value is every percentile of itself; two values have their mean as median. This is
    PostgreSQL's ``percentile_cont`` and NumPy's default.
    """
    count = len(sorted_values)
    if count == 0:
        return None
    rank = (count - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def rate(part: int, whole: int) -> float | None:
    """``part / whole``, or None when there is nothing to divide."""
    return part / whole if whole else None
