"""A deterministic synthetic population of OSRS accounts, and what each hiscores board shows.

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

from shared.metrics import ACTIVITY_NAMES
from shared.modes import MODULES, GameMode
from shared.players import InvalidPlayerName, player_key
from sim.activities import DEADMAN_POINTS, LEAGUE_POINTS, spec_for
from sim.character import Character
from sim.layout import BASE_LAYOUT, Layout, lay_out
from sim.payload import ActivityRow, HiscoresState, to_csv, to_json
from sim.profiles import (
    LEVELLED,
    PROFILE_SHARES,
    Build,
    Profile,
    build_character,
    build_temp_character,
)
from sim.ranks import board_rank, day_factors, mix64, name_hash, unit
from sim.rows import (
    ACTIVITY_OFFSET,
    FACTOR_COUNT,
    MAX_NEW_BOSSES,
    UNRANKED,
    DayRows,
    Sheet,
    activity_raw,
    activity_rows,
    day_rows,
    make_sheet,
    skill_rows,
)

DE_IRONED = "de_ironed"  # an account type the boards tell, not one an account is created as
DEFAULT_EPOCH = 1_735_689_600.0  # 2025-01-01T00:00:00Z
DAY_S = 86_400
MAX_PLAYERS = 99_999_999  # "Sim 99999999" is 12 characters, the longest legal name
REGULAR_MODULE = MODULES[GameMode.REGULAR]
IRONMAN_MODULE = MODULES[GameMode.IRONMAN]
HARDCORE_MODULE = MODULES[GameMode.HARDCORE]
# Everything is rebuilt on a miss (a few hundred microseconds), so these only bound memory:
# about 5 kB a character, 12 kB a day's rows, 7 kB a payload; 100 MB at most in all.
PLAYER_CACHE = 100_000
CHARACTER_CACHE = 8_192
DAY_ROWS_CACHE = 4_096
PAYLOAD_CACHE = 2_048
HARDCORE_DEATHS = 0.5  # of active hardcores
DE_IRONS = 0.2  # of active ironmen
FATE_TICKS = (30, 2_000_000)  # deaths and de-irons fall log-uniformly between these ticks

_SIM_KEY = re.compile(r"sim_([1-9][0-9]{0,7})")
_ACCOUNT_TYPES = (
    (GameMode.REGULAR, 0.70),
    (GameMode.IRONMAN, 0.15),
    (GameMode.HARDCORE, 0.08),
    (GameMode.ULTIMATE, 0.07),
)
_IRON = (REGULAR_MODULE, IRONMAN_MODULE)
_BOARDS: dict[GameMode, tuple[str, ...]] = {
    GameMode.REGULAR: (REGULAR_MODULE,),
    GameMode.IRONMAN: _IRON,
    GameMode.HARDCORE: (*_IRON, HARDCORE_MODULE),
    GameMode.ULTIMATE: (*_IRON, MODULES[GameMode.ULTIMATE]),
}
# Temporary worlds: a separate character under the same name, for a few players each.
_TEMP_WORLDS: tuple[tuple[str, float, str | None], ...] = (
    (MODULES[GameMode.SEASONAL], 0.05, LEAGUE_POINTS),
    (MODULES[GameMode.DEADMAN], 0.03, DEADMAN_POINTS),
    (MODULES[GameMode.FRESH_START], 0.02, None),
    (MODULES[GameMode.TOURNAMENT], 0.01, None),
)
_TEMP = {module: points for module, _, points in _TEMP_WORLDS}
_BUILD_EXTRA = {
    Build.MAIN: (),
    Build.LEVEL_3: (MODULES[GameMode.SKILLER], MODULES[GameMode.DEFENCE_PURE]),
    Build.PURE: (MODULES[GameMode.DEFENCE_PURE],),
}
_NEW_BOSS_TAKE_UP = {Profile.NEW: 0.0, Profile.BOSSER: 2.5, Profile.MAXED: 3.0}


@dataclass(frozen=True, slots=True)
class SimPlayer:
    index: int
    name: str
    key: str
    account_type: GameMode  # what it was created as; see died_at_tick and deironed_at_tick
    active: bool  # its payload changes every tick; an idle account never gains xp or score
    profile: Profile
    build: Build
    boards: tuple[str, ...]  # the hiscores modules it appears on
    died_at_tick: int | None = None  # a hardcore's hardcore board freezes from this tick on
    deironed_at_tick: int | None = None  # an ironman's ironman board freezes from this tick on

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "active": self.active,
            "account_type": self.account_type.value,
            "profile": self.profile.value,
            "build": self.build.value,
            "boards": list(self.boards),
            "died_at_tick": self.died_at_tick,
            "deironed_at_tick": self.deironed_at_tick,
        }


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
        self._sheet = functools.lru_cache(maxsize=CHARACTER_CACHE)(self._build_sheet)
        self._day_rows = functools.lru_cache(maxsize=DAY_ROWS_CACHE)(self._build_day_rows)
        self.player = functools.lru_cache(maxsize=PLAYER_CACHE)(self.player)  # type: ignore
        self._encoded = functools.lru_cache(maxsize=PAYLOAD_CACHE)(self._encode)

    # --- who is who -------------------------------------------------------------------------

    def player(self, index: int) -> SimPlayer:
        if not 0 <= index < self.size:
            raise IndexError(f"no player {index} in a population of {self.size}")
        number = index + 1
        # One seeded generator for the lot: cheaper than a hash per draw.
        draw = random.Random(mix64(self.seed, index, 0x9A7E5)).random
        account_type = _pick(_ACCOUNT_TYPES, draw())
        profile = _pick(PROFILE_SHARES, draw())
        build = _build(profile, draw())
        active = profile is not Profile.IDLE
        fate, fated = _fate_tick(draw()), draw()
        died = deironed = None
        if active and account_type is GameMode.HARDCORE and fated < HARDCORE_DEATHS:
            died = fate
        if active and account_type is GameMode.IRONMAN and fated < DE_IRONS:
            deironed = fate
        temp = tuple(module for module, share, _ in _TEMP_WORLDS if draw() < share)
        return SimPlayer(
            index=index,
            name=f"Sim {number}",
            key=f"sim_{number}",
            account_type=account_type,
            active=active,
            profile=profile,
            build=build,
            boards=_BOARDS[account_type] + _BUILD_EXTRA[build] + temp,
            died_at_tick=died,
            deironed_at_tick=deironed,
        )

    def find(self, name: str) -> SimPlayer | None:
        """The player whose name folds to the same key as `name`, ignoring case and ` _-`."""
        try:
            key = player_key(name)
        except InvalidPlayerName:
            return None
        return self.find_key(key)

    def find_key(self, key: str) -> SimPlayer | None:
        """The player with this player_key, if any."""
        match = _SIM_KEY.fullmatch(key)
        if match is None or int(match[1]) > self.size:
            return None
        return self.player(int(match[1]) - 1)

    def account_type_at(self, player: SimPlayer, t: float) -> str:
        """What the boards make of the account at t: a de-ironed ironman reads as `de_ironed`
        (regular Overall past the frozen iron one), a dead hardcore as `ironman`."""
        ticks = self.ticks_at(t)
        if player.deironed_at_tick is not None and ticks > player.deironed_at_tick:
            return DE_IRONED
        if player.died_at_tick is not None and ticks > player.died_at_tick:
            return GameMode.IRONMAN.value
        return player.account_type.value

    def time_of_tick(self, tick: int) -> float:
        """The unix time at which `tick` starts."""
        return self.epoch + tick * self.tick_s

    # --- what the boards show ---------------------------------------------------------------

    def ticks_at(self, t: float) -> int:
        return max(0, math.floor((t - self.epoch) / self.tick_s))

    def character(self, player: SimPlayer, module: str = REGULAR_MODULE) -> Character:
        return self._sheet(player.index, module if module in _TEMP else None).character

    def xp_at(self, player: SimPlayer, t: float) -> dict[str, int]:
        """The true xp of every levelled skill, including skills the board shows as unranked."""
        xps = self.character(player).xp_at(self.ticks_at(t))
        return dict(zip(LEVELLED, xps, strict=True))

    def board_ticks(self, player: SimPlayer, module: str, ticks: int) -> int:
        """The tick whose stats `module` shows: a dead hardcore's and a de-ironed account's old
        board stay where they were when it happened."""
        if module == HARDCORE_MODULE and player.died_at_tick is not None:
            return min(ticks, player.died_at_tick)
        if module == IRONMAN_MODULE and player.deironed_at_tick is not None:
            return min(ticks, player.deironed_at_tick)
        return ticks

    def state_at(
        self,
        player: SimPlayer,
        t: float,
        module: str = REGULAR_MODULE,
        layout: Layout = BASE_LAYOUT,
    ) -> HiscoresState:
        """What `module` shows for the player at unix time t (whether or not it is on it)."""
        ticks = self.board_ticks(player, module, self.ticks_at(t))
        return self._state(player.index, module, ticks, _utc_day(t), layout)

    def truth(
        self,
        player: SimPlayer,
        t: float,
        module: str = REGULAR_MODULE,
        layout: Layout = BASE_LAYOUT,
    ) -> HiscoresState | None:
        """Exactly what the simulator serves for the player on `module` at t (before faults),
        or None where the board answers 404."""
        if module not in player.boards:
            return None
        return self.state_at(player, t, module, layout)

    def payload(
        self, player: SimPlayer, t: float, module: str, fmt: str, layout: Layout = BASE_LAYOUT
    ) -> bytes | None:
        """truth() encoded as `json` or `csv`, from a cache: the same board on the same tick and
        day is built once."""
        if module not in player.boards:
            return None
        ticks = self.board_ticks(player, module, self.ticks_at(t))
        if not player.active or module in _TEMP:
            ticks = 0  # never changes: one payload a day
        return self._encoded(player.index, module, fmt, ticks, _utc_day(t), layout)

    def _encode(self, index: int, module: str, fmt: str, ticks: int, day: int, layout: Layout):
        state = self._state(index, module, ticks, day, layout)
        return to_json(state) if fmt == "json" else to_csv(state)

    def _state(
        self, index: int, module: str, ticks: int, day: int, layout: Layout
    ) -> HiscoresState:
        today = self._day_rows(index, module, day)
        character = today.sheet.character
        activities = activity_rows(character.scores_at(ticks), today)
        if layout.changed:
            new_rows = self._new_boss_rows(index, layout, today.factors)
            activities = lay_out(layout, activities, new_rows)
        return HiscoresState(
            name=f"Sim {index + 1}",
            skills=skill_rows(character.xp_at(ticks), today),
            activities=activities,
        )

    def _build_sheet(self, index: int, temp_module: str | None) -> Sheet:
        player = self.player(index)
        if temp_module is None:
            rng = random.Random(f"osrs-diff-sim:{self.seed}:{index}")
            character = build_character(rng, player.profile, player.build, self.tick_s)
        else:
            rng = random.Random(f"osrs-diff-sim:{self.seed}:{index}:{temp_module}")
            points = _TEMP[temp_module]
            slot = ACTIVITY_NAMES.index(points) if points in ACTIVITY_NAMES else None
            character = build_temp_character(rng, slot)
        return make_sheet(character, self.seed, index)

    def _build_day_rows(self, index: int, module: str, day: int) -> DayRows:
        sheet = self._sheet(index, module if module in _TEMP else None)
        since_epoch = day - _utc_day(self.epoch)
        return day_rows(
            sheet, day_factors(self.seed, index, module, day, since_epoch, FACTOR_COUNT)
        )

    def _new_boss_rows(
        self, index: int, layout: Layout, factors: tuple[float, ...]
    ) -> dict[str, ActivityRow]:
        """A score on each new boss: static, and only for the few who took it up."""
        take_up = _NEW_BOSS_TAKE_UP.get(self.player(index).profile, 1.0)
        rows = {}
        for j, (name, _) in enumerate(layout.new_bosses):
            spec, h = spec_for(name), name_hash(name)
            score = 0
            if unit(self.seed, index, h) < spec.take_up * take_up:
                score = max(1, int(spec.typical * math.exp(2 * unit(self.seed, index, h, 1) - 1)))
            raw = activity_raw(spec, score)
            if raw == UNRANKED:
                rows[name] = ActivityRow(0, name, -1, -1)
            else:
                factor = factors[ACTIVITY_OFFSET + len(ACTIVITY_NAMES) + j % MAX_NEW_BOSSES]
                rows[name] = ActivityRow(0, name, board_rank(raw, factor), score)
        return rows


def _pick(table: tuple[tuple[Any, float], ...], u: float) -> Any:
    for value, share in table:
        if u < share:
            return value
        u -= share
    return table[-1][0]


def _build(profile: Profile, u: float) -> Build:
    if profile is Profile.SKILLER and u < 0.3:
        return Build.LEVEL_3
    if profile is Profile.BOSSER and u < 0.15:
        return Build.PURE
    return Build.MAIN


def _fate_tick(u: float) -> int:
    low, high = FATE_TICKS
    return round(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))


def _utc_day(t: float) -> int:
    return math.floor(t / DAY_S)
