"""The rank model: where an xp total or a score sits on a board, plus the drift over time.

Ranks are a pure function of (value, board, player, UTC day) so that payloads stay reproducible;
nothing here keeps state."""

from __future__ import annotations

import math
import random

from shared.modes import MODULES, GameMode

RANK_CAP = 2_000_000  # the hiscores stop at about two million ranks
_M64 = (1 << 64) - 1
_SQRT2 = math.sqrt(2.0)

# A smaller board has proportionally better ranks for the same xp.
BOARD_SCALE: dict[str, float] = {
    MODULES[GameMode.REGULAR]: 1.0,
    MODULES[GameMode.IRONMAN]: 0.2,
    MODULES[GameMode.HARDCORE]: 0.03,
    MODULES[GameMode.ULTIMATE]: 0.02,
    MODULES[GameMode.DEADMAN]: 0.05,
    MODULES[GameMode.SEASONAL]: 0.1,
    MODULES[GameMode.TOURNAMENT]: 0.002,
    MODULES[GameMode.FRESH_START]: 0.02,
    MODULES[GameMode.DEFENCE_PURE]: 0.01,
    MODULES[GameMode.SKILLER]: 0.005,
}
# Others keep playing: a player who stands still loses about 11% of rank positions a year.
TREND_PER_DAY = 0.0003
DAILY_JITTER = 0.01  # and a little noise from one day to the next


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def mix64(*parts: int) -> int:
    """A 64-bit hash of integers that, unlike hash(), is the same in every process."""
    h = 0x243F6A8885A308D3
    for part in parts:
        h = _splitmix(h ^ (part & _M64))
    return h


def unit(*parts: int) -> float:
    """A uniform number in [0, 1) drawn from the parts."""
    return (mix64(*parts) >> 11) / float(1 << 53)


def name_hash(name: str) -> int:
    """A stable integer for a name (an activity Jagex adds later, say)."""
    h = 0
    for byte in name.encode("utf-8"):
        h = _splitmix(h ^ byte)
    return h


def curve_rank(log_value: float, log_median: float, spread: float, cap: int) -> float:
    """The share of a board above this value, times the board's depth: values are log-normal
    across players, so most of the board is mid-level and the top thins out fast."""
    return cap * 0.5 * math.erfc((log_value - log_median) / (spread * _SQRT2))


def day_factors(seed: int, index: int, module: str, day: int, days_since_epoch: int, n: int):
    """One rank multiplier per entry for this player on this board on this UTC day: the board's
    size, the slow trend and the daily noise. Drawn from a seeded generator, not hash(), so
    every process agrees."""
    base = BOARD_SCALE.get(module, 1.0) * (1.0 + TREND_PER_DAY * max(0, days_since_epoch))
    draw = random.Random(mix64(seed, index, name_hash(module), day)).random
    jitter = base * DAILY_JITTER
    return tuple([base + jitter * draw() for _ in range(n)])


def board_rank(raw: float, factor: float) -> int:
    return max(1, min(RANK_CAP, int(raw * factor)))
