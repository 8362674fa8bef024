"""Turning true stats into hiscores rows: masking what is unranked, adding Overall, ranking.

The rank curves are costly (an erfc each), so a character's starting ranks are computed once
(a Sheet) and only entries whose value moved are ranked again."""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.metrics import ACTIVITY_NAMES, SKILL_NAMES, metric_key
from shared.xp import MAX_SKILL_XP, level
from sim.activities import CLUE_ALL_INDEX, CLUE_TIER_INDEXES, SPECS, ActivitySpec
from sim.character import Character
from sim.payload import ActivityRow, SkillRow
from sim.profiles import LEVELLED, MIN_RANKED_XP
from sim.ranks import RANK_CAP, board_rank, curve_rank, mix64, unit

OVERALL_ID = next(i for i, n in enumerate(SKILL_NAMES) if metric_key(n) == "overall")
LEVELLED_IDS = tuple(i for i in range(len(SKILL_NAMES)) if i != OVERALL_ID)
ACTIVITY_OFFSET = len(SKILL_NAMES)  # where activities start in a list of day factors
MAX_NEW_BOSSES = 16
FACTOR_COUNT = len(SKILL_NAMES) + len(ACTIVITY_NAMES) + MAX_NEW_BOSSES
UNRANKED = 0.0  # a raw rank of 0 marks an entry the board does not show

# Some skills are trained by more players than others: spread the rank curves a little.
_SKILL_MEDIANS = tuple(math.log(300_000 * (0.5 + unit(0x5C111, i))) for i in LEVELLED_IDS)
_SKILL_SPREAD = 1.8  # in log-xp: a level-15 skill ranks near the bottom, 200M near the top
# How many regular-board accounts share 200M in each skill (ranked by who got there first).
_AT_200M = tuple(50 + int(1500 * unit(0x200, i) ** 2) for i in LEVELLED_IDS)
_OVERALL_MEDIAN = math.log(10_000_000)
_OVERALL_SPREAD = 1.6
_ACTIVITY_SPREAD = 1.2


def skill_raw(slot: int, xp: int, tiebreak: int) -> float:
    if xp < MIN_RANKED_XP:
        return UNRANKED
    ties = _AT_200M[slot]
    if xp >= MAX_SKILL_XP:
        return 1.0 + (tiebreak >> (slot * 2)) % ties
    return ties + curve_rank(math.log(xp), _SKILL_MEDIANS[slot], _SKILL_SPREAD, RANK_CAP)


def activity_raw(spec: ActivitySpec, score: int) -> float:
    if score < spec.minimum:
        return UNRANKED
    return curve_rank(math.log(score), math.log(spec.typical), _ACTIVITY_SPREAD, spec.rank_cap)


def overall_raw(total_xp: int) -> float:
    return curve_rank(math.log(max(total_xp, 1)), _OVERALL_MEDIAN, _OVERALL_SPREAD, RANK_CAP)


def with_clue_total(scores: list[int]) -> list[int]:
    if CLUE_ALL_INDEX is not None:
        scores[CLUE_ALL_INDEX] = sum(scores[i] for i in CLUE_TIER_INDEXES)
    return scores


@dataclass(frozen=True, slots=True)
class Sheet:
    """A character's raw ranks at the epoch, and which entries can ever move."""

    character: Character
    tiebreak: int
    skill_raw: tuple[float, ...]
    activity_raw: tuple[float, ...]
    start_scores: tuple[int, ...]  # with the clue total filled in
    moving_skills: tuple[int, ...]
    moving_activities: tuple[int, ...]


def make_sheet(character: Character, seed: int, index: int) -> Sheet:
    tiebreak = mix64(seed, index, 0x200)
    scores = with_clue_total(list(character.start_score))
    moving_activities = {grind.slot for grind in character.grinds}
    if CLUE_ALL_INDEX is not None and moving_activities.intersection(CLUE_TIER_INDEXES):
        moving_activities.add(CLUE_ALL_INDEX)
    return Sheet(
        character,
        tiebreak,
        tuple(skill_raw(s, xp, tiebreak) for s, xp in enumerate(character.start_xp)),
        tuple(activity_raw(spec, score) for spec, score in zip(SPECS, scores, strict=True)),
        tuple(scores),
        tuple(sorted({slot for lane in character.lanes for slot in lane.queue})),
        tuple(sorted(moving_activities)),
    )


@dataclass(frozen=True, slots=True)
class DayRows:
    """A character's rows at the epoch as ranked on one board on one day: on any tick of that
    day only the entries that moved need building again."""

    sheet: Sheet
    factors: tuple[float, ...]
    skills: tuple[SkillRow, ...]  # the 24 levelled skills, Overall left out
    levels: tuple[int, ...]
    activities: tuple[ActivityRow, ...]


def day_rows(sheet: Sheet, factors: tuple[float, ...]) -> DayRows:
    # Written out rather than through _skill_row and _activity_row: this is the hot loop of a
    # lookup that misses the caches.
    start_xp = sheet.character.start_xp
    levels = tuple([level(xp) for xp in start_xp])
    skills = tuple(
        [
            SkillRow(sid, name, max(1, min(RANK_CAP, int(raw * factors[sid]))), lvl, xp)
            if raw
            else SkillRow(sid, name, -1, 1, -1)
            for sid, name, raw, lvl, xp in zip(
                LEVELLED_IDS, LEVELLED, sheet.skill_raw, levels, start_xp, strict=True
            )
        ]
    )
    offset = factors[ACTIVITY_OFFSET:]
    activities = tuple(
        [
            ActivityRow(aid, name, max(1, min(RANK_CAP, int(raw * factor))), score)
            if raw
            else ActivityRow(aid, name, -1, -1)
            for aid, (name, raw, factor, score) in enumerate(
                zip(ACTIVITY_NAMES, sheet.activity_raw, offset, sheet.start_scores, strict=False)
            )
        ]
    )
    return DayRows(sheet, factors, skills, levels, activities)


def _skill_row(slot: int, xp: int, raw: float, factors: tuple[float, ...]) -> SkillRow:
    sid = LEVELLED_IDS[slot]
    if raw == UNRANKED:
        return SkillRow(sid, LEVELLED[slot], -1, 1, -1)
    return SkillRow(sid, LEVELLED[slot], board_rank(raw, factors[sid]), level(xp), xp)


def _activity_row(aid: int, score: int, raw: float, factors: tuple[float, ...]) -> ActivityRow:
    if raw == UNRANKED:
        return ActivityRow(aid, ACTIVITY_NAMES[aid], -1, -1)
    return ActivityRow(
        aid, ACTIVITY_NAMES[aid], board_rank(raw, factors[ACTIVITY_OFFSET + aid]), score
    )


def skill_rows(xps: list[int], day: DayRows) -> list[SkillRow]:
    sheet = day.sheet
    start = sheet.character.start_xp
    rows = list(day.skills)
    total_level = sum(day.levels)
    for slot in sheet.moving_skills:
        xp = xps[slot]
        if xp != start[slot]:
            rows[slot] = _skill_row(slot, xp, skill_raw(slot, xp, sheet.tiebreak), day.factors)
            total_level += level(xp) - day.levels[slot]
    # Overall counts the true xp and levels, unranked skills included; 64-bit in Python anyway.
    total_xp = sum(xps)
    rank = board_rank(overall_raw(total_xp), day.factors[OVERALL_ID])
    overall = SkillRow(OVERALL_ID, SKILL_NAMES[OVERALL_ID], rank, total_level, total_xp)
    rows.insert(OVERALL_ID, overall)
    return rows


def activity_rows(scores: list[int], day: DayRows) -> list[ActivityRow]:
    sheet = day.sheet
    scores = with_clue_total(scores)
    start = sheet.start_scores
    rows = list(day.activities)
    for aid in sheet.moving_activities:
        score = scores[aid]
        if score != start[aid]:
            raw = activity_raw(SPECS[aid], score)
            rows[aid] = _activity_row(aid, score, raw, day.factors)
    return rows
