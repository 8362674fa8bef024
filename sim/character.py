"""One character's true stats as a closed-form function of the tick, so that any moment can be
asked for in any order without replaying the ticks before it."""

from __future__ import annotations

from dataclasses import dataclass

from shared.xp import MAX_SKILL_XP


@dataclass(frozen=True, slots=True)
class Lane:
    """Skills trained one after another, each up to 200M, at a steady rate. A player's lanes
    share out its skills, so they never train the same skill twice over."""

    queue: tuple[int, ...]  # levelled-skill slots, in training order
    per_tick: float  # xp per tick; >= 1 on an active player's main lane


@dataclass(frozen=True, slots=True)
class Grind:
    """An activity gaining score at a steady rate (kills, clues, points)."""

    slot: int  # activity index
    per_tick: float


@dataclass(frozen=True, slots=True)
class Character:
    start_xp: tuple[int, ...]  # the 24 levelled skills, in SKILL_NAMES order (Overall left out)
    start_score: tuple[int, ...]  # the true scores, which may be below the ranked minimum
    lanes: tuple[Lane, ...] = ()
    grinds: tuple[Grind, ...] = ()

    @property
    def gaining(self) -> bool:
        return bool(self.lanes or self.grinds)

    def xp_at(self, ticks: int) -> list[int]:
        xps = list(self.start_xp)
        if ticks <= 0:
            return xps
        for lane in self.lanes:
            gained = int(lane.per_tick * ticks)
            for slot in lane.queue:
                if gained <= 0:
                    break
                step = min(MAX_SKILL_XP - xps[slot], gained)
                xps[slot] += step
                gained -= step
        return xps

    def scores_at(self, ticks: int) -> list[int]:
        scores = list(self.start_score)
        if ticks <= 0:
            return scores
        for grind in self.grinds:
            scores[grind.slot] += int(grind.per_tick * ticks)
        return scores

    def room(self) -> int:
        """The xp the lanes can still gain before every skill they train is at 200M."""
        return sum(MAX_SKILL_XP - self.start_xp[slot] for lane in self.lanes for slot in lane.queue)
