"""Who the synthetic players are: how each profile starts out at the epoch and how it plays.

Rates are xp (or kills) per hour *of play*, like a real player's; a profile plays a share of the
day (its duty), and the gain is spread evenly over the day so that an active account changes
every tick. A player's gains are sized so that its skills take at least HORIZON_H to reach 200M:
active stays active for years after the epoch."""

from __future__ import annotations

import enum
import functools
import random
from typing import NamedTuple

from shared.metrics import SKILL_NAMES, metric_key
from shared.xp import MAX_SKILL_XP, XP_FOR_LEVEL
from sim.activities import (
    BOSS_INDEXES,
    CLUE_TIER_INDEXES,
    COLLECTIONS_INDEX,
    SKILLING_INDEXES,
    SPECS,
    TRAINABLE,
)
from sim.character import Character, Grind, Lane


class Profile(enum.StrEnum):
    IDLE = "idle"  # never gains anything
    CASUAL = "casual"
    SKILLER = "skiller"
    BOSSER = "bosser"
    MAXED = "maxed"  # most skills at 200M
    NEW = "new"  # brand new: most skills and activities unranked


class Build(enum.StrEnum):
    """Restrictions an account keeps forever, and the extra boards they put it on."""

    MAIN = "main"
    LEVEL_3 = "level_3_skiller"  # never trains a combat skill: on the skiller board
    PURE = "defence_pure"  # never trains Defence: on the 1 Defence pure board


class Play(NamedTuple):
    duty: tuple[float, float]  # share of the day spent playing
    xp_per_hour: tuple[float, float]  # while playing, all trained skills together
    lanes: tuple[int, int]  # how many skills are trained side by side
    grinds: tuple[int, int]  # how many activities are ground


PROFILE_SHARES: tuple[tuple[Profile, float], ...] = (
    (Profile.IDLE, 0.35),
    (Profile.CASUAL, 0.25),
    (Profile.SKILLER, 0.11),
    (Profile.BOSSER, 0.12),
    (Profile.MAXED, 0.05),
    (Profile.NEW, 0.12),
)
PLAY: dict[Profile, Play] = {
    Profile.CASUAL: Play((0.03, 0.10), (15_000, 60_000), (1, 3), (0, 1)),
    Profile.SKILLER: Play((0.08, 0.25), (50_000, 200_000), (1, 3), (0, 1)),
    Profile.BOSSER: Play((0.10, 0.25), (40_000, 150_000), (1, 2), (1, 3)),
    Profile.MAXED: Play((0.10, 0.30), (100_000, 400_000), (1, 2), (1, 2)),
    Profile.NEW: Play((0.04, 0.12), (8_000, 30_000), (1, 2), (0, 1)),
}
MAX_PLAY_RATE = 1_100_000  # about the fastest xp/h in the game (Construction)
HORIZON_H = 10 * 8766.0  # no active player runs out of skills to train in 10 years
MIN_RANKED_XP = XP_FOR_LEVEL[15]  # below it a skill shows rank -1, level 1, xp -1
HITPOINTS_START = XP_FOR_LEVEL[10]  # every account starts with 10 Hitpoints

LEVELLED: tuple[str, ...] = tuple(n for n in SKILL_NAMES if metric_key(n) != "overall")
_SLOT = {metric_key(name): slot for slot, name in enumerate(LEVELLED)}
_HITPOINTS = _SLOT["hitpoints"]
_COMBAT = frozenset(
    _SLOT[k]
    for k in ("attack", "strength", "defence", "hitpoints", "ranged", "prayer", "magic", "slayer")
)
_NON_COMBAT = tuple(s for s in range(len(LEVELLED)) if s not in _COMBAT)
# Relative xp rates: Runecraft and Agility are slow, Construction and Fletching fast.
_PACE = {
    "runecraft": 0.4,
    "agility": 0.5,
    "slayer": 0.5,
    "hitpoints": 0.4,
    "mining": 0.7,
    "woodcutting": 0.7,
    "fishing": 0.7,
    "hunter": 0.8,
    "sailing": 0.8,
    "cooking": 1.5,
    "fletching": 1.5,
    "prayer": 1.5,
    "construction": 2.0,
}
PACE: tuple[float, ...] = tuple(_PACE.get(metric_key(name), 1.0) for name in LEVELLED)
_IDLE_TIERS = ((0.4, (1, 50, 12)), (0.45, (30, 92, 70)), (0.15, (70, 99, 93)))
_TAKE_UP = {
    Profile.IDLE: 0.8,
    Profile.CASUAL: 1.0,
    Profile.SKILLER: 0.2,
    Profile.BOSSER: 2.0,
    Profile.MAXED: 2.5,
    Profile.NEW: 0.0,
}
_SCORE_MU = {Profile.BOSSER: 0.6, Profile.MAXED: 1.0, Profile.SKILLER: 0.3}


def build_character(rng: random.Random, profile: Profile, build: Build, tick_s: float):
    """The character a player of this profile is at the epoch, and how it plays from then on."""
    start_xp = tuple(_start_xp(rng, profile, build))
    start_score = _start_scores(rng, profile, build)
    play = PLAY.get(profile)
    if play is None:
        return Character(start_xp, start_score)
    duty = rng.uniform(*play.duty)
    lanes = _lanes(rng, profile, build, start_xp, play, duty, tick_s)
    grinds = _grinds(rng, profile, build, play, duty, tick_s)
    return Character(start_xp, start_score, lanes, grinds)


def build_temp_character(rng: random.Random, points_slot: int | None) -> Character:
    """A character on a temporary world (leagues, deadman, ...): its own low-to-mid stats and
    points, frozen since the world closed."""
    xps = [_xp_within(rng, round(rng.triangular(1, 85, 45))) for _ in LEVELLED]
    xps[_HITPOINTS] = max(xps[_HITPOINTS], HITPOINTS_START)
    scores = list(_start_scores(rng, Profile.CASUAL, Build.MAIN, 0.3))
    if points_slot is not None:
        scores[points_slot] = max(1, int(SPECS[points_slot].typical * rng.lognormvariate(0, 1)))
    return Character(tuple(xps), tuple(scores))


def _xp_within(rng: random.Random, lvl: int) -> int:
    low = XP_FOR_LEVEL[min(lvl, 99)]
    span = 2_000_000 if lvl >= 99 else XP_FOR_LEVEL[lvl + 1] - low
    return low + int(rng.random() * span)


def _past_99(rng: random.Random, most: int) -> int:
    return rng.randrange(XP_FOR_LEVEL[99], most)


def _start_xp(rng: random.Random, profile: Profile, build: Build) -> list[int]:
    if profile is Profile.IDLE:
        xps = _idle_xp(rng)
    elif profile is Profile.MAXED:
        xps = _maxed_xp(rng)
    elif profile is Profile.NEW:
        xps = _new_xp(rng)
    else:
        xps = [_profile_skill_xp(rng, profile, slot) for slot in range(len(LEVELLED))]
    for slot in _locked(build):
        xps[slot] = 0
    xps[_HITPOINTS] = max(xps[_HITPOINTS], HITPOINTS_START)
    if build is Build.LEVEL_3:
        xps[_HITPOINTS] = HITPOINTS_START  # combat level 3 for good
    return xps


def _idle_xp(rng: random.Random) -> list[int]:
    low, high, mode = _pick_tier(rng.random())
    # An idle low-level account never touched some skills at all.
    return [
        0
        if low == 1 and rng.random() < 0.3
        else _xp_within(rng, round(rng.triangular(low, high, mode)))
        for _ in LEVELLED
    ]


def _pick_tier(u: float) -> tuple[int, int, int]:
    for share, levels in _IDLE_TIERS:
        if u < share:
            return levels
        u -= share
    return _IDLE_TIERS[-1][1]


def _profile_skill_xp(rng: random.Random, profile: Profile, slot: int) -> int:
    combat = slot in _COMBAT
    if profile is Profile.SKILLER:
        if combat:
            return _xp_within(rng, round(rng.triangular(1, 50, 20)))
        if rng.random() < 0.15:
            return _past_99(rng, 60_000_000)
        return _xp_within(rng, round(rng.triangular(70, 99, 92)))
    if profile is Profile.BOSSER and combat:
        if rng.random() < 0.4:
            return _past_99(rng, 80_000_000)
        return _xp_within(rng, round(rng.triangular(85, 99, 96)))
    if rng.random() < 0.1:
        return _xp_within(rng, round(rng.triangular(1, 40, 10)))
    return _xp_within(rng, round(rng.triangular(30, 92, 70)))


def _maxed_xp(rng: random.Random) -> list[int]:
    capped = set(rng.sample(range(len(LEVELLED)), rng.randint(13, 20)))
    return [
        MAX_SKILL_XP if slot in capped else _past_99(rng, 60_000_000)
        for slot in range(len(LEVELLED))
    ]


def _new_xp(rng: random.Random) -> list[int]:
    # Fresh off Tutorial Island: a little xp here and there, one or two skills past level 15.
    xps = [rng.randrange(1, MIN_RANKED_XP) if rng.random() < 0.3 else 0 for _ in LEVELLED]
    for slot in rng.sample(range(len(LEVELLED)), rng.randint(1, 2)):
        xps[slot] = _xp_within(rng, rng.randint(15, 30))
    return xps


def _locked(build: Build) -> tuple[int, ...]:
    if build is Build.LEVEL_3:
        return tuple(s for s in sorted(_COMBAT) if s != _HITPOINTS)
    if build is Build.PURE:
        return (_SLOT["defence"],)
    return ()


def _start_scores(
    rng: random.Random, profile: Profile, build: Build, share: float = 1.0
) -> tuple[int, ...]:
    if profile is Profile.NEW:
        # A clue or a collection-log slot at most: nearly every board still unranked.
        firsts = {*CLUE_TIER_INDEXES[:1], COLLECTIONS_INDEX}
        return tuple(
            rng.randint(1, 3) if slot in firsts and rng.random() < 0.3 else 0
            for slot in range(len(SPECS))
        )
    mu = _SCORE_MU.get(profile, -0.3)
    draw, spread = rng.random, rng.lognormvariate
    # Some true scores fall below the ranked minimum: played, but not on the board yet.
    return tuple(
        max(1, int(spec.typical * spread(mu, 1.0))) if draw() < take_up * share else 0
        for spec, take_up in zip(SPECS, _take_ups(profile, build), strict=True)
    )


@functools.cache
def _take_ups(profile: Profile, build: Build) -> tuple[float, ...]:
    """The chance of having any score, per activity."""
    take_ups = []
    for slot, spec in enumerate(SPECS):
        take_up = spec.take_up * _TAKE_UP[profile]
        if profile is Profile.SKILLER and slot in SKILLING_INDEXES:
            take_up = spec.take_up * 1.8
        if build is Build.LEVEL_3 and slot not in SKILLING_INDEXES:
            take_up = 0.0
        take_ups.append(min(0.98, take_up))
    return tuple(take_ups)


def _trainable_skills(profile: Profile, build: Build) -> list[int]:
    if profile is Profile.SKILLER:
        slots = list(_NON_COMBAT)
    elif profile is Profile.BOSSER:
        slots = sorted(_COMBAT)
    else:
        slots = list(range(len(LEVELLED)))
    locked = _locked(build)
    return [s for s in slots if s not in locked]


def _lanes(
    rng: random.Random,
    profile: Profile,
    build: Build,
    start_xp: tuple[int, ...],
    play: Play,
    duty: float,
    tick_s: float,
) -> tuple[Lane, ...]:
    slots = [s for s in _trainable_skills(profile, build) if start_xp[s] < MAX_SKILL_XP]
    if not slots:
        return ()
    rng.shuffle(slots)
    count = min(len(slots), rng.randint(*play.lanes))
    queues = [tuple(slots[j::count]) for j in range(count)]
    rooms = [sum(MAX_SKILL_XP - start_xp[s] for s in queue) for queue in queues]
    total_room = sum(rooms)
    rate = min(MAX_PLAY_RATE, rng.uniform(*play.xp_per_hour) * PACE[slots[0]])
    # xp per hour of the day, all lanes together; small enough to last the horizon.
    per_hour = min(rate * duty, total_room / HORIZON_H)
    main = rooms.index(max(rooms))
    lanes = []
    for j, (queue, room) in enumerate(zip(queues, rooms, strict=True)):
        per_tick = per_hour * room / total_room * tick_s / 3600
        # One xp a tick at least on the main lane: an active account changes every tick.
        lanes.append(Lane(queue, max(1.0, per_tick) if j == main else per_tick))
    return tuple(lanes)


def _grinds(
    rng: random.Random, profile: Profile, build: Build, play: Play, duty: float, tick_s: float
) -> tuple[Grind, ...]:
    if profile is Profile.SKILLER or build is Build.LEVEL_3:
        pool = [s for s in SKILLING_INDEXES if s != COLLECTIONS_INDEX]
    elif profile is Profile.BOSSER or profile is Profile.MAXED:
        pool = list(BOSS_INDEXES)
    elif profile is Profile.NEW:
        pool = list(CLUE_TIER_INDEXES[:2])
    else:
        pool = [s for s in TRAINABLE if s != COLLECTIONS_INDEX]
    chosen = rng.sample(pool, min(len(pool), rng.randint(*play.grinds)))
    if COLLECTIONS_INDEX is not None and profile is not Profile.NEW:
        chosen.append(COLLECTIONS_INDEX)  # everything that drops fills the log, slowly
    return tuple(
        Grind(slot, SPECS[slot].per_hour * rng.uniform(0.5, 1.2) * duty * tick_s / 3600)
        for slot in chosen
    )
