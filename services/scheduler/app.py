"""The scheduler: rebuilds who is tracked from `osrs.evt.player.>`, holds the KV lease, and
publishes `FetchRequested` at each player's due slots."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
from faststream import FastStream
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from services.scheduler.lease import Lease
from services.scheduler.slots import Due, Schedule, daily_slot, due_time
from shared import nats as natsx
from shared import subjects, telemetry
from shared.events import (
    UNRANKED_AFTER,
    FetchCompleted,
    FetchReason,
    FetchRequested,
    UnknownSubject,
    decode_on,
)
from shared.service import create_broker, main_for
from shared.settings import Settings

log = logging.getLogger("osrs.scheduler")

MAX_SLEEP_S = 1.0
RETRY_S = 2.0
PUBLISH_CONCURRENCY = 64
# OSRS_CMD is one FIFO work queue, manual refreshes included: the scheduler keeps waiting in
# it (not yet taken by a fetcher) only about QUEUE_S of what the fetchers take per second, at
# least MIN_QUEUED, and owed slots wait on its heap instead; so a refresh waits behind that
# much at most (bench/stack.md), and slots that fall behind collapse instead of piling up.
QUEUE_S = 0.1
MIN_QUEUED = 10
PACED_SLEEP_S = 0.05  # between two ticks while owed slots wait for room in the queue
RATE_SMOOTHING = 0.3
LOG_EVERY_S = 5.0

SCHEDULED = Counter("osrs_fetches_scheduled_total", "Scheduled FetchRequested commands published")
ALREADY_QUEUED = Counter(
    "osrs_scheduler_already_queued_total",
    "Due slots OSRS_CMD did not take: the player's command was still there (or this slot's)",
)
PLAYERS = Gauge("osrs_scheduler_players", "Players on the schedule (tracked)")
QUEUED = Gauge("osrs_scheduler_cmd_queued", "Commands in OSRS_CMD no fetcher has taken yet")
FETCHERS_RATE = Gauge("osrs_scheduler_fetch_rate", "Commands the fetchers take per second")


UNDECODABLE = (msgspec.DecodeError, msgspec.ValidationError, UnknownSubject)


async def follow(
    js: JetStreamContext,
    subject: str,
    policy: DeliverPolicy,
    on_msg: Callable[[Msg], None],
    on_unusable: Callable[[Msg, Exception], Awaitable[None]] | None = None,
    *,
    headers_only: bool = False,
) -> None:
    """Replay `subject` from the stream and keep following it; returns once caught up. A
    message `on_msg` raises for is skipped, handed to `on_unusable` when there is one."""
    caught_up = asyncio.Event()

    async def handle(msg: Msg) -> None:
        try:
            on_msg(msg)
        except Exception as exc:  # noqa: BLE001 - one bad event must not stop the schedule
            if on_unusable is not None:
                await on_unusable(msg, exc)
            else:
                _skipped(msg, exc)
        finally:
            if msg.metadata.num_pending == 0:
                caught_up.set()

    sub = await js.subscribe(
        subject,
        cb=handle,
        ordered_consumer=True,
        deliver_policy=policy,
        headers_only=headers_only or None,
    )
    info = await sub.consumer_info()
    if info.num_pending == 0 and not info.delivered.stream_seq:
        caught_up.set()  # nothing to replay; otherwise the last message's handler says so
    await caught_up.wait()


def _skipped(msg: Msg, reason: object) -> None:
    log.warning(
        "skipped_message subject=%s seq=%s reason=%r",
        msg.subject,
        msg.metadata.sequence.stream,
        reason,
    )


class Pacer:
    """How many more commands OSRS_CMD may take now: enough for QUEUE_S of the fetchers'
    throughput, measured from how fast the waiting commands drain between two ticks.

    A fetcher starved between two ticks drains all it was given, which raises the measured
    rate and so the room; a queue that does not drain (no fetcher) stops at MIN_QUEUED."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.rate = 0.0  # commands per second, smoothed
        self._last: tuple[float, int] | None = None  # (when, depth expected had none drained)

    def room(self, depth: int) -> int:
        now = self.clock()
        if self._last is not None and now > self._last[0]:
            when, expected = self._last
            taken = max(0, expected - depth) / (now - when)
            self.rate += RATE_SMOOTHING * (taken - self.rate)
        FETCHERS_RATE.set(self.rate)
        return max(0, max(MIN_QUEUED, round(self.rate * QUEUE_S)) - depth)

    def published(self, depth: int, count: int) -> None:
        self._last = (self.clock(), depth + count)


class Scheduler:
    def __init__(self, js: JetStreamContext, lease: Lease, clock=time.time) -> None:
        self.js = js
        self.lease = lease
        self.clock = clock
        self.schedule = Schedule()
        self.last_fetched: dict[str, float] = {}
        self.unranked: set[str] = set()  # not found several times in a row: checked daily
        self.published = 0  # commands this instance published
        self.pacer = Pacer()
        self._unlogged = 0  # published since the last log line
        self._logged_at = 0.0
        self.stopping = False  # the tick in hand finishes, no other starts
        # (stream, sequence) of the messages this service has parked on OSRS_DEAD already
        self.parked: set[tuple[str, int]] = set()

    async def follow_log(self) -> None:
        """Replay who is tracked and each player's last fetch, and keep following both."""
        await follow(
            self.js,
            subjects.dead_subject("scheduler", "*"),
            DeliverPolicy.ALL,
            self.on_parked,
            headers_only=True,
        )
        # Players first: the statuses then share their key strings.
        await follow(
            self.js, subjects.PLAYER_EVENTS, DeliverPolicy.ALL, self.on_player_event, self.unusable
        )
        await follow(
            self.js,
            f"{subjects.STATUS_PREFIX}.*",
            DeliverPolicy.LAST_PER_SUBJECT,
            self.on_status,
            self.unusable,
        )

    def on_parked(self, msg: Msg) -> None:
        headers = msg.headers or {}
        stream, seq = headers.get("Osrs-Original-Stream"), headers.get("Osrs-Original-Sequence")
        if stream and seq and seq.isdigit():
            self.parked.add((stream, int(seq)))

    async def unusable(self, msg: Msg, exc: Exception) -> None:
        """Skip a message the schedule cannot use, and park a copy for the operator, once: the
        original stays in its stream (the projector reads OSRS_EVT too), and a scheduler reads
        it again at its next start, so nothing is deleted and no replay is needed."""
        meta = msg.metadata
        where = (meta.stream, meta.sequence.stream)
        if where in self.parked:
            return  # parked by an earlier start (or another scheduler)
        undecodable = isinstance(exc, UNDECODABLE)
        reason = f"cannot decode: {exc}" if undecodable else f"cannot apply: {exc!r}"
        reason += (
            f"; the scheduler skipped it and reads the original in {meta.stream} again at its"
            " next start: do not replay this copy"
        )
        try:
            await natsx.dead_letter(
                self.js,
                "scheduler",
                msg,
                reason,
                kind="undecodable" if undecodable else "cannot_apply",
            )
        except Exception as error:  # noqa: BLE001 - NATS away: parked at a later start
            _skipped(msg, f"{reason} (not parked: {error!r})")
            return
        self.parked.add(where)

    def on_player_event(self, msg: Msg) -> None:
        self.schedule.apply(decode_on(msg.subject, msg.data), self.clock())

    def on_status(self, msg: Msg) -> None:
        status = decode_on(msg.subject, msg.data)
        if isinstance(status, FetchCompleted):
            # The schedule's string for the key, not a second copy (~56 bytes a player).
            player = self.schedule.players.get(status.player_key)
            key = status.player_key if player is None else player.key
            self.last_fetched[key] = status.at.timestamp()
            if status.not_found_streak >= UNRANKED_AFTER:
                self.unranked.add(key)
            else:
                self.unranked.discard(key)

    async def run(self) -> None:
        while not self.stopping:
            now = self.clock()
            sleep = MAX_SLEEP_S
            try:
                was_held = self.lease.held
                if await self.lease.keep(now):
                    if not was_held:
                        self.schedule.reseed(now)  # slots passed while following are owed
                    await self.publish_due(now)
                    next_due = self.schedule.next_due_in(self.clock())
                    sleep = MAX_SLEEP_S if next_due is None else min(next_due, MAX_SLEEP_S)
                    sleep = max(sleep, PACED_SLEEP_S)  # while owed slots wait for room
            except Exception:  # NATS away: the lease lapses and failed slots were put back
                log.exception("schedule_tick_failed")
            await asyncio.sleep(sleep)

    async def publish_due(self, now: float) -> int:
        """Publish the slots due at `now`, as many as the queue has room for."""
        depth = await self._waiting()
        QUEUED.set(depth)
        room = self.pacer.room(depth)
        commands: list[tuple[Due, FetchRequested]] = []
        # Slots skipped below take no room: a scheduler that just took the lease owes every
        # player its current slot, most of them fetched inside it already.
        while popped := self.schedule.pop_due(now, room - len(commands)):
            for due in popped:
                player = due.player
                slot_start = due_time(player.key, player.interval_s, due.slot)
                if self.last_fetched.get(player.key, float("-inf")) >= slot_start:
                    continue  # fetched inside this slot already (a manual refresh, another leader)
                if player.key in self.unranked and not daily_slot(due.slot, player.interval_s):
                    continue
                commands.append(
                    (
                        due,
                        FetchRequested(
                            player_key=player.key,
                            display_name=player.display_name,
                            mode=player.mode,
                            reason=FetchReason.SCHEDULED,
                            slot=due.slot,
                            detect_mode=player.detect_mode and self._detect_due(player, due.slot),
                        ),
                    )
                )
        sent = failed = 0
        for start in range(0, len(commands), PUBLISH_CONCURRENCY):
            chunk = commands[start : start + PUBLISH_CONCURRENCY]
            results = await asyncio.gather(
                *(self._publish(c) for _, c in chunk), return_exceptions=True
            )
            for (due, _), result in zip(chunk, results, strict=True):
                if isinstance(result, Exception):
                    failed += 1
                    self.schedule.retry(due, now + RETRY_S)
                elif result:
                    sent += 1
        # Not taken: OSRS_CMD holds the player's command still (one per player), waiting or being
        # fetched, and that fetch serves this slot too: like a missed slot, it collapses instead
        # of queueing behind it. (Or this very slot went out before, from an earlier leader.)
        ALREADY_QUEUED.inc(len(commands) - failed - sent)
        self.pacer.published(depth, sent)
        self.published += sent
        SCHEDULED.inc(sent)
        self._unlogged += sent
        if failed or (self._unlogged and time.monotonic() - self._logged_at >= LOG_EVERY_S):
            log.info(
                "published_due count=%d failed=%d queued=%d fetch_rate=%.0f/s",
                self._unlogged,
                failed,
                depth,
                self.pacer.rate,
            )
            self._unlogged, self._logged_at = 0, time.monotonic()
        return sent

    def _detect_due(self, player, slot: int) -> bool:
        """Detection runs daily, and on every fetch until one has completed since tracking (the
        first one may have failed, or still be on its way)."""
        fetched_since = self.last_fetched.get(player.key, float("-inf")) >= player.since
        return daily_slot(slot, player.interval_s) or not fetched_since

    async def _waiting(self) -> int:
        """Commands no fetcher has taken yet (those being fetched do not count: any number of
        fetchers keeps working); every command in the stream while no fetcher ever ran."""
        try:
            info = await self.js.consumer_info(subjects.CMD_STREAM, subjects.FETCHER_CONSUMER)
        except NotFoundError:
            return (await self.js.stream_info(subjects.CMD_STREAM)).state.messages
        return info.num_pending

    async def sample(self) -> None:
        PLAYERS.set(len(self.schedule.players))

    async def _publish(self, cmd: FetchRequested) -> bool:
        return await natsx.publish(
            self.js,
            subjects.fetch_subject(cmd.player_key),
            cmd,
            msg_id=f"{cmd.player_key}:{cmd.slot}",
            stream=subjects.CMD_STREAM,
        )


def create_app(settings: Settings) -> FastStream:
    broker = create_broker(settings, "scheduler")
    app = FastStream(broker, logger=log)
    tasks: list[asyncio.Task] = []
    state: dict[str, Scheduler] = {}
    telemetry.instrument(
        app,
        settings,
        "scheduler",
        checks={"nats": telemetry.nats_answers(lambda: broker.connection)},
        samplers=lambda: [state["scheduler"].sample],
    )

    @app.on_startup
    async def start() -> None:
        await broker.connect()
        js = broker.connection.jetstream()
        await natsx.declare(js, settings)
        kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
        scheduler = state["scheduler"] = Scheduler(
            js, Lease(kv, f"scheduler-{settings.instance or uuid.uuid4().hex[:8]}")
        )
        await scheduler.follow_log()
        log.info("scheduler_ready tracked=%d", len(scheduler.schedule.players))

    @app.after_startup
    async def begin() -> None:
        tasks.append(asyncio.create_task(state["scheduler"].run(), name="schedule"))

    @app.on_shutdown
    async def stop() -> None:
        if "scheduler" in state:
            state["scheduler"].stopping = True  # the tick in hand publishes what it took
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=settings.work_grace_s())
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if "scheduler" in state:
            await state["scheduler"].lease.release()

    return app


main = main_for("scheduler", create_app)
