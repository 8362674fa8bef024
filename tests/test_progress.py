"""Progress events: derived with the read models, relayed from the outbox to OSRS_PROGRESS, each
delivered once, also when the projector is killed (SIGKILL) in the middle of its work."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.fetcher.hiscores import parse_json, payload_hash
from shared import subjects, xp
from shared.events import HiscoreObserved, PlayerTracked, PlayerUntracked, PlayerUpdated
from shared.modes import GameMode
from tests.hiscores_double import MID, with_gain
from tests.test_rebuild import Live, publish

T = datetime(2026, 11, 1, tzinfo=UTC)
MID_ATTACK = 2_514_336  # level 82


def observed(key: str, hours: float, gains: dict, mode=GameMode.REGULAR) -> HiscoreObserved:
    parsed = parse_json(with_gain(MID, gains))
    return HiscoreObserved(
        player_key=key,
        display_name=key.title(),
        mode=mode,
        observed_at=T + timedelta(hours=hours),
        hash=payload_hash(parsed.skills, parsed.activities),
        skills=parsed.skills,
        activities=parsed.activities,
    )


def tracked(key: str, mode=GameMode.REGULAR) -> PlayerTracked:
    return PlayerTracked(
        player_key=key, display_name=key.title(), mode=mode, interval_s=3600, by="admin"
    )


async def progress(js) -> list[tuple[str, dict]]:
    """Every message in OSRS_PROGRESS: (subject, payload)."""
    info = await js.stream_info(subjects.PROGRESS_STREAM)
    if not info.state.messages:
        return []
    sub = await js.pull_subscribe(
        "osrs.progress.>",
        stream=subjects.PROGRESS_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    got = []
    while len(got) < info.state.messages:
        for msg in await sub.fetch(500, timeout=2):
            got.append((msg.subject, json.loads(msg.data)))
            await msg.ack()
    await sub.unsubscribe()
    return got


async def test_a_player_levelling_up_yields_gains_level_ups_and_milestones(js, database_url):
    history = [
        tracked("zezima"),
        observed("zezima", 0, {}),  # the first observation: nothing to compare with
        observed("zezima", 1, {}),  # same payload: the fetcher would not even send it
        observed("zezima", 2, {"Attack": 13_034_431 - MID_ATTACK, "Zulrah": 400}),
        observed("zezima", 3, {"Attack": 13_034_431 - MID_ATTACK + 1_500_000}),
        PlayerUpdated(player_key="zezima", mode=GameMode.IRONMAN, by="admin"),
        PlayerUntracked(player_key="zezima", by="admin"),
    ]
    await publish(js, *history)
    live = Live(js, database_url)
    await live.start()
    try:
        await live.catch_up()
        from services.projector.relay import OutboxRelay

        relay = OutboxRelay(live.pool, js)
        assert await relay.relay_once() == relay.sent > 0
        assert await relay.relay_once() == 0  # all marked sent
    finally:
        for sub in live.subs.values():
            await sub.unsubscribe()
        await live.pool.close()
    events = await progress(js)
    kinds = [subject.rsplit(".", 1)[1] for subject, _ in events]
    assert all(subject.startswith("osrs.progress.zezima.") for subject, _ in events)
    assert kinds == [
        "tracking",
        "gains",  # hour 1 repeats hour 0: an observation without gains still says so
        "gains",
        "level_up",
        "milestone",
        "milestone",
        "gains",
        "level_up",
        "account_type",
        "tracking",
    ]
    body = [payload for _, payload in events]
    assert body[0]["tracked"] is True and body[-1]["tracked"] is False
    assert body[1]["gains"] == {} and body[1]["span_s"] == 3600.0
    assert body[2]["gains"]["attack"] == 13_034_431 - MID_ATTACK and body[2]["gains"]["zulrah"]
    assert (body[3]["skill"], body[3]["from"], body[3]["to"], body[3]["virtual"]) == (
        "attack",
        82,
        99,
        False,
    )
    assert {b["milestone"] for b in body[4:6]} == {"level_99.attack", "boss_kc.zulrah.500"}
    assert (body[7]["from"], body[7]["to"], body[7]["virtual"]) == (
        99,
        xp.virtual_level(14_534_431),
        True,
    )
    assert (body[8]["from"], body[8]["to"], body[8]["reason"]) == ("regular", "ironman", "changed")
    assert all(b["display_name"] == "Zezima" and b["v"] == 1 for b in body)


def _expected(history) -> Counter:
    """(player, kind, observed_at) of every event the history must give, computed apart."""
    want = Counter()
    seen: dict[str, int] = {}
    last_attack: dict[str, int] = {}
    for event in history:
        if isinstance(event, PlayerTracked):
            want[(event.player_key, "tracking", None)] += 1
            continue
        attack = next(s.xp for s in event.skills if s.name == "Attack")
        at = event.observed_at.isoformat().replace("+00:00", "Z")
        if seen.get(event.player_key):
            want[(event.player_key, "gains", at)] += 1
            if xp.virtual_level(attack) > xp.virtual_level(last_attack[event.player_key]):
                want[(event.player_key, "level_up", at)] += 1
        seen[event.player_key] = seen.get(event.player_key, 0) + 1
        last_attack[event.player_key] = attack
    return want


def _got(events) -> Counter:
    got = Counter()
    for subject, body in events:
        kind = subject.rsplit(".", 1)[1]
        if kind == "milestone":
            continue
        at = None if kind == "tracking" else body["observed_at"]
        got[(body["player_key"], kind, at)] += 1
    return got


async def test_each_event_is_delivered_once_across_a_sigkilled_projector(
    js, settings, nats_url, database_url, tmp_path
):
    history = []
    for p in range(40):
        key = f"p{p}"
        history.append(tracked(key))
        history += [observed(key, h, {"Attack": 200_000 * h}) for h in range(25)]
    await publish(js, *history)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSRS_")}
    env |= {"NATS_URL": nats_url, "DATABASE_URL": database_url, "OSRS_LOG_LEVEL": "WARNING"}

    def start(name):
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [sys.executable, "-m", "services.projector"], env=env, stdout=log, stderr=log
        )

    def checkpoint() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT last_seq FROM projector_checkpoints WHERE stream = 'OSRS_EVT'"
            ).fetchone()
        return row[0] if row else 0

    total = len(history)
    first = start("first")
    deadline = time.monotonic() + 60
    while checkpoint() < total // 3:  # well into the work, with more batches to come
        assert first.poll() is None and time.monotonic() < deadline
        await asyncio.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = checkpoint()
    assert killed_at < total
    second = start("second")
    try:
        deadline = time.monotonic() + 90
        while True:
            with psycopg.connect(database_url) as conn:
                (unsent,) = conn.execute(
                    "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                ).fetchone()
            if checkpoint() == total and unsent == 0:
                break
            assert second.poll() is None, (tmp_path / "second.log").read_text()
            assert time.monotonic() < deadline, (checkpoint(), unsent)
            await asyncio.sleep(0.1)
    finally:
        second.terminate()
        second.wait(15)
    events = await progress(js)
    assert _got(events) == _expected(history)
    ids = [body["id"] for _, body in events]
    assert len(ids) == len(set(ids))  # not one event twice
