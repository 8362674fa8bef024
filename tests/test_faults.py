"""The fetcher against the simulator misbehaving in every way it can, on a real NATS server:
each fault gives its outcome, no bogus observation, no lost command; a layout change mid-run
keeps every player updating with the new boss tracked."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

import services.fetcher.worker as fetcher_worker
from services.fetcher.app import create_app as create_fetcher
from services.fetcher.resilience import CircuitBreaker, RetryPolicy
from services.projector.app import create_app as create_projector
from shared import nats as natsx
from shared import subjects
from shared.events import FetchCompleted, FetchRequested, PlayerTracked, decode
from shared.settings import Settings
from tests.sim_fixtures import simulator_process

pytestmark = pytest.mark.e2e

FAST = RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1, confirm_404_s=0.05)
# One population player per fault (prefixes fold like keys: "sim_1" matches Sim 1 only when
# the population has fewer than ten players).
FAULTS = {
    "sim_1": ("404", "not_found"),
    "sim_2": ("429", "rate_limited"),
    "sim_3": ("500", "unavailable"),
    "sim_4": ("502", "unavailable"),
    "sim_5": ("503", "unavailable"),
    "sim_6": ("504", "unavailable"),
    "sim_7": ("slow", "unavailable"),
    "sim_8": ("truncated", "unavailable"),
    "sim_9": ("wrong_type", "changed"),
}
MORE_FAULTS = {"sim_1": ("reset", "unavailable"), "sim_2": ("html200", "unavailable")}


@pytest.fixture
def simulator():
    with simulator_process("--players", "9", "--tick", "3600", "--slow", "3") as url:
        yield url


def put_faults(sim: str, faults: dict) -> None:
    httpx.put(f"{sim}/_sim/faults", json=faults).raise_for_status()


async def statuses(js) -> dict[str, FetchCompleted]:
    info = await js.stream_info(subjects.STATUS_STREAM, subjects_filter="osrs.status.fetch.*")
    found = {}
    for subject in info.state.subjects or {}:
        msg = await js.get_last_msg(subjects.STATUS_STREAM, subject)
        status = decode(msg.data, FetchCompleted)
        found[status.player_key] = status
    return found


async def observed(js) -> dict[str, int]:
    info = await js.stream_info(subjects.EVT_STREAM, subjects_filter="osrs.evt.hiscore.>")
    return {s.rsplit(".", 1)[1]: n for s, n in (info.state.subjects or {}).items()}


async def request(js, keys, slot: int) -> None:
    for key in keys:
        cmd = FetchRequested(player_key=key, display_name=key.replace("_", " ").title(), slot=slot)
        await natsx.publish(
            js, subjects.fetch_subject(key), cmd, msg_id=f"{key}:{slot}", stream=subjects.CMD_STREAM
        )


async def until(check, timeout: float, what: str, js=None):
    try:
        async with asyncio.timeout(timeout):
            while not (result := await check()):
                await asyncio.sleep(0.1)
    except TimeoutError:
        state = ""
        if js is not None:
            found = {k: (s.outcome, s.detail) for k, s in (await statuses(js)).items()}
            state = f"; statuses {found}; observed {await observed(js)}"
        pytest.fail(f"timed out waiting for {what}{state}")
    return result


async def test_every_fault_is_recorded_and_no_command_is_lost(js, nats_url, simulator, monkeypatch):
    monkeypatch.setattr(fetcher_worker, "retry_delay", lambda attempt, retry_after=None: 1.0)
    settings = Settings(
        nats_url=nats_url,
        hiscores_url=simulator,
        hiscores_timeout=1.0,
        fetch_rate=200,
        fetch_concurrency=16,
    )
    app = create_fetcher(
        settings,
        policy=FAST,
        breaker=CircuitBreaker(threshold=50, cooldown_s=0.3, max_cooldown_s=0.6),
    )
    task = asyncio.create_task(app.run())
    try:
        for faults in (FAULTS, MORE_FAULTS):
            put_faults(
                simulator,
                {"prefixes": {k: kind for k, (kind, _) in faults.items()}, "retry_after_s": 1},
            )
            before = await observed(js)
            slot = 1 if faults is FAULTS else 2
            await request(js, faults, slot)

            async def all_recorded(faults=faults, slot=slot):
                found = await statuses(js)
                done = {k: s.outcome for k, s in found.items() if k in faults}
                expected = {k: outcome for k, (_, outcome) in faults.items()}
                return done == expected and all(s.at for s in found.values())

            await until(all_recorded, 30, f"the outcomes of {faults}", js)
            after = await observed(js)
            bogus = {
                k: n
                for k, n in after.items()
                if faults.get(k, ("", ""))[1] != "changed" and n != before.get(k, 0)
            }
            assert bogus == {}, "an observation was published for a failed fetch"
            # Lift the faults: every command that failed with a transient outcome is still
            # queued and comes back, and is served.
            put_faults(simulator, {})
            transient = [
                k
                for k, (_, outcome) in faults.items()
                if outcome in ("unavailable", "rate_limited")
            ]

            async def recovered(transient=transient):
                found = await statuses(js)
                return all(found[k].outcome in ("changed", "unchanged") for k in transient)

            await until(recovered, 30, f"the redelivered commands of {transient}", js)
        info = await js.stream_info(subjects.CMD_STREAM)
        assert info.state.messages == 0  # every command was served in the end
    finally:
        app.exit()
        await asyncio.wait_for(task, 15)


async def test_a_layout_change_mid_run_keeps_every_player_updating(
    js, nats_url, database_url, simulator
):
    keys = [f"sim_{i}" for i in range(1, 10)]
    for key in keys:
        event = PlayerTracked(
            player_key=key, display_name=key.replace("_", " ").title(), interval_s=3600, by="t"
        )
        await natsx.publish(
            js, subjects.PLAYER_TRACKED, event, msg_id=event.id, stream=subjects.EVT_STREAM
        )
    settings = Settings(
        nats_url=nats_url, database_url=database_url, hiscores_url=simulator, fetch_rate=200
    )
    apps = [create_fetcher(settings, policy=FAST), create_projector(settings)]
    tasks = [asyncio.create_task(app.run()) for app in apps]

    def stored() -> dict[str, int]:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT p.key, count(*) FROM observations o JOIN players p ON p.id = o.player_id"
                " GROUP BY 1"
            )
            return dict(rows.fetchall())

    async def each_observed(times: int):
        counts = stored()
        return all(counts.get(k, 0) >= times for k in keys)

    try:
        await request(js, keys, 1)
        await until(lambda: each_observed(1), 30, "the first observations")
        put_faults(simulator, {"new_bosses": [{"name": "Brand New Boss", "after": "Scurrius"}]})
        await request(js, keys, 2)
        await until(lambda: each_observed(2), 30, "observations after the layout change")
    finally:
        for app in apps:
            app.exit()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    with psycopg.connect(database_url) as conn:
        (boss_id,) = conn.execute("SELECT id FROM metrics WHERE key = 'brand_new_boss'").fetchone()
        outcomes = conn.execute("SELECT outcome, count(*) FROM fetch_status GROUP BY 1").fetchall()
    assert outcomes == [("changed", 9)]
    assert boss_id > 116  # registered on the fly, after the 116 known metrics
