"""The hiscores parser and the payload hash that decides "changed"."""

from __future__ import annotations

import hashlib

import msgspec

from shared.events import ActivityEntry, SkillEntry
from shared.metrics import ACTIVITY_NAMES, SKILL_NAMES
from shared.xp import MAX_LEVEL, MAX_SKILL_XP, level


class MalformedHiscores(ValueError):
    """The body is not a valid hiscores payload; the message says precisely why."""


class NotHiscoresData(MalformedHiscores):
    """Not JSON / CSV at all (a truncated or garbled body): worth trying the other format."""


class Layout(msgspec.Struct, frozen=True):
    """The entries of the hiscores, in the order the CSV lists them."""

    skills: tuple[str, ...]
    activities: tuple[str, ...]


CURRENT_LAYOUT = Layout(SKILL_NAMES, ACTIVITY_NAMES)
MAX_TOTAL_LEVEL = MAX_LEVEL * (len(SKILL_NAMES) - 1)  # 2376
MAX_TOTAL_XP = MAX_SKILL_XP * (len(SKILL_NAMES) - 1)  # 4,800,000,000


class Hiscores(msgspec.Struct, frozen=True):
    skills: tuple[SkillEntry, ...]
    activities: tuple[ActivityEntry, ...]
    name: str | None = None


class _Payload(msgspec.Struct):
    skills: list[SkillEntry]
    activities: list[ActivityEntry]
    name: str | None = None


_decoder = msgspec.json.Decoder(_Payload)


def parse_json(body: bytes) -> Hiscores:
    """Parse `index_lite.json`, matching entries by name (never by position).

    Unknown names are kept: they become new metrics downstream. A known entry missing from the
    payload is a layout change to report, not a zero."""
    try:
        payload = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise MalformedHiscores(f"unexpected JSON shape: {exc}") from None
    except msgspec.DecodeError as exc:
        raise NotHiscoresData(f"not JSON: {exc}") from None
    hiscores = Hiscores(tuple(payload.skills), tuple(payload.activities), payload.name)
    validate(hiscores)
    return hiscores


def parse_csv(body: bytes, layout: Layout | None = None) -> Hiscores:
    """Parse `index_lite.ws` against a layout table: lines carry no names, so a line count that
    differs from the layout means Jagex changed the list and no position can be trusted."""
    layout = layout or CURRENT_LAYOUT
    if body.lstrip()[:1] == b"<":
        raise NotHiscoresData("HTML instead of CSV")
    try:
        lines = body.decode("ascii").strip().splitlines()
    except UnicodeDecodeError:
        raise NotHiscoresData("CSV body is not ASCII text") from None
    expected = len(layout.skills) + len(layout.activities)
    if len(lines) != expected:
        raise MalformedHiscores(
            f"layout changed: {len(lines)} CSV lines, the known layout has {expected}; "
            "positions cannot be trusted"
        )
    rows = [_csv_numbers(number, line) for number, line in enumerate(lines, 1)]
    n = len(layout.skills)
    skills = []
    for name, row in zip(layout.skills, rows[:n], strict=True):
        if len(row) != 3:
            raise MalformedHiscores(f"CSV line for {name} has {len(row)} fields, expected 3")
        skills.append(SkillEntry(name, *row))
    activities = []
    for name, row in zip(layout.activities, rows[n:], strict=True):
        if len(row) != 2:
            raise MalformedHiscores(f"CSV line for {name} has {len(row)} fields, expected 2")
        activities.append(ActivityEntry(name, *row))
    hiscores = Hiscores(tuple(skills), tuple(activities))
    validate(hiscores, layout)
    return hiscores


def _csv_numbers(number: int, line: str) -> list[int]:
    try:
        return [int(field) for field in line.split(",")]
    except ValueError:
        raise MalformedHiscores(f"CSV line {number} is not numbers: {line[:60]!r}") from None


def validate(hiscores: Hiscores, layout: Layout | None = None) -> None:
    """Refuse what no real account can show; the message names the entry and the rule."""
    layout = layout or CURRENT_LAYOUT
    _check_names("skill", [s.name for s in hiscores.skills], layout.skills)
    _check_names("activity", [a.name for a in hiscores.activities], layout.activities)
    overall = None
    levels = xps = unranked = 0
    for skill in hiscores.skills:
        _check_rank(skill.name, skill.rank)
        if skill.xp < -1:
            raise MalformedHiscores(f"{skill.name}: xp {skill.xp} is negative")
        if skill.name == "Overall":
            overall = skill
            continue
        if not 1 <= skill.level <= MAX_LEVEL:
            raise MalformedHiscores(f"{skill.name}: level {skill.level} outside 1-{MAX_LEVEL}")
        if skill.xp > MAX_SKILL_XP:
            raise MalformedHiscores(f"{skill.name}: xp {skill.xp} above {MAX_SKILL_XP:,}")
        if skill.rank == -1 and (skill.xp not in (-1, 0) or skill.level != 1):
            raise MalformedHiscores(
                f"{skill.name}: unranked but shows level {skill.level}, xp {skill.xp} "
                "(unranked shows level 1, xp -1)"
            )
        if skill.rank != -1 and skill.xp < 0:
            raise MalformedHiscores(f"{skill.name}: ranked {skill.rank} without xp")
        if skill.xp >= 0 and skill.level != level(skill.xp):
            raise MalformedHiscores(
                f"{skill.name}: level {skill.level} does not match {skill.xp} xp "
                f"(level {level(skill.xp)})"
            )
        unranked += skill.rank == -1
        levels += skill.level
        xps += max(skill.xp, 0)
    for activity in hiscores.activities:
        _check_rank(activity.name, activity.rank)
        if activity.score < -1:
            raise MalformedHiscores(f"{activity.name}: score {activity.score} is negative")
        if (activity.rank == -1) != (activity.score == -1):
            raise MalformedHiscores(
                f"{activity.name}: rank {activity.rank} with score {activity.score} "
                "(unranked shows rank -1, score -1)"
            )
    if overall is not None:
        _check_overall(overall, levels, xps, unranked)


def _check_overall(overall: SkillEntry, levels: int, xps: int, unranked: int) -> None:
    # Overall counts the real levels and xp of skills shown as unranked (level 1, xp -1), so
    # with unranked skills it may exceed the sums, by at most what those skills could hold.
    if overall.level > MAX_TOTAL_LEVEL or overall.xp > MAX_TOTAL_XP:
        raise MalformedHiscores(
            f"Overall (level {overall.level}, xp {overall.xp}) above the maximum "
            f"(level {MAX_TOTAL_LEVEL}, xp {MAX_TOTAL_XP:,})"
        )
    if overall.rank == -1:
        return  # an unranked Overall shows nothing to add up
    if unranked == 0:
        if (overall.level, overall.xp) != (levels, xps):
            raise MalformedHiscores(
                f"Overall (level {overall.level}, xp {overall.xp}) is not the sum of the skills "
                f"(level {levels}, xp {xps})"
            )
        return
    if not levels <= overall.level <= levels + unranked * (MAX_LEVEL - 1):
        raise MalformedHiscores(
            f"Overall level {overall.level} cannot hold skills whose levels add up to {levels}"
        )
    if not xps <= overall.xp <= xps + unranked * MAX_SKILL_XP:
        raise MalformedHiscores(
            f"Overall xp {overall.xp} cannot hold skills whose xp adds up to {xps}"
        )


def _check_rank(name: str, rank: int) -> None:
    if rank == 0 or rank < -1:
        raise MalformedHiscores(f"{name}: rank {rank} (ranks start at 1; -1 is unranked)")


def _check_names(kind: str, names: list[str], known: tuple[str, ...]) -> None:
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise MalformedHiscores(f"{kind} names appear twice: {', '.join(dupes)}")
    present = set(names)
    missing = [name for name in known if name not in present]
    if missing:
        raise MalformedHiscores(f"known {kind} entries missing: {', '.join(missing)}")


def payload_hash(skills, activities) -> str:
    """blake2b-128 over every entry's name, level, xp and score, sorted by name. Ranks are left
    out: they drift daily for players who did not play."""
    lines = [f"s\x1f{s.name}\x1f{s.level}\x1f{s.xp}" for s in skills]
    lines += [f"a\x1f{a.name}\x1f{a.score}" for a in activities]
    lines.sort(key=lambda line: line[2:])
    return hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()
