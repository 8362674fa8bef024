"""Gains over a window. Only changes are stored, so the value at an instant is the last
observation at or before it; with nothing stored before the window starts, the first observation
inside it is the baseline. Unranked (-1) counts as 0."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import msgspec

from shared import xp

PERIODS = {
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30),
    "year": timedelta(days=365),
}
_CUSTOM = re.compile(r"(?:(\d+)([wdhm]))+")
_PART = re.compile(r"(\d+)([wdhm])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}
MAX_PERIOD = timedelta(days=3650)


class PeriodError(ValueError):
    """Not a period; the message lists what is."""


def parse_period(text: str) -> timedelta:
    """`day`, `week`, `month` (30 days), `year` (365 days), or a span like `3d12h`, `2w`, `90m`."""
    if text in PERIODS:
        return PERIODS[text]
    if _CUSTOM.fullmatch(text):
        span = sum(
            (timedelta(**{_UNITS[unit]: int(n)}) for n, unit in _PART.findall(text)), timedelta()
        )
        if timedelta(0) < span <= MAX_PERIOD:
            return span
    raise PeriodError(
        f"period must be one of {', '.join(PERIODS)} or a span like 3d12h (w, d, h, m; "
        f"at most {MAX_PERIOD.days} days), got {text!r}"
    )


class Observation(msgspec.Struct, frozen=True):
    observed_at: datetime
    total_level: int | None
    entries: dict[int, tuple[int, int]]  # metric id -> (rank, value)


class End(msgspec.Struct):
    observed_at: datetime


class SkillGain(msgspec.Struct):
    xp: int
    levels: int
    rank: int | None  # end rank minus start rank (negative: climbed); None when unranked


class ActivityGain(msgspec.Struct):
    score: int
    rank: int | None


class Gains(msgspec.Struct):
    key: str
    start_at: datetime = msgspec.field(name="from")
    end_at: datetime = msgspec.field(name="to")
    start: End | None  # the observations used as the two ends; null when none
    end: End | None
    skills: dict[str, SkillGain]
    activities: dict[str, ActivityGain]


def compute_gains(
    key: str,
    start_at: datetime,
    end_at: datetime,
    metrics: list[tuple[int, str, str]],
    start: Observation | None,
    end: Observation | None,
) -> Gains:
    """Per metric, end minus start; zeros when the window holds no data."""
    skills: dict[str, SkillGain] = {}
    activities: dict[str, ActivityGain] = {}
    # A metric absent from an end, or no end at all, reads as unranked: (-1, -1), a value of 0.
    first_entries = start.entries if start else {}
    last_entries = end.entries if end else {}
    both = start is not None and end is not None
    unranked = (-1, -1)
    level = xp.level
    for metric_id, metric_key, kind in metrics:
        first_rank, first = first_entries.get(metric_id, unranked)
        last_rank, last = last_entries.get(metric_id, unranked)
        first, last = max(first, 0), max(last, 0)
        rank = last_rank - first_rank if first_rank > 0 and last_rank > 0 else None
        if kind != "skill":
            activities[metric_key] = ActivityGain(last - first, rank)
        elif metric_key == "overall":
            levels = (end.total_level or 0) - (start.total_level or 0) if both else 0
            skills[metric_key] = SkillGain(last - first, levels, rank)
        else:
            levels = level(last) - level(first) if both and last != first else 0
            skills[metric_key] = SkillGain(last - first, levels, rank)
    return Gains(
        key=key,
        start_at=start_at,
        end_at=end_at,
        start=End(start.observed_at) if start else None,
        end=End(end.observed_at) if end else None,
        skills=skills,
        activities=activities,
    )


def value_of(observation: Observation | None, metric_id: int) -> tuple[int, int]:
    """(rank, value) with unranked as (-1, 0): an unranked value counts as 0 in a gain."""
    if observation is None:
        return -1, 0
    rank, value = observation.entries.get(metric_id, (-1, -1))
    return rank, max(value, 0)
