"""The scheduler against a real NATS JetStream server."""

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import nats.errors
import pytest
from nats.js.api import DeliverPolicy
from nats.js.errors import NoKeysError

from services.fetcher.worker import consumer_config
from services.scheduler.app import (
    MIN_QUEUED,
    QUEUE_S,
    Pacer,
    Scheduler,
    create_app,
    follow,
)
from services.scheduler.lease import Lease
from services.scheduler.slots import slot_at
from shared import nats as natsx
from shared import subjects
from shared.events import (
    FetchCompleted,
    FetchOutcome,
    FetchRequested,
    PlayerTracked,
    decode,
    encode,
)
from shared.settings import Settings

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)


async def track(js, key: str, interval_s: int) -> None:
    event = PlayerTracked(
        player_key=key, display_name=key, interval_s=interval_s, by="t", at=LONG_AGO
    )
    await natsx.publish(
        js, subjects.PLAYER_TRACKED, event, msg_id=event.id, stream=subjects.EVT_STREAM
    )


async def scheduler(js, name: str) -> Scheduler:
    kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    s = Scheduler(js, Lease(kv, name))
    await follow(js, f"{subjects.STATUS_PREFIX}.*", DeliverPolicy.LAST_PER_SUBJECT, s.on_status)
    await follow(js, subjects.PLAYER_EVENTS, DeliverPolicy.ALL, s.on_player_event)
    return s


async def commands(js) -> list[FetchRequested]:
    info = await js.stream_info(subjects.CMD_STREAM)
    if not info.state.messages:
        return []
    sub = await js.pull_subscribe("osrs.cmd.fetch.*", stream=subjects.CMD_STREAM)
    msgs = await sub.fetch(info.state.messages, timeout=2)
    return [decode(m.data, FetchRequested) for m in msgs]


async def serve(js, served: list[FetchRequested], stop: asyncio.Event) -> None:
    """Take and ack every command as it comes, as a fetcher would, until `stop` is set and
    nothing is left."""
    sub = await js.pull_subscribe(
        "osrs.cmd.fetch.*",
        durable=subjects.FETCHER_CONSUMER,
        stream=subjects.CMD_STREAM,
        config=consumer_config(),
    )
    while True:
        try:
            msgs = await sub.fetch(10, timeout=0.2)
        except (TimeoutError, nats.errors.TimeoutError):
            if stop.is_set():
                break
            continue
        for msg in msgs:
            served.append(decode(msg.data, FetchRequested))
            await msg.ack()
    await sub.unsubscribe()


async def test_only_the_lease_holder_publishes_and_each_slot_once(js):
    await track(js, "alpha", 1)
    await track(js, "beta", 1)
    first, second = await scheduler(js, "one"), await scheduler(js, "two")
    assert set(first.schedule.players) == {"alpha", "beta"}
    # OSRS_CMD holds one command a player: a fetcher takes them, so that the next slots go out.
    sent: list[FetchRequested] = []
    stop = asyncio.Event()
    fetcher = asyncio.create_task(serve(js, sent, stop))
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    await asyncio.sleep(3.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
    await fetcher
    assert first.lease.held != second.lease.held
    leader, follower = (first, second) if first.lease.held else (second, first)
    assert follower.published == 0 and leader.published == len(sent)
    per_player = {key: [c.slot for c in sent if c.player_key == key] for key in ("alpha", "beta")}
    for slots in per_player.values():
        assert 3 <= len(slots) <= 5
        assert slots == sorted(set(slots))  # consecutive slots, none twice
    assert all(c.reason == "scheduled" for c in sent)


async def test_a_restarted_scheduler_does_not_refetch_a_slot_already_fetched(js):
    await track(js, "gamma", 3600)
    now = datetime.now(UTC).timestamp()
    done = FetchCompleted(player_key="gamma", mode="regular", outcome=FetchOutcome.UNCHANGED)
    await natsx.publish(
        js, subjects.status_subject("gamma"), done, msg_id=done.id, stream=subjects.STATUS_STREAM
    )
    s = await scheduler(js, "restarted")
    assert s.last_fetched["gamma"] >= now - 1
    assert await s.lease.keep(now)
    assert await s.publish_due(now) == 0  # fetched inside the current slot already
    assert await commands(js) == []


async def test_slots_fetched_already_take_no_room_in_the_queue(js):
    """A scheduler taking the lease owes every player its current slot; those fetched inside it
    are skipped without using the tick's room (10 commands here), so the rest go out at once."""
    keys = [f"room_{i}" for i in range(30)]
    for key in keys:
        await track(js, key, 3600)
    s = await scheduler(js, "solo")
    now = datetime.now(UTC).timestamp()
    for key in keys[5:]:
        s.last_fetched[key] = now  # fetched inside the current slot, by another leader
    assert await s.lease.keep(now)
    s.schedule.reseed(now)
    assert await s.publish_due(now) == 5
    assert sorted(c.player_key for c in await commands(js)) == sorted(keys[:5])


async def test_a_lapsed_lease_is_taken_over(js):
    kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    leader, follower = Lease(kv, "leader"), Lease(kv, "follower")
    assert await leader.keep(0.0) and not await follower.keep(0.0)
    await leader.release()
    assert await follower.keep(1.0)
    assert not await leader.keep(100.0)


async def test_a_restarted_replica_takes_its_own_lease_back_at_once(js):
    kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    crashed = Lease(kv, "scheduler-pod-0")
    assert await crashed.keep(0.0)  # then kill -9: no release, the lease runs for its TTL
    other, restarted = Lease(kv, "scheduler-pod-1"), Lease(kv, "scheduler-pod-0")
    assert not await other.keep(1.0)
    assert await restarted.keep(1.0)  # same name: no wait for the TTL
    assert not await crashed.keep(100.0)  # the old process's revision is stale


async def test_releasing_a_lease_that_lapsed_meanwhile_is_quiet(js):
    kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    lease = Lease(kv, "slow")
    assert await lease.keep(0.0)
    await kv.purge(subjects.LEASE_KEY)  # its TTL ran out, as during a tick longer than 10 s
    await lease.release()
    assert not lease.held


async def test_the_scheduler_service_replays_the_log_and_publishes_due_slots(js, nats_url):
    await track(js, "delta", 3600)
    app = create_app(Settings(nats_url=nats_url))
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(15):
            while not (sent := await commands(js)):
                await asyncio.sleep(0.1)
    finally:
        app.exit()
        await asyncio.wait_for(task, 10)
    assert [(c.player_key, c.slot) for c in sent] == [
        ("delta", slot_at("delta", 3600, datetime.now(UTC).timestamp()))
    ]
    kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    with pytest.raises(NoKeysError):  # the lease was released at shutdown
        await kv.keys()


async def test_a_scheduler_that_takes_over_a_stale_lease_owes_the_current_slots(js):
    await track(js, "epsilon", 3600)
    kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    await kv.create(subjects.LEASE_KEY, b"a-crashed-scheduler")
    s = await scheduler(js, "successor")
    task = asyncio.create_task(s.run())
    try:
        await asyncio.sleep(1.5)  # following: the crashed holder's lease has not lapsed yet
        assert s.published == 0
        await kv.purge(subjects.LEASE_KEY)  # the lapse, as its TTL would do
        async with asyncio.timeout(10):
            while s.published == 0:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    now = datetime.now(UTC).timestamp()
    assert [(c.player_key, c.slot) for c in await commands(js)] == [
        ("epsilon", slot_at("epsilon", 3600, now))
    ]


async def test_a_bad_player_event_is_skipped_and_the_schedule_still_starts(js):
    await js.publish(
        subjects.PLAYER_TRACKED,
        b'{"player_key": "x", "display_name": "x", "interval_s": 0, "by": "t"}',
        stream=subjects.EVT_STREAM,
    )
    await js.publish(subjects.PLAYER_UPDATED, b"\xff", stream=subjects.EVT_STREAM)
    await track(js, "zeta", 60)
    await js.publish(subjects.PLAYER_UNTRACKED, b"{}", stream=subjects.EVT_STREAM)
    async with asyncio.timeout(5):
        s = await scheduler(js, "robust")
    assert set(s.schedule.players) == {"zeta"}


async def test_an_unranked_player_is_checked_once_a_day(js):
    await track(js, "eta", 3600)
    gone = FetchCompleted(
        player_key="eta",
        mode="regular",
        outcome=FetchOutcome.NOT_FOUND,
        not_found_streak=3,
        at=datetime(2025, 6, 1, tzinfo=UTC),
    )
    await natsx.publish(
        js, subjects.status_subject("eta"), gone, msg_id=gone.id, stream=subjects.STATUS_STREAM
    )
    s = await scheduler(js, "daily")
    assert s.unranked == {"eta"}
    now = datetime.now(UTC).timestamp()
    await s.lease.keep(now)
    published = 0
    for hour in range(24):
        published += await s.publish_due(now + hour * 3600)
    assert published == 1


async def drain(js, count: int) -> None:
    """Take and ack `count` commands, as fetchers would."""
    sub = await js.pull_subscribe(
        "osrs.cmd.fetch.*",
        durable=subjects.FETCHER_CONSUMER,
        stream=subjects.CMD_STREAM,
        config=consumer_config(),
    )
    for msg in await sub.fetch(count, timeout=2):
        await msg.ack()
    await sub.unsubscribe()


async def test_owed_slots_wait_on_the_heap_while_the_command_queue_is_full(js):
    players = MIN_QUEUED + 30
    for i in range(players):
        await track(js, f"owed_{i}", 3600)
    s = await scheduler(js, "paced")
    now = datetime.now(UTC).timestamp()
    assert await s.lease.keep(now)
    assert await s.publish_due(now) == MIN_QUEUED  # nothing drains: the queue stops there
    assert await s.publish_due(now) == 0
    await drain(js, 10)
    rest = 0
    async with asyncio.timeout(5):
        while s.published < players:
            rest += await s.publish_due(now)
            await drain(js, MIN_QUEUED)
    assert rest == players - MIN_QUEUED  # each owed slot once, as room was made


def test_the_pacer_keeps_about_queue_s_of_the_fetchers_rate_queued():
    t = [0.0]
    pacer = Pacer(clock=lambda: t[0])
    depth, rate, tick_s = 0, 1000, 0.05
    starved = []
    for _ in range(60):
        room = pacer.room(depth)
        pacer.published(depth, room)
        depth += room
        t[0] += tick_s
        starved.append(depth < rate * tick_s)
        depth -= min(depth, rate * tick_s)
    assert not any(starved[-40:])  # the fetchers never wait once the rate is measured
    assert pacer.rate == pytest.approx(rate, rel=0.05)
    assert depth <= rate * QUEUE_S  # a refresh waits behind at most QUEUE_S of work


def test_a_players_status_keeps_the_schedules_key_string_not_a_copy():
    s = Scheduler(None, None)
    tracked = PlayerTracked(player_key="theta", display_name="Theta", interval_s=60, by="t")
    done = FetchCompleted(player_key="theta", mode="regular", outcome=FetchOutcome.UNCHANGED)
    s.on_player_event(SimpleNamespace(subject=subjects.PLAYER_TRACKED, data=encode(tracked)))
    s.on_status(SimpleNamespace(subject=subjects.status_subject("theta"), data=encode(done)))
    (key,) = s.last_fetched
    assert key is s.schedule.players["theta"].key
