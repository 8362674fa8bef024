"""Stateless scheduling: a player's due times are `phase(player_key) + k * interval`.

The phase spreads players evenly over the interval; the slot number `k` makes the command id
(`<player_key>:<k>`), so a restart or a second scheduler cannot fetch a slot twice."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math

import msgspec

from shared.events import PlayerTracked, PlayerUntracked, PlayerUpdated
from shared.modes import GameMode


def phase(player_key: str, interval_s: int) -> int:
    digest = hashlib.blake2b(player_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % interval_s


def slot_at(player_key: str, interval_s: int, t: float) -> int:
    """The slot whose due time is the latest at or before `t`."""
    return math.floor((t - phase(player_key, interval_s)) / interval_s)


def due_time(player_key: str, interval_s: int, slot: int) -> int:
    return phase(player_key, interval_s) + slot * interval_s


DETECT_GRACE_S = 30.0


def daily_slot(slot: int, interval_s: int) -> bool:
    """One slot a day (every slot for intervals of a day or more): when unranked players are
    checked."""
    return slot % max(1, 86_400 // interval_s) == 0


class TrackedPlayer(msgspec.Struct, gc=False):  # holds no containers: never in a cycle
    key: str
    display_name: str
    mode: GameMode
    interval_s: int
    since: float  # when tracking (or the interval) last changed: the API fetched then
    generation: int = 0  # bumped on every change, so stale heap entries are recognised
    detect_mode: bool = False  # tracked without a mode: one fetch a day re-detects it

    def first_slot(self, now: float) -> int:
        """The current slot, or the next one when the player was fetched on tracking inside it.

        A player whose account type is being detected gets a grace period first: detection asks
        up to four boards (confirming each 404), and a scheduled fetch before it ends would
        still ask the board of the old mode."""
        slot = slot_at(self.key, self.interval_s, now)
        if self.since >= due_time(self.key, self.interval_s, slot):
            slot += 1
        if self.detect_mode:
            grace = min(DETECT_GRACE_S, 5 * self.interval_s)
            while due_time(self.key, self.interval_s, slot) < self.since + grace:
                slot += 1
        return slot


class Due(msgspec.Struct, frozen=True):
    player: TrackedPlayer
    slot: int


class Schedule:
    """Who is tracked, and a heap of their next due slots."""

    def __init__(self) -> None:
        self.players: dict[str, TrackedPlayer] = {}
        self._heap: list[tuple[int, str, int, int]] = []  # (due time, key, generation, slot)
        self._generations = itertools.count()

    def apply(self, event: PlayerTracked | PlayerUntracked | PlayerUpdated, now: float) -> None:
        match event:
            case PlayerTracked():
                self._put(
                    event.player_key,
                    event.display_name,
                    event.mode,
                    event.interval_s,
                    event.at.timestamp(),
                    now,
                    detect_mode=event.detect_mode,
                )
            case PlayerUntracked():
                self.players.pop(event.player_key, None)
            case PlayerUpdated():
                current = self.players.get(event.player_key)
                if current is not None and event.if_mode in (None, current.mode):
                    self._put(
                        current.key,
                        event.display_name or current.display_name,
                        event.mode or current.mode,
                        event.interval_s or current.interval_s,
                        event.at.timestamp(),
                        now,
                        detect_mode=event.detect_mode,
                    )

    def _put(
        self,
        key: str,
        name: str,
        mode: GameMode,
        interval_s: int,
        since: float,
        now: float,
        detect_mode: bool | None = None,  # None: as it was
    ) -> None:
        previous = self.players.get(key)
        if detect_mode is None:
            detect_mode = previous.detect_mode if previous else False
        if previous is not None and previous.interval_s == interval_s:
            # Same slots: the heap entry stays valid.
            previous.display_name, previous.mode, previous.detect_mode = name, mode, detect_mode
            return
        player = TrackedPlayer(
            key, name, mode, interval_s, since, next(self._generations), detect_mode
        )
        self.players[key] = player
        self._push(player, player.first_slot(now))

    def reseed(self, now: float) -> None:
        """Rebuild the heap from `now`: a scheduler that just took the lease owes every player
        its current slot (those fetched inside it already are skipped when published)."""
        self._heap = []
        for player in self.players.values():
            slot = player.first_slot(now)
            self._heap.append(
                (due_time(player.key, player.interval_s, slot), player.key, player.generation, slot)
            )
        heapq.heapify(self._heap)

    def _push(self, player: TrackedPlayer, slot: int) -> None:
        due = due_time(player.key, player.interval_s, slot)
        heapq.heappush(self._heap, (due, player.key, player.generation, slot))

    def pop_due(self, now: float, limit: int | None = None) -> list[Due]:
        """The slots due at or before `now`, oldest first, at most `limit` of them; each
        player's next slot goes back on the heap, the slots left over stay due."""
        due: list[Due] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(due) < limit):
            _, key, generation, slot = heapq.heappop(self._heap)
            player = self.players.get(key)
            if player is None or player.generation != generation:
                continue  # untracked or rescheduled since
            slot = max(slot, slot_at(key, player.interval_s, now))  # missed slots collapse
            due.append(Due(player, slot))
            self._push(player, slot + 1)
        return due

    def retry(self, due: Due, at: float) -> None:
        """Put back a slot whose command could not be published."""
        heapq.heappush(self._heap, (at, due.player.key, due.player.generation, due.slot))

    def next_due_in(self, now: float) -> float | None:
        return max(0.0, self._heap[0][0] - now) if self._heap else None
