"""The metric registry: every hiscores entry (25 skills incl. Overall, 91 activities) as a metric
with a stable key. A name never seen before is not an error: it becomes a new metric."""

from __future__ import annotations

import enum
import functools
import re
from importlib import resources

import msgspec


class MetricKind(enum.StrEnum):
    SKILL = "skill"
    ACTIVITY = "activity"


class Metric(msgspec.Struct, frozen=True):
    key: str
    name: str
    kind: MetricKind


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)  # every event names the same hundred-odd entries
def metric_key(name: str) -> str:
    """`Kree'Arra` -> `kreearra`, `Clue Scrolls (all)` -> `clue_scrolls_all`,
    `LMS - Rank` -> `lms_rank`."""
    folded = _NON_ALNUM.sub("_", name.lower().replace("'", "").replace("\u2019", ""))
    return folded.strip("_")


def _names(filename: str) -> tuple[str, ...]:
    text = resources.files("shared").joinpath("data", filename).read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


SKILL_NAMES: tuple[str, ...] = _names("skill_names.txt")
ACTIVITY_NAMES: tuple[str, ...] = _names("activity_names.txt")

SKILLS: tuple[Metric, ...] = tuple(Metric(metric_key(n), n, MetricKind.SKILL) for n in SKILL_NAMES)
ACTIVITIES: tuple[Metric, ...] = tuple(
    Metric(metric_key(n), n, MetricKind.ACTIVITY) for n in ACTIVITY_NAMES
)
KNOWN_METRICS: tuple[Metric, ...] = SKILLS + ACTIVITIES
BY_KEY: dict[str, Metric] = {m.key: m for m in KNOWN_METRICS}

# The 24 skills that make up the total level (every skill but Overall).
LEVELLED_SKILLS: tuple[str, ...] = tuple(m.key for m in SKILLS if m.key != "overall")
COMBAT_SKILLS = ("attack", "strength", "defence", "hitpoints", "ranged", "prayer", "magic")

assert len(SKILLS) == 25 and len(ACTIVITIES) == 91, "metric name lists are incomplete"
assert len(BY_KEY) == len(KNOWN_METRICS), "two metric names fold to the same key"
