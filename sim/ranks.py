"""The rank model: where an xp total or a score sits on a board, plus the daily drift.

Ranks are a pure function of (value, board, player, UTC day) so that payloads stay reproducible;
nothing here keeps state."""

from __future__ import annotations

import math

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
}


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


def curve_rank(log_value: float, log_median: float, spread: float, cap: int) -> float:
    """The share of a board above this value, times the board's depth: values are log-normal
    across players, so most of the board is mid-level and the top thins out fast."""
    return cap * 0.5 * math.erfc((log_value - log_median) / (spread * _SQRT2))


_DRIFT_SALTS = tuple(mix64(0xD81F7, metric) for metric in range(256))


def drift_factor(day_hash: int, metric: int) -> float:
    """1.0 to 1.01: other players overtake a little every day, even while this one is idle."""
    salted = ((day_hash ^ _DRIFT_SALTS[metric & 0xFF]) * 0xBF58476D1CE4E5B9) & _M64
    return 1.0 + ((salted >> 40) % 1000) / 100_000


def board_rank(raw: float, scale: float, drift: float) -> int:
    return max(1, min(RANK_CAP, int(raw * scale * drift)))
