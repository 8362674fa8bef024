"""The projector against real NATS JetStream and real Postgres."""

import asyncio
import itertools
import json
from datetime import UTC, datetime

import msgspec
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from services.fetcher.hiscores import parse_json, payload_hash
from services.projector import observed as observed_module
from services.projector.app import create_app
from services.projector.projection import Projector
from shared import nats as natsx
from shared import subjects
from shared.events import (
    FetchCompleted,
    FetchOutcome,
    HiscoreObserved,
    PlayerTracked,
    PlayerUpdated,
)
from shared.modes import GameMode
from shared.packed import unpack
from tests.hiscores_double import MID, with_gain

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)


def observed(key="synth_mid", payload: bytes = MID, at=AT) -> HiscoreObserved:
    parsed = parse_json(payload)
    return HiscoreObserved(
        player_key=key,
        display_name="Synth Mid",
        mode="regular",
        observed_at=at,
        hash=payload_hash(parsed.skills, parsed.activities),
        skills=parsed.skills,
        activities=parsed.activities,
    )


async def publish_history(js, *extra: HiscoreObserved):
    tracked = PlayerTracked(
        player_key="synth_mid", display_name="Synth Mid", interval_s=3600, by="admin", at=AT
    )
    await natsx.publish(
        js, subjects.PLAYER_TRACKED, tracked, msg_id=tracked.id, stream=subjects.EVT_STREAM
    )
    for event in (observed(), *extra):
        await natsx.publish(
            js,
            subjects.observed_subject(event.player_key),
            event,
            msg_id=f"{event.player_key}:{event.hash}",
            stream=subjects.EVT_STREAM,
        )


async def fetch_all(js, stream: str, subject: str):
    sub = await js.pull_subscribe(subject, stream=stream)
    info = await js.stream_info(stream)
    msgs = await sub.fetch(info.state.messages, timeout=2)
    return msgs


async def projector_for(database_url, dead: list) -> tuple[Projector, AsyncConnectionPool]:
    pool = AsyncConnectionPool(database_url, open=False, min_size=1, max_size=2)
    await pool.open(wait=True)

    async def dead_letter(msg, reason):
        dead.append((msg.subject, reason))

    projector = Projector(pool, dead_letter)
    await projector.seed_metrics()
    return projector, pool


def rows(database_url, query, *args):
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, args).fetchall()


async def test_events_build_the_player_and_a_compact_observation(js, database_url):
    new_boss = json.loads(with_gain(MID, {"Attack": 1000}))
    new_boss["activities"].insert(50, {"id": 50, "name": "Brand New Boss", "rank": 9, "score": 3})
    later = observed(payload=json.dumps(new_boss).encode(), at=AT.replace(hour=13))
    await publish_history(js, later)
    dead: list = []
    projector, pool = await projector_for(database_url, dead)
    try:
        msgs = await fetch_all(js, subjects.EVT_STREAM, "osrs.evt.>")
        assert await projector.apply_batch(subjects.EVT_STREAM, msgs) == 3
    finally:
        await pool.close()
    assert dead == []
    (player,) = rows(
        database_url,
        "SELECT display_name, tracked, overall_xp, total_level,"
        " combat_level, last_changed_at FROM players",
    )
    assert player[:4] == ("Synth Mid", True, 32968809 + 1000, 1751)
    assert player[5] == later.observed_at
    assert rows(database_url, "SELECT count(*) FROM observations") == [(2,)]
    assert rows(database_url, "SELECT kind FROM metrics WHERE key = 'brand_new_boss'") == [
        ("activity",)
    ]
    # Plainly unranked entries are not stored; the rest round-trips through the packed form.
    ((data,),) = rows(database_url, "SELECT data FROM observations ORDER BY observed_at LIMIT 1")
    ranked = sum(1 for a in observed().activities if a.rank != -1) + 25
    assert len(list(unpack(data))) == ranked
    ids = dict(rows(database_url, "SELECT key, id FROM metrics"))
    by_id = {m: (r, v) for m, r, v in unpack(data)}
    assert by_id[ids["overall"]] == (601455, 32968809)
    assert len(data) < 8 * ranked  # a few bytes an entry


async def test_a_redelivered_batch_changes_nothing(js, database_url):
    await publish_history(js)
    projector, pool = await projector_for(database_url, [])
    try:
        msgs = await fetch_all(js, subjects.EVT_STREAM, "osrs.evt.>")
        assert await projector.apply_batch(subjects.EVT_STREAM, msgs) == 2
        assert await projector.apply_batch(subjects.EVT_STREAM, msgs) == 0
    finally:
        await pool.close()
    assert rows(database_url, "SELECT count(*) FROM observations") == [(1,)]
    assert rows(database_url, "SELECT last_seq FROM projector_checkpoints") == [(2,)]


async def test_the_projector_service_applies_events_and_fetch_statuses(
    js, nats_url, database_url, settings
):
    await publish_history(js)
    completed = FetchCompleted(
        player_key="synth_mid", mode="regular", outcome=FetchOutcome.CHANGED, http_status=200
    )
    await natsx.publish(
        js,
        subjects.status_subject("synth_mid"),
        completed,
        msg_id=completed.id,
        stream=subjects.STATUS_STREAM,
    )
    await js.publish(subjects.status_subject("garbage"), b"\x00", stream=subjects.STATUS_STREAM)
    app = create_app(settings)
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(20):
            while rows(
                database_url,
                "SELECT s.outcome, p.last_changed_at IS NOT NULL"
                " FROM players p JOIN fetch_status s ON s.player_key = p.key",
            ) != [("changed", True)]:
                await asyncio.sleep(0.05)
            while (await js.stream_info(subjects.DEAD_STREAM)).state.messages != 1:
                await asyncio.sleep(0.05)
    finally:
        app.exit()
        await asyncio.wait_for(task, 10)
    dead = await js.get_last_msg(
        subjects.DEAD_STREAM, subjects.dead_subject("projector", subjects.STATUS_STREAM)
    )
    assert dead.headers["Osrs-Original-Subject"] == "osrs.status.fetch.garbage"


async def test_a_fetch_status_that_arrives_before_the_player_is_kept(js, database_url):
    completed = FetchCompleted(
        player_key="synth_mid", mode="regular", outcome=FetchOutcome.UNCHANGED, http_status=200
    )
    await natsx.publish(
        js,
        subjects.status_subject("synth_mid"),
        completed,
        msg_id=completed.id,
        stream=subjects.STATUS_STREAM,
    )
    await publish_history(js)
    projector, pool = await projector_for(database_url, [])
    try:
        statuses = await fetch_all(js, subjects.STATUS_STREAM, "osrs.status.fetch.*")
        assert await projector.apply_batch(subjects.STATUS_STREAM, statuses) == 1
        events = await fetch_all(js, subjects.EVT_STREAM, "osrs.evt.>")
        assert await projector.apply_batch(subjects.EVT_STREAM, events) == 2
    finally:
        await pool.close()
    assert rows(
        database_url,
        "SELECT p.key, s.outcome FROM players p JOIN fetch_status s ON s.player_key = p.key",
    ) == [("synth_mid", "unchanged")]


async def _track_players(js, keys):
    for key in keys:
        event = PlayerTracked(player_key=key, display_name=key, interval_s=3600, by="t", at=AT)
        await natsx.publish(
            js, subjects.PLAYER_TRACKED, event, msg_id=event.id, stream=subjects.EVT_STREAM
        )


def _tracked(database_url) -> list[str]:
    return [k for (k,) in rows(database_url, "SELECT key FROM players ORDER BY key")]


async def _run_until(app, condition, timeout=20.0):
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    finally:
        app.exit()
        await asyncio.wait_for(task, 10)


async def test_a_batch_fetched_by_a_crashed_projector_is_not_overtaken(js, settings, database_url):
    await _track_players(js, [f"p{i}" for i in range(5)])
    # A projector took the first two events and died before applying them: they stay pending
    # on its durable consumer until ack_wait runs out, while later events are deliverable.
    crashed = await js.pull_subscribe(
        "osrs.evt.>", durable=subjects.PROJECTOR_EVT_CONSUMER, stream=subjects.EVT_STREAM
    )
    assert len(await crashed.fetch(2, timeout=2)) == 2
    await _run_until(create_app(settings), lambda: len(_tracked(database_url)) == 5)
    assert _tracked(database_url) == ["p0", "p1", "p2", "p3", "p4"]


async def test_a_second_projector_stands_by_until_the_first_stops(js, settings, database_url):
    first, second = create_app(settings), create_app(settings)
    first_task = asyncio.create_task(first.run())
    await _track_players(js, ["before"])
    async with asyncio.timeout(20):
        while _tracked(database_url) != ["before"]:
            await asyncio.sleep(0.05)
    second_task = asyncio.create_task(second.run())
    await asyncio.sleep(1)
    standby = rows(
        database_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    )
    assert standby == [(1,)]  # the second waits for the lock
    first.exit()
    await asyncio.wait_for(first_task, 10)
    await _track_players(js, ["after"])
    try:
        async with asyncio.timeout(20):
            while _tracked(database_url) != ["after", "before"]:
                await asyncio.sleep(0.05)
    finally:
        second.exit()
        await asyncio.wait_for(second_task, 10)


async def test_a_projector_that_loses_its_lock_pauses_and_takes_it_back(js, settings, database_url):
    """Its lock connection killed (as when Postgres restarts): no exit, the lock held again on a
    new connection, and the events published meanwhile applied."""
    app = create_app(settings)
    task = asyncio.create_task(app.run())
    holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
    try:
        async with asyncio.timeout(20):
            while not rows(database_url, holder):
                await asyncio.sleep(0.05)
            ((first,),) = rows(database_url, holder)
            rows(database_url, f"SELECT pg_terminate_backend(pid) FROM ({holder}) AS h")
            while [pid for (pid,) in rows(database_url, holder)] in ([], [first]):
                assert not task.done(), "the projector stopped"
                await asyncio.sleep(0.05)
            await _track_players(js, ["after_the_lock"])  # applied by the resumed feeds
            while _tracked(database_url) != ["after_the_lock"]:
                await asyncio.sleep(0.05)
        assert not task.done()
    finally:
        app.exit()
        await asyncio.wait_for(task, 10)


async def test_an_event_that_cannot_be_applied_is_dead_lettered_on_the_careful_retry(
    js, database_url
):
    good = observed(at=AT.replace(hour=14))
    overall = msgspec.structs.replace(good.skills[0], level=40_000)  # beyond smallint
    broken = msgspec.structs.replace(good, hash="f" * 32, skills=(overall, *good.skills[1:]))
    await publish_history(js, broken)
    await _track_players(js, ["after"])
    dead: list = []
    projector, pool = await projector_for(database_url, dead)
    try:
        msgs = await fetch_all(js, subjects.EVT_STREAM, "osrs.evt.>")
        with pytest.raises(psycopg.DataError):
            await projector.apply_batch(subjects.EVT_STREAM, msgs)
        assert _tracked(database_url) == []  # the whole batch rolled back
        assert await projector.apply_batch(subjects.EVT_STREAM, msgs, careful=True) == 3
    finally:
        await pool.close()
    assert [(s, "cannot apply" in r) for s, r in dead] == [
        ("osrs.evt.hiscore.observed.synth_mid", True)
    ]
    assert _tracked(database_url) == ["after", "synth_mid"]
    assert rows(database_url, "SELECT count(*) FROM observations") == [(1,)]
    assert rows(database_url, "SELECT last_seq FROM projector_checkpoints") == [(4,)]


async def test_a_mode_change_applies_only_while_the_mode_is_the_expected_one(js, database_url):
    await publish_history(js)
    for mode, if_mode in (("hardcore", None), ("ironman", "regular"), ("de_ironed", "hardcore")):
        event = PlayerUpdated(player_key="synth_mid", mode=mode, if_mode=if_mode, by="t")
        await natsx.publish(
            js, subjects.PLAYER_UPDATED, event, msg_id=event.id, stream=subjects.EVT_STREAM
        )
    projector, pool = await projector_for(database_url, [])
    try:
        msgs = await fetch_all(js, subjects.EVT_STREAM, "osrs.evt.>")
        await projector.apply_batch(subjects.EVT_STREAM, msgs)
    finally:
        await pool.close()
    # hardcore by hand; the stale regular->ironman skipped; hardcore->de_ironed applied
    assert rows(database_url, "SELECT mode FROM players") == [("de_ironed",)]


async def test_milestones_latest_values_and_fetch_counts_follow_the_observations(js, database_url):
    # Attack to 99 and Zulrah past 500 kills an hour after the first observation; an event
    # from before it (out of order) arrives last and changes neither.
    later = observed(payload=with_gain(MID, {"Attack": 10_600_000, "Zulrah": 400}))
    later = msgspec.structs.replace(later, observed_at=AT.replace(hour=13))
    older = observed(payload=with_gain(MID, {"Attack": -100}), at=AT.replace(hour=11))
    await publish_history(js, later, older)
    projector, pool = await projector_for(database_url, [])
    try:
        msgs = await fetch_all(js, subjects.EVT_STREAM, "osrs.evt.>")
        assert await projector.apply_batch(subjects.EVT_STREAM, msgs) == 4
        async with pool.connection() as conn:
            for outcome in ("changed", "unchanged", "unchanged"):
                event = FetchCompleted(
                    player_key="synth_mid", mode=GameMode.REGULAR, outcome=FetchOutcome(outcome)
                )
                await projector.apply(conn, event, 1)
    finally:
        await pool.close()
    got = {
        key: (observed_at.hour, previous_at and previous_at.hour, before)
        for key, observed_at, previous_at, before in rows(
            database_url,
            "SELECT key, observed_at, previous_at, before_tracking FROM achievements",
        )
    }
    assert got["level_99.attack"] == (13, 12, False)
    assert got["boss_kc.zulrah.500"] == (13, 12, False)
    # Reached before tracking began: seen first in the oldest observation (the late one).
    assert got["boss_kc.zulrah.100"] == (11, None, True)
    assert got["clues.clue_scrolls_all.100"] == (11, None, True)
    assert not any(key.startswith("base_level.") for key in got)  # Sailing is level 48
    assert "boss_kc.kraken.500" not in got and "boss_kc.soul_wars_zeal.100" not in got
    ids = dict(rows(database_url, "SELECT key, id FROM metrics"))
    latest = dict(rows(database_url, "SELECT metric_id, value FROM latest_values"))
    newest = {ids[m]: v for m, _, v in _entries(later) if v >= 0}
    assert latest == newest
    assert rows(database_url, "SELECT outcome, count FROM fetch_outcomes ORDER BY 1") == [
        ("changed", 1),
        ("unchanged", 2),
    ]


def _entries(event: HiscoreObserved):
    from shared.metrics import metric_key

    yield from ((metric_key(s.name), s.rank, s.xp) for s in event.skills)
    yield from ((metric_key(a.name), a.rank, a.score) for a in event.activities)


READ_MODELS = {
    "players": "SELECT key, display_name, mode, tracked, overall_xp, total_level, combat_level,"
    " last_changed_at FROM players ORDER BY key",
    "observations": "SELECT p.key, o.observed_at, o.mode, o.total_level, o.data"
    " FROM observations o JOIN players p ON p.id = o.player_id ORDER BY 1, 2",
    "achievements": "SELECT p.key, a.key, a.observed_at, a.previous_at, a.before_tracking"
    " FROM achievements a JOIN players p ON p.id = a.player_id ORDER BY 1, 2",
    "latest_values": "SELECT p.key, l.metric_id, l.value"
    " FROM latest_values l JOIN players p ON p.id = l.player_id ORDER BY 1, 2",
    # each progress event has its own id and creation time
    "outbox": "SELECT subject, convert_from(payload, 'UTF8')::jsonb - 'id' - 'at'"
    " FROM outbox ORDER BY id",
    "fetch_status": "SELECT * FROM fetch_status ORDER BY player_key",
    "fetch_outcomes": "SELECT * FROM fetch_outcomes ORDER BY hour, outcome",
}


def sim_history() -> list:
    """Tracking, observations of 12 simulator players an hour apart (the same player often
    twice in a row, one never tracked, one observed out of order) and fetch outcomes."""
    from sim.population import Population

    pop = Population(12, seed=5, tick_s=600)
    events: list = []
    last_hash: dict[int, str] = {}
    for i in range(1, 12):  # player 0 is never tracked
        state = pop.truth(pop.player(i), pop.epoch)
        events.append(
            PlayerTracked(
                player_key=pop.player(i).key,
                display_name=state.name,
                interval_s=3600,
                by="admin",
                at=datetime.fromtimestamp(pop.epoch, UTC),
            )
        )
    for hour in range(1, 9):
        for i in (0, 1, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11):
            at = pop.epoch + hour * 3600 + (1800 if events[-1].player_key == f"sim_{i}" else 0)
            state = pop.truth(pop.player(i), at)
            digest = payload_hash(state.skills, state.activities)
            if state is None or last_hash.get(i) == digest:
                continue
            last_hash[i] = digest
            events.append(
                HiscoreObserved(
                    player_key=pop.player(i).key,
                    display_name=state.name,
                    mode=GameMode.REGULAR,
                    observed_at=datetime.fromtimestamp(at, UTC),
                    hash=digest,
                    skills=tuple(state.skills),
                    activities=tuple(state.activities),
                )
            )
        # player 4 three times in a batch: the latest by time wins, whatever the order
        events += [
            FetchCompleted(
                player_key=pop.player(i).key,
                mode=GameMode.REGULAR,
                outcome=outcome,
                at=datetime.fromtimestamp(pop.epoch + hour * 3600 + i + late, UTC),
            )
            for i, outcome, late in (
                *(
                    (i, FetchOutcome.CHANGED if i % 3 else FetchOutcome.UNCHANGED, 0)
                    for i in range(12)
                ),
                (4, FetchOutcome.NOT_FOUND, 60),
                (4, FetchOutcome.UNAVAILABLE, -60),
            )
        ]
    late = next(e for e in events[40:] if isinstance(e, HiscoreObserved))
    events.append(msgspec.structs.replace(late, observed_at=late.observed_at.replace(second=1)))
    return events


@pytest.mark.parametrize("chunk", [5, 64])
async def test_a_batch_gives_exactly_what_one_event_at_a_time_gives(
    database_url, monkeypatch, chunk
):
    monkeypatch.setattr(observed_module, "CHUNK", chunk)  # several statements in the pipeline
    events = sim_history()
    observations = [e for e in events if isinstance(e, HiscoreObserved)]
    assert len(observations) > 60
    assert any(a.player_key == b.player_key for a, b in itertools.pairwise(observations))
    pool = AsyncConnectionPool(database_url, open=False, min_size=1, max_size=1)
    await pool.open(wait=True)
    models = []
    try:
        for one_at_a_time in (False, True):
            projector = Projector(pool, dead_letter=None)
            await projector.seed_metrics()
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(f"TRUNCATE {', '.join(READ_MODELS)}, players CASCADE")
                if one_at_a_time:
                    for seq, event in enumerate(events, 1):
                        await projector.apply(conn, event, seq)
                else:
                    for start in range(0, len(events), 64):
                        await projector.apply_many(conn, events[start : start + 64])
            models.append({name: rows(database_url, sql) for name, sql in READ_MODELS.items()})
    finally:
        await pool.close()
    batched, single = models
    assert {name: len(got) for name, got in batched.items()} == {
        name: len(got) for name, got in single.items()
    }
    assert batched == single
    assert len(batched["outbox"]) > 40 and len(batched["fetch_outcomes"]) > 1
