"""Commands arriving faster than the fetchers serve them (issue 9): a player never has two
fetches in flight, the scheduler does not pile up commands, the fetcher's memory stays bounded,
and the backlog drains once the load drops. Real NATS, the simulator and the fetcher as
processes; OSRS_CMD holds at most one command per player, queued or being fetched."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

import httpx
import nats
import nats.errors
import psycopg
import pytest
from nats.js.api import DiscardPolicy
from prometheus_client import REGISTRY

from services.fetcher.worker import consumer_config
from services.scheduler.app import MIN_QUEUED, Scheduler
from shared import nats as natsx
from shared import subjects
from shared.events import FetchCompleted, FetchRequested, decode
from shared.settings import Settings
from tests.sim_fixtures import simulator_process
from tests.test_scheduler import scheduler, track
from tests.test_workers import Worker, until

SIM_PLAYERS = 1000
CONCURRENCY = 8


@pytest.fixture
def simulator():
    """1,000 simulated players; names folding to `sim_2*` answer 5 s late."""
    with simulator_process(
        "--players", str(SIM_PLAYERS), "--fault-prefix", "Sim 2=slow", "--slow", "5"
    ) as url:
        yield url


def fetcher(tmp_path: Path, nats_url: str, hiscores_url: str, name: str = "fetcher") -> Worker:
    worker_dir = tmp_path / name
    worker_dir.mkdir()
    return Worker(
        worker_dir,
        "fetcher",
        NATS_URL=nats_url,
        OSRS_HISCORES_URL=hiscores_url,
        OSRS_FETCH_RATE="1000",
        OSRS_FETCH_CONCURRENCY=str(CONCURRENCY),
    )


def key_of(n: int) -> str:
    return f"sim_{n}"


async def queue(js, n: int, slot: int) -> bool:
    """A scheduled command for `Sim n`, as the scheduler sends it; True if OSRS_CMD took it."""
    cmd = FetchRequested(player_key=key_of(n), display_name=f"Sim {n}", slot=slot)
    return await natsx.publish(
        js,
        subjects.fetch_subject(cmd.player_key),
        cmd,
        msg_id=f"{cmd.player_key}:{slot}",
        stream=subjects.CMD_STREAM,
    )


async def queued(js) -> dict[str, int]:
    """Commands in OSRS_CMD (waiting or being fetched), by player."""
    info = await js.stream_info(subjects.CMD_STREAM, subjects_filter=f"{subjects.FETCH_PREFIX}.*")
    return {s.rsplit(".", 1)[1]: n for s, n in (info.state.subjects or {}).items()}


async def fetched(js) -> set[str]:
    """The players fetched at least once."""
    info = await js.stream_info(
        subjects.STATUS_STREAM, subjects_filter=f"{subjects.STATUS_PREFIX}.*"
    )
    return {s.rsplit(".", 1)[1] for s in info.state.subjects or {}}


async def last_fetch(js, key: str) -> FetchCompleted:
    msg = await js.get_last_msg(subjects.STATUS_STREAM, subjects.status_subject(key))
    return decode(msg.data, FetchCompleted)


def sim_stats(url: str, clear: bool = False) -> dict:
    if clear:
        httpx.delete(f"{url}/_sim/stats").raise_for_status()
    return httpx.get(f"{url}/_sim/stats").json()


def sim_faults(url: str, faults: dict | None) -> None:
    """Set the simulator's faults, or lift them all (None)."""
    if faults is None:
        httpx.delete(f"{url}/_sim/faults").raise_for_status()
    else:
        httpx.put(f"{url}/_sim/faults", json=faults).raise_for_status()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def project_tracked(database_url: str, *names: str) -> None:
    """The read model's row the refresh route checks, as the projector would write it."""
    with psycopg.connect(database_url) as conn:
        for name in names:
            conn.execute(
                "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
                " VALUES (%s, %s, 'regular', true, 3600, now())",
                (name.lower().replace(" ", "_"), name),
            )


async def test_a_player_never_has_two_fetches_in_flight(
    tmp_path, nats_url, js, client, database_url, simulator
):
    project_tracked(database_url, "Sim 1", "Sim 2")
    # Queued, no fetcher yet: a later slot and a manual refresh find the player's command there.
    assert await queue(js, 1, slot=1) and await queue(js, 2, slot=1)
    assert not await queue(js, 1, slot=2)
    refreshed_at = time.time()
    response = await client.post("/v1/players/Sim 1/refresh")
    assert response.status_code == 202, response.text
    assert await queued(js) == {"sim_1": 1, "sim_2": 1}

    # Two replicas on the shared durable; Sim 2 answers 5 s late.
    replicas = [fetcher(tmp_path, nats_url, simulator, f"fetcher{i}") for i in range(2)]
    try:
        await asyncio.gather(*(r.until_ready() for r in replicas))

        async def sim_2_in_flight() -> bool:
            info = await js.consumer_info(subjects.CMD_STREAM, subjects.FETCHER_CONSUMER)
            return "sim_1" in await fetched(js) and info.num_ack_pending == 1

        await until(sim_2_in_flight, 20, "sim_1 fetched, sim_2 in flight", replicas[0])
        # While Sim 2 is being fetched: its next slot and a refresh are both already served.
        assert not await queue(js, 2, slot=2)
        response = await client.post("/v1/players/sim_2/refresh")
        assert response.status_code == 202, response.text
        assert await queued(js) == {"sim_2": 1}

        async def drained() -> bool:
            return not await queued(js) and "sim_2" in await fetched(js)

        await until(drained, 20, "sim_2 fetched and OSRS_CMD empty", replicas[1])
    finally:
        for replica in replicas:
            replica.kill()
    stats = sim_stats(simulator)
    assert stats["most_in_flight_per_player"] == 1
    assert stats["requests"] == 2  # one fetch each: no command was queued twice
    sim_1, sim_2 = await last_fetch(js, "sim_1"), await last_fetch(js, "sim_2")
    # The queued command that answered Sim 1's refresh was fetched after the request.
    assert sim_1.at.timestamp() > refreshed_at
    assert (sim_1.outcome, sim_2.outcome) == ("changed", "changed")


def already_queued() -> float:
    return REGISTRY.get_sample_value("osrs_scheduler_already_queued_total") or 0.0


async def test_the_scheduler_queues_one_command_per_player_while_no_fetcher_serves(js):
    players = 5
    assert players < MIN_QUEUED  # the pacing leaves room for more than one slot each
    for i in range(players):
        await track(js, f"idle_{i}", 1)  # a slot every second
    s: Scheduler = await scheduler(js, "starved")
    not_taken = already_queued()
    task = asyncio.create_task(s.run())
    try:
        await asyncio.sleep(3.5)  # three slots each fall due, nobody fetches
        assert await queued(js) == {f"idle_{i}": 1 for i in range(players)}
        assert s.published == players
        assert already_queued() - not_taken >= players  # the later slots: not errors, not retried
        # Load drops: a fetcher takes the commands again, and the next slots go out, still one
        # per player at any moment.
        sub = await js.pull_subscribe(
            f"{subjects.FETCH_PREFIX}.*",
            durable=subjects.FETCHER_CONSUMER,
            stream=subjects.CMD_STREAM,
            config=consumer_config(),
        )
        served: list[str] = []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert max((await queued(js)).values(), default=0) <= 1
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                for msg in await sub.fetch(players, timeout=0.5):
                    served.append(decode(msg.data, FetchRequested).player_key)
                    await msg.ack()
        await sub.unsubscribe()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert s.published > players  # the next slots went out once the queue moved
    assert set(served) == {f"idle_{i}" for i in range(players)}


async def test_a_flood_of_commands_keeps_the_fetcher_bounded_and_then_drains(
    tmp_path, nats_url, js
):
    sampling: list[asyncio.Task] = []
    with simulator_process("--players", str(SIM_PLAYERS)) as sim:
        worker = fetcher(tmp_path, nats_url, sim)
        try:
            await worker.until_ready()
            warm = range(SIM_PLAYERS - 49, SIM_PLAYERS + 1)
            for n in warm:
                await queue(js, n, slot=0)
            await until(lambda: _all_fetched(js, warm), 30, "the warm-up fetches", worker)
            before_kb = rss_kb(worker.proc.pid)

            # Every lookup now answers 2 s late: the fetcher serves ~4 commands a second.
            sim_faults(sim, {"prefixes": {"Sim": "slow"}, "slow_s": 2})
            sim_stats(sim, clear=True)
            samples: list[tuple[int, int, int]] = []  # RSS kB, fetcher's commands, OSRS_CMD's
            sampling.append(asyncio.create_task(_sample(js, worker.proc.pid, samples)))
            taken = await _flood(js, slots=20)  # 20,000 commands for 1,000 players
            served = sim_stats(sim)["requests"]  # fetches answered or under way meanwhile
            await asyncio.sleep(2)  # the fetcher keeps working through the backlog
            waiting = await queued(js)

            # Load drops: the answers come at once again, and everything queued is served.
            sim_faults(sim, None)
            everyone = range(1, SIM_PLAYERS + 1)
            await until(lambda: _all_fetched(js, everyone), 90, "the backlog drained", worker)
            await until(lambda: _empty(js), 10, "OSRS_CMD empty", worker)
            stats = sim_stats(sim)
        finally:
            for task in sampling:
                task.cancel()
            await asyncio.gather(*sampling, return_exceptions=True)
            worker.kill()
    # One command per player at most: the rest were refused, but for players fetched meanwhile.
    assert taken <= SIM_PLAYERS + served
    assert max(depth for _, _, depth in samples) <= SIM_PLAYERS
    assert max(waiting.values()) == 1 and len(waiting) > SIM_PLAYERS // 2
    assert max(held for _, held, _ in samples) <= CONCURRENCY
    assert stats["most_in_flight"] <= CONCURRENCY
    assert stats["most_in_flight_per_player"] == 1
    most_kb = max(kb for kb, _, _ in samples)
    assert most_kb < 2 * before_kb, (before_kb, most_kb)


async def _flood(js, slots: int) -> int:
    """`slots` commands for every simulated player, as fast as NATS takes them; how many
    OSRS_CMD stored."""
    taken = 0
    for slot in range(1, slots + 1):
        stored = await asyncio.gather(*(queue(js, n, slot) for n in range(1, SIM_PLAYERS + 1)))
        taken += sum(stored)
    return taken


async def _sample(js, pid: int, samples: list[tuple[int, int, int]]) -> None:
    while True:
        info = await js.consumer_info(subjects.CMD_STREAM, subjects.FETCHER_CONSUMER)
        stream = await js.stream_info(subjects.CMD_STREAM)
        samples.append((rss_kb(pid), info.num_ack_pending, stream.state.messages))
        await asyncio.sleep(0.2)


async def _all_fetched(js, numbers) -> bool:
    return {key_of(n) for n in numbers} <= await fetched(js)


async def _empty(js) -> bool:
    return (await js.stream_info(subjects.CMD_STREAM)).state.messages == 0


async def test_an_older_command_stream_takes_one_command_per_player_on_start(nats_url):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        older = natsx.stream_configs()[0]
        await js.add_stream(
            dataclasses.replace(
                older, max_msgs_per_subject=None, discard=None, discard_new_per_subject=None
            )
        )
        assert await queue(js, 1, slot=1) and await queue(js, 1, slot=2)  # it piled up

        await natsx.declare(js, Settings(nats_url=nats_url))  # what every service does first
        config = (await js.stream_info(subjects.CMD_STREAM)).config
        assert (config.max_msgs_per_subject, config.discard) == (1, DiscardPolicy.NEW)
        assert config.discard_new_per_subject
        assert not await queue(js, 1, slot=3)
        assert await queue(js, 2, slot=3)
    finally:
        await nc.close()
