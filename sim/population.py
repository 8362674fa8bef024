"""A deterministic synthetic population of OSRS accounts, and what the hiscores show for each.

Everything derives from (seed, player index, time) through seeded generators and a fixed hash,
never `hash()`, so two processes with the same seed serve byte-identical payloads."""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.metrics import ACTIVITY_NAMES, SKILL_NAMES, metric_key
from shared.modes import MODULES, GameMode
from shared.players import InvalidPlayerName, player_key
from shared.xp import MAX_SKILL_XP, XP_FOR_LEVEL, level
from sim.activities import (
    CLUE_ALL_INDEX,
    CLUE_TIER_INDEXES,
    SPECS,
    TRAINABLE,
    ActivitySpec,
)
from sim.payload import ActivityRow, HiscoresState, SkillRow
from sim.ranks import BOARD_SCALE, RANK_CAP, board_rank, curve_rank, drift_factor, mix64, unit

DEFAULT_EPOCH = 1_735_689_600.0  # 2025-01-01T00:00:00Z
MAX_PLAYERS = 99_999_999  # "Sim 99999999" is 12 characters, the longest legal name
REGULAR_MODULE = MODULES[GameMode.REGULAR]
MIN_RANKED_XP = XP_FOR_LEVEL[15]  # below it a skill shows rank -1, level 1, xp -1
ACTIVE_SHARE = 0.6
PROFILE_CACHE = 20_000  # profiles are rebuilt on a miss, so this only bounds memory

_SIM_KEY = re.compile(r"sim_([1-9][0-9]{0,7})")
_ACCOUNT_TYPES = (
    (GameMode.REGULAR, 0.70),
    (GameMode.IRONMAN, 0.15),
    (GameMode.HARDCORE, 0.08),
    (GameMode.ULTIMATE, 0.07),
)
_TIERS = (("low", 0.25), ("mid", 0.55), ("high", 0.15), ("maxed", 0.05))
_TAKE_UP = {"low": 0.3, "mid": 1.0, "high": 1.8, "maxed": 2.5}  # higher accounts do more content
_IRON = (MODULES[GameMode.REGULAR], MODULES[GameMode.IRONMAN])
_BOARDS: dict[GameMode, tuple[str, ...]] = {
    GameMode.REGULAR: (MODULES[GameMode.REGULAR],),
    GameMode.IRONMAN: _IRON,
    GameMode.HARDCORE: (*_IRON, MODULES[GameMode.HARDCORE]),
    GameMode.ULTIMATE: (*_IRON, MODULES[GameMode.ULTIMATE]),
}

_OVERALL_ID = next(i for i, n in enumerate(SKILL_NAMES) if metric_key(n) == "overall")
_LEVELLED_IDS = tuple(i for i in range(len(SKILL_NAMES)) if i != _OVERALL_ID)
_LEVELLED = tuple(SKILL_NAMES[i] for i in _LEVELLED_IDS)
_HITPOINTS = _LEVELLED.index("Hitpoints")
# Some skills are trained by more players than others: spread the rank curves a little.
_SKILL_MEDIANS = tuple(math.log(300_000 * (0.5 + unit(0x5C111, i))) for i in _LEVELLED_IDS)
_SKILL_SPREAD = 1.8  # in log-xp: a level-15 skill ranks near the bottom, 200M near the top
_OVERALL_MEDIAN = math.log(10_000_000)
_OVERALL_SPREAD = 1.6
_ACTIVITY_MEDIANS = tuple(math.log(spec.typical) for spec in SPECS)
_ACTIVITY_SPREAD = 1.2
_TRAIN_BELOW = 100_000_000  # grind only skills with room, so active accounts keep changing


@dataclass(frozen=True, slots=True)
class SimPlayer:
    index: int
    name: str
    key: str
    account_type: GameMode
    active: bool  # an idle account never gains xp or score
    tier: str  # "low", "mid", "high" or "maxed"

    @property
    def boards(self) -> tuple[str, ...]:
        """The hiscores modules this account appears on."""
        return _BOARDS[self.account_type]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "active": self.active,
            "account_type": self.account_type.value,
        }


@dataclass(frozen=True, slots=True)
class _Profile:
    start_xp: tuple[int, ...]  # the 24 levelled skills, in SKILL_NAMES order
    xp_rate: tuple[int, ...]  # xp per tick
    start_score: tuple[int, ...]  # the true score, which may be below the ranked minimum
    score_period: tuple[int, ...]  # ticks per point; 0 = not gaining
    gaining: bool

    def xp_at(self, ticks: int) -> list[int]:
        if not (self.gaining and ticks):
            return list(self.start_xp)
        return [
            min(MAX_SKILL_XP, s + r * ticks)
            for s, r in zip(self.start_xp, self.xp_rate, strict=True)
        ]

    def scores_at(self, ticks: int) -> list[int]:
        if not (self.gaining and ticks):
            return list(self.start_score)
        pairs = zip(self.start_score, self.score_period, strict=True)
        return [s + ticks // p if p else s for s, p in pairs]


class _Roster(Sequence[SimPlayer]):
    """The players, built on demand: a million-account population costs nothing up front."""

    def __init__(self, population: Population) -> None:
        self._population = population

    def __len__(self) -> int:
        return self._population.size

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._population.player(i) for i in range(*index.indices(len(self)))]
        return self._population.player(index + len(self) if index < 0 else index)


class Population:
    def __init__(
        self, size: int, seed: int = 1, tick_s: float = 60.0, epoch: float = DEFAULT_EPOCH
    ) -> None:
        if not 0 <= size <= MAX_PLAYERS:
            raise ValueError(f"size must be 0..{MAX_PLAYERS}, got {size}")
        if tick_s <= 0:
            raise ValueError(f"tick_s must be positive, got {tick_s}")
        self.size = size
        self.seed = seed
        self.tick_s = tick_s
        self.epoch = epoch
        self.players: Sequence[SimPlayer] = _Roster(self)
        self._profile = functools.lru_cache(maxsize=PROFILE_CACHE)(self._build_profile)

    def player(self, index: int) -> SimPlayer:
        if not 0 <= index < self.size:
            raise IndexError(f"no player {index} in a population of {self.size}")
        number = index + 1
        return SimPlayer(
            index=index,
            name=f"Sim {number}",
            key=f"sim_{number}",
            account_type=_pick(_ACCOUNT_TYPES, unit(self.seed, index, 1)),
            active=unit(self.seed, index, 2) < ACTIVE_SHARE,
            tier=_pick(_TIERS, unit(self.seed, index, 3)),
        )

    def find(self, name: str) -> SimPlayer | None:
        """The player whose name folds to the same key as `name`, ignoring case and ` _-`."""
        try:
            key = player_key(name)
        except InvalidPlayerName:
            return None
        match = _SIM_KEY.fullmatch(key)
        if match is None or int(match[1]) > self.size:
            return None
        return self.player(int(match[1]) - 1)

    def ticks_at(self, t: float) -> int:
        return max(0, math.floor((t - self.epoch) / self.tick_s))

    def xp_at(self, player: SimPlayer, t: float) -> dict[str, int]:
        """The true xp of every levelled skill, including skills the board shows as unranked."""
        xps = self._profile(player.index).xp_at(self.ticks_at(t))
        return dict(zip(_LEVELLED, xps, strict=True))

    def state_at(self, player: SimPlayer, t: float, module: str = REGULAR_MODULE) -> HiscoresState:
        """What `module` shows for the player at unix time t."""
        profile = self._profile(player.index)
        ticks = self.ticks_at(t)
        day_hash = mix64(self.seed, player.index, math.floor(t / 86_400))
        scale = BOARD_SCALE.get(module, 1.0)
        return HiscoresState(
            name=player.name,
            skills=_skill_rows(profile.xp_at(ticks), day_hash, scale),
            activities=_activity_rows(profile.scores_at(ticks), day_hash, scale),
        )

    def _build_profile(self, index: int) -> _Profile:
        player = self.player(index)
        rng = random.Random(f"osrs-diff-sim:{self.seed}:{index}")
        start_xp = tuple(_start_xp(rng, player.tier, skill) for skill in range(len(_LEVELLED)))
        start_score = tuple(_start_score(rng, player.tier, spec) for spec in SPECS)
        if not player.active:
            return _Profile(start_xp, (0,) * len(start_xp), start_score, (0,) * len(SPECS), False)
        rates = _xp_rates(rng, start_xp, self.tick_s)
        return _Profile(start_xp, rates, start_score, _score_periods(rng, self.tick_s), True)


def _pick(table: tuple[tuple[Any, float], ...], u: float) -> Any:
    for value, share in table:
        if u < share:
            return value
        u -= share
    return table[-1][0]


def _xp_within(rng: random.Random, lvl: int) -> int:
    if lvl >= 99:
        return XP_FOR_LEVEL[99] + rng.randrange(2_000_000)
    return XP_FOR_LEVEL[lvl] + rng.randrange(XP_FOR_LEVEL[lvl + 1] - XP_FOR_LEVEL[lvl])


def _start_xp(rng: random.Random, tier: str, skill: int) -> int:
    if tier == "maxed":
        # Heavy tail: a few maxed accounts already sit at 200M in some skill.
        xp = int(XP_FOR_LEVEL[99] * rng.lognormvariate(0.3, 1.0))
        xp = min(MAX_SKILL_XP, max(XP_FOR_LEVEL[99], xp))
    elif tier == "high":
        xp = _xp_within(rng, round(rng.triangular(70, 99, 93)))
    elif tier == "mid":
        xp = _xp_within(rng, round(rng.triangular(30, 92, 70)))
    elif rng.random() < 0.3:
        xp = 0  # a low account that never touched this skill
    else:
        xp = _xp_within(rng, round(rng.triangular(1, 50, 12)))
    # Every account starts with 10 Hitpoints.
    return max(xp, XP_FOR_LEVEL[10]) if skill == _HITPOINTS else xp


def _start_score(rng: random.Random, tier: str, spec: ActivitySpec) -> int:
    if rng.random() >= min(0.98, spec.take_up * _TAKE_UP[tier]):
        return 0
    # Some true scores fall below the ranked minimum: played, but not on the board yet.
    return max(1, int(spec.typical * rng.lognormvariate(-0.3, 1.0)))


def _xp_rates(rng: random.Random, start_xp: tuple[int, ...], tick_s: float) -> tuple[int, ...]:
    room = [i for i, xp in enumerate(start_xp) if xp < _TRAIN_BELOW] or list(range(len(start_xp)))
    rates = [0] * len(start_xp)
    for skill in rng.sample(room, min(len(room), rng.randint(2, 5))):
        # 2-15 xp a minute: a regular player's average over months (1-8M a year), not an
        # hourly rate, so that a 2025 epoch still leaves room below 200M for years.
        rates[skill] = max(1, round(rng.uniform(2, 15) * tick_s / 60))
    return tuple(rates)


def _score_periods(rng: random.Random, tick_s: float) -> tuple[int, ...]:
    periods = [0] * len(SPECS)
    for activity in rng.sample(TRAINABLE, rng.randint(1, 3)):
        periods[activity] = max(1, round(rng.uniform(30, 720) * 60 / tick_s))  # a kc every 0.5-12 h
    return tuple(periods)


def _skill_row(
    sid: int, name: str, xp: int, log_median: float, day_hash: int, scale: float
) -> SkillRow:
    if xp < MIN_RANKED_XP:
        return SkillRow(sid, name, -1, 1, -1)
    raw = curve_rank(math.log(xp), log_median, _SKILL_SPREAD, RANK_CAP)
    return SkillRow(sid, name, board_rank(raw, scale, drift_factor(day_hash, sid)), level(xp), xp)


def _skill_rows(xps: list[int], day_hash: int, scale: float) -> list[SkillRow]:
    entries = zip(_LEVELLED_IDS, _LEVELLED, xps, _SKILL_MEDIANS, strict=True)
    rows = [_skill_row(*entry, day_hash, scale) for entry in entries]
    # Overall counts the true xp and levels, unranked skills included.
    total_xp = sum(xps)
    raw = curve_rank(math.log(max(total_xp, 1)), _OVERALL_MEDIAN, _OVERALL_SPREAD, RANK_CAP)
    rank = board_rank(raw, scale, drift_factor(day_hash, _OVERALL_ID))
    total_level = sum(level(xp) for xp in xps)
    overall = SkillRow(_OVERALL_ID, SKILL_NAMES[_OVERALL_ID], rank, total_level, total_xp)
    rows.insert(_OVERALL_ID, overall)
    return rows


def _activity_rows(scores: list[int], day_hash: int, scale: float) -> list[ActivityRow]:
    if CLUE_ALL_INDEX is not None:
        scores[CLUE_ALL_INDEX] = sum(scores[i] for i in CLUE_TIER_INDEXES)
    rows = []
    offset = len(SKILL_NAMES)  # keeps activity drift independent of skill drift
    entries = zip(ACTIVITY_NAMES, SPECS, _ACTIVITY_MEDIANS, scores, strict=True)
    for aid, (name, spec, log_median, score) in enumerate(entries):
        if score < spec.minimum:
            rows.append(ActivityRow(aid, name, -1, -1))
            continue
        raw = curve_rank(math.log(score), log_median, _ACTIVITY_SPREAD, spec.rank_cap)
        rank = board_rank(raw, scale, drift_factor(day_hash, offset + aid))
        rows.append(ActivityRow(aid, name, rank, score))
    return rows
