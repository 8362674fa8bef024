"""One fetch: ask the hiscores, compare the payload hash with the last one seen, publish
`HiscoreObserved` only when it changed and `FetchCompleted` every time."""

from __future__ import annotations

import logging

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from prometheus_client import Counter

from services.fetcher.client import HiscoresAnswer, HiscoresClient
from services.fetcher.hiscores import payload_hash
from shared import nats as natsx
from shared import subjects
from shared.events import (
    FetchCompleted,
    FetchOutcome,
    FetchRequested,
    HiscoreObserved,
    PlayerUpdated,
    utcnow,
)
from shared.modes import GameMode, account_type

log = logging.getLogger("osrs.fetcher")

FETCHES = Counter("osrs_fetches_total", "Fetches of a player's hiscores, by outcome", ["outcome"])


class Fetched(msgspec.Struct, frozen=True):
    completed: FetchCompleted
    retry_after: float | None = None  # what the hiscores asked for with a 429


class FetchHandler:
    def __init__(self, hiscores: HiscoresClient, js: JetStreamContext, hashes: KeyValue) -> None:
        self.hiscores = hiscores
        self.js = js
        self.hashes = hashes

    async def handle(self, cmd: FetchRequested) -> Fetched:
        answers: dict[GameMode, HiscoresAnswer] = {}
        failed = None
        if cmd.detect_mode:
            detected, answers, failed = await self._detect(cmd)
            if detected is not None and detected != cmd.mode:
                await self._mode_changed(cmd, detected)
                cmd = msgspec.structs.replace(cmd, mode=detected)
        board = GameMode.REGULAR if cmd.mode is GameMode.DE_IRONED else cmd.mode
        # A board that failed during detection fails the fetch: the command comes back and
        # detection is tried again, rather than put off for a day.
        answer = failed or answers.get(board)
        answer = answer or await self.hiscores.lookup(cmd.display_name, cmd.mode)
        observed_at = utcnow()
        if answer.hiscores is None:
            outcome = answer.outcome
        else:
            changed = await self._observe(cmd, answer, observed_at)
            outcome = FetchOutcome.CHANGED if changed else FetchOutcome.UNCHANGED
        completed = FetchCompleted(
            player_key=cmd.player_key,
            mode=cmd.mode,
            outcome=outcome,
            http_status=answer.http_status,
            detail=answer.detail,
            not_found_streak=await self._count_misses(cmd, outcome),
            request_id=cmd.id,
        )
        await natsx.publish(
            self.js,
            subjects.status_subject(cmd.player_key),
            completed,
            msg_id=completed.id,
            stream=subjects.STATUS_STREAM,
        )
        FETCHES.labels(completed.outcome.value).inc()
        log.info(
            "fetched player_key=%s mode=%s reason=%s outcome=%s http_status=%s detail=%r",
            cmd.player_key,
            cmd.mode,
            cmd.reason,
            completed.outcome,
            completed.http_status,
            completed.detail,
        )
        return Fetched(completed, answer.retry_after)

    async def _observe(self, cmd: FetchRequested, answer: HiscoresAnswer, observed_at) -> bool:
        """Publish the observation when its hash differs from the last one seen; True if it did."""
        hiscores = answer.hiscores
        digest = payload_hash(hiscores.skills, hiscores.activities)
        key = subjects.hash_key(cmd.mode, cmd.player_key)
        try:
            entry = await self.hashes.get(key)
            last_hash, revision = entry.value.decode(), entry.revision
        except KeyNotFoundError:
            last_hash, revision = None, None
        if last_hash == digest:
            return False
        observed = HiscoreObserved(
            player_key=cmd.player_key,
            display_name=hiscores.name or cmd.display_name,
            mode=cmd.mode,
            observed_at=observed_at,
            hash=digest,
            skills=hiscores.skills,
            activities=hiscores.activities,
        )
        # Publish first, then move the hash: a crash in between redelivers the command, and the
        # message id `<key>:<mode>:<hash>` lets JetStream drop the second copy. (The mode is in
        # it because an iron account shows the same payload on two boards.)
        await natsx.publish(
            self.js,
            subjects.observed_subject(cmd.player_key),
            observed,
            msg_id=f"{cmd.player_key}:{cmd.mode}:{digest}",
            stream=subjects.EVT_STREAM,
        )
        try:
            if revision is None:
                await self.hashes.create(key, digest.encode())
            else:
                await self.hashes.update(key, digest.encode(), last=revision)
        except KeyWrongLastSequenceError:
            # Another fetcher moved the hash meanwhile; its observation is in the log too.
            log.info("hash_race player_key=%s mode=%s", cmd.player_key, cmd.mode)
        return True

    async def _detect(
        self, cmd: FetchRequested
    ) -> tuple[GameMode | None, dict[GameMode, HiscoresAnswer], HiscoresAnswer | None]:
        """Ask the boards in turn (regular, ironman, hardcore, ultimate), stopping as soon as
        the account type is clear. Returns the type the boards prove (None: no change proven),
        every answer, and the answer of a board that failed."""
        answers: dict[GameMode, HiscoresAnswer] = {}
        overall: dict[GameMode, int | None] = {}
        for board in (GameMode.REGULAR, GameMode.IRONMAN, GameMode.HARDCORE, GameMode.ULTIMATE):
            answer = answers[board] = await self.hiscores.lookup(cmd.display_name, board)
            if answer.hiscores is None and answer.outcome is not FetchOutcome.NOT_FOUND:
                return None, answers, answer  # an outage or bad data: decide when it is over
            overall[board] = _overall_xp(answer.hiscores) if answer.hiscores else None
            if overall[board] is None and board in (GameMode.REGULAR, GameMode.IRONMAN):
                break
            if board is GameMode.IRONMAN and overall[GameMode.REGULAR] > overall[board]:
                break  # de-ironed
            if board is GameMode.HARDCORE and overall[board] is not None:
                break
        return proven_change(cmd.mode, account_type(overall), overall), answers, None

    async def _mode_changed(self, cmd: FetchRequested, detected: GameMode) -> None:
        event = PlayerUpdated(
            player_key=cmd.player_key, mode=detected, by="fetcher", if_mode=cmd.mode
        )
        await natsx.publish(
            self.js, subjects.PLAYER_UPDATED, event, msg_id=event.id, stream=subjects.EVT_STREAM
        )
        log.info("mode_detected player_key=%s was=%s now=%s", cmd.player_key, cmd.mode, detected)

    async def _count_misses(self, cmd: FetchRequested, outcome: FetchOutcome) -> int:
        """Consecutive `not_found` answers for this player on this board (0 after any data)."""
        key = f"misses.{subjects.hash_key(cmd.mode, cmd.player_key)}"
        try:
            misses = int((await self.hashes.get(key)).value or b"0")
        except KeyNotFoundError:
            misses = 0
        if outcome is FetchOutcome.NOT_FOUND:
            await self.hashes.put(key, str(misses + 1).encode())
            return misses + 1
        if outcome in (FetchOutcome.CHANGED, FetchOutcome.UNCHANGED):
            if misses:
                await self.hashes.delete(key)
            return 0
        return misses  # an outage or bad data says nothing either way


def _overall_xp(hiscores) -> int:
    return next(s.xp for s in hiscores.skills if s.name == "Overall")


# What an account can become: irons can de-iron, a hardcore can die (to ironman), an ultimate
# can drop to ironman; nobody goes back. REGULAR is also where an undetected account starts.
_CAN_BECOME: dict[GameMode, frozenset[GameMode]] = {
    GameMode.IRONMAN: frozenset({GameMode.DE_IRONED}),
    GameMode.HARDCORE: frozenset({GameMode.IRONMAN, GameMode.DE_IRONED}),
    GameMode.ULTIMATE: frozenset({GameMode.IRONMAN, GameMode.DE_IRONED}),
    GameMode.DE_IRONED: frozenset(),
}


def proven_change(
    current: GameMode, detected: GameMode | None, overall: dict[GameMode, int | None]
) -> GameMode | None:
    """`detected` when the boards prove the change, else None. A board answering 404 where the
    account must still be (a hardcore's entry stays, frozen, after death) is a spurious 404
    (reported during outages), not a change."""
    if detected is None or detected == current:
        return None
    if current not in _CAN_BECOME:
        return detected  # REGULAR: the first detection may find anything
    if detected not in _CAN_BECOME[current]:
        return None
    if current in (GameMode.HARDCORE, GameMode.ULTIMATE) and overall.get(current) is None:
        return None  # its own board said 404: an entry that cannot vanish
    return detected
