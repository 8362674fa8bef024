"""Each worker as a process of its own: /ready and /metrics on its metrics port, JSON logs, and
SIGTERM: it stops pulling, finishes the work in hand, acks it and exits 0 within
OSRS_SHUTDOWN_GRACE_S. (The API's clean exit is in test_e2e.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from services.local import free_port
from services.projector.feeds import BATCH
from shared import nats as natsx
from shared import subjects
from shared.events import FetchRequested, PlayerTracked
from tests.sim_fixtures import simulator_process
from tests.test_progress import observed, tracked
from tests.test_rebuild import publish

GRACE_S = 10.0


class Worker:
    def __init__(self, tmp_path: Path, service: str, **env: str) -> None:
        self.metrics_port = free_port()
        self.log_path = tmp_path / f"{service}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("OSRS_")}
        base |= {
            "OSRS_METRICS_PORT": str(self.metrics_port),
            "OSRS_SHUTDOWN_GRACE_S": str(GRACE_S),
            "OSRS_LOG_FORMAT": "json",
            **env,
        }
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                env=base,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def logged(self) -> list[dict]:
        return [json.loads(line) for line in self.log.splitlines() if line.startswith("{")]

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.get(f"http://127.0.0.1:{self.metrics_port}{path}")

    async def until_ready(self, timeout: float = 30) -> None:
        await until(self._ready, timeout, "ready", self)

    async def _ready(self) -> bool:
        try:
            return (await self.get("/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    async def metrics(self) -> str:
        return (await self.get("/metrics")).text

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(GRACE_S + 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"still running {GRACE_S + 5:.0f} s after SIGTERM\n{self.log[-4000:]}")
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def until(check, timeout: float, what: str, worker: Worker | None = None):
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if worker is not None:
            assert worker.proc.poll() is None, f"exited: {worker.log[-4000:]}"
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{worker.log[-4000:] if worker else ''}")
        await asyncio.sleep(0.05)
    return result


def _type_lines(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


@pytest.fixture
def simulator(tmp_path):
    """The hiscores simulator; names starting `Sim 2` answer 4 s late."""
    with simulator_process("--players", "30", "--fault-prefix", "Sim 2=slow", "--slow", "4") as url:
        yield url


async def _fetch(js, name: str) -> None:
    key = name.lower().replace(" ", "_")
    cmd = FetchRequested(player_key=key, display_name=name, slot=1)
    await natsx.publish(
        js, subjects.fetch_subject(key), cmd, msg_id=f"{key}:1", stream=subjects.CMD_STREAM
    )


async def _fetched(js, key: str) -> bool:
    info = await js.stream_info(subjects.STATUS_STREAM, subjects_filter="osrs.status.fetch.>")
    return subjects.status_subject(key) in (info.state.subjects or {})


async def test_fetcher_metrics_logs_and_a_fetch_in_hand_finished_on_sigterm(
    tmp_path, nats_url, js, simulator
):
    fetcher = Worker(tmp_path, "fetcher", NATS_URL=nats_url, OSRS_HISCORES_URL=simulator)
    try:
        await fetcher.until_ready()
        await _fetch(js, "Sim 1")
        await until(lambda: _fetched(js, "sim_1"), 20, "sim_1 fetched", fetcher)
        await asyncio.sleep(telemetry_refresh_s())  # the lag gauges sampled once more
        text = await fetcher.metrics()
        assert {
            "osrs_fetches_total",
            "osrs_hiscores_request_duration_seconds",
            "osrs_circuit_breaker_state",
            "osrs_consumer_pending_messages",
            "osrs_consumer_ack_pending_messages",
            "osrs_dead_letters_total",
        } <= _type_lines(text)
        assert 'osrs_fetches_total{outcome="changed"} 1.0' in text
        host = simulator.removeprefix("http://")
        assert f'osrs_circuit_breaker_state{{host="{host}"}} 0.0' in text
        assert 'osrs_consumer_pending_messages{consumer="fetcher",stream="OSRS_CMD"} 0.0' in text
        fetched = next(e for e in fetcher.logged() if e.get("event") == "fetched")
        assert (fetched["player_key"], fetched["msg_id"]) == ("sim_1", "sim_1:1")

        await _fetch(js, "Sim 2")  # answered 4 s late

        await until(lambda: _one_in_hand(js), 10, "the slow fetch in hand", fetcher)
        code, took = fetcher.terminate()
    finally:
        fetcher.kill()
    assert code == 0, fetcher.log[-4000:]
    assert took < GRACE_S
    assert await _fetched(js, "sim_2")  # finished, not dropped
    info = await js.consumer_info(subjects.CMD_STREAM, subjects.FETCHER_CONSUMER)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)  # and acked


async def _one_in_hand(js) -> bool:
    """The fetcher holds one command it has not acked yet."""
    info = await js.consumer_info(subjects.CMD_STREAM, subjects.FETCHER_CONSUMER)
    return info.num_ack_pending == 1


async def test_fetcher_hands_back_a_fetch_still_waiting_when_the_grace_ends(
    tmp_path, nats_url, js, simulator
):
    fetcher = Worker(
        tmp_path,
        "fetcher",
        NATS_URL=nats_url,
        OSRS_HISCORES_URL=simulator,
        OSRS_SHUTDOWN_GRACE_S="6",  # 1 s for the work in hand, the answer takes 4
    )
    try:
        await fetcher.until_ready()
        await _fetch(js, "Sim 2")

        await until(lambda: _one_in_hand(js), 10, "the slow fetch in hand", fetcher)
        code, took = fetcher.terminate()
    finally:
        fetcher.kill()
    assert code == 0 and took < 6, fetcher.log[-4000:]
    assert not await _fetched(js, "sim_2")
    # Nak'ed: the next fetcher gets it at once, not after the ack wait (30 s).
    sub = await js.pull_subscribe(
        f"{subjects.FETCH_PREFIX}.*", durable=subjects.FETCHER_CONSUMER, stream=subjects.CMD_STREAM
    )
    (again,) = await sub.fetch(1, timeout=3)
    assert again.subject == subjects.fetch_subject("sim_2")
    assert again.metadata.num_delivered == 2


def telemetry_refresh_s() -> float:
    from shared.telemetry import REFRESH_S

    return REFRESH_S + 0.5


def _checkpoint(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT last_seq FROM projector_checkpoints WHERE stream = 'OSRS_EVT'"
        ).fetchone()
    return row[0] if row else 0


async def test_projector_metrics_and_sigterm_in_the_middle_of_the_log(
    tmp_path, nats_url, database_url, js
):
    history = []
    for p in range(60):
        history.append(tracked(f"p{p}"))
        history += [observed(f"p{p}", h, {"Attack": 200_000 * h}) for h in range(30)]
    projector = Worker(tmp_path, "projector", NATS_URL=nats_url, DATABASE_URL=database_url)
    try:
        await projector.until_ready()
        await publish(js, *history)

        async def under_way() -> bool:
            return _checkpoint(database_url) > 0

        await until(under_way, 30, "the first batches", projector)
        text = await projector.metrics()
        code, took = projector.terminate()
    finally:
        projector.kill()
    assert code == 0 and took < GRACE_S, projector.log[-4000:]
    assert {
        "osrs_projector_events_applied_total",
        "osrs_observations_written_total",
        "osrs_progress_events_relayed_total",
        "osrs_outbox_backlog",
        "osrs_consumer_pending_messages",
        "osrs_consumer_ack_pending_messages",
    } <= _type_lines(text)
    assert 'osrs_projector_events_applied_total{kind="PlayerTracked",stream="OSRS_EVT"}' in text
    applied = _checkpoint(database_url)
    info = await js.consumer_info(subjects.EVT_STREAM, subjects.PROJECTOR_EVT_CONSUMER)
    # What it applied it acked, and nothing is left half done; the one batch it had fetched
    # ahead is unacked, for the next projector (which starts from the checkpoint anyway).
    assert info.ack_floor.stream_seq == applied and info.num_ack_pending <= BATCH
    with psycopg.connect(database_url) as conn:
        (unsent,) = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
    assert unsent == 0  # what the last batches derived went out before the exit


async def test_scheduler_metrics_and_the_lease_released_on_sigterm(tmp_path, nats_url, js):
    every_2s = [
        PlayerTracked(player_key=f"p{p}", display_name=f"P{p}", interval_s=2, by="admin")
        for p in range(5)
    ]
    await publish(js, *every_2s)
    scheduler = Worker(tmp_path, "scheduler", NATS_URL=nats_url)
    try:
        await scheduler.until_ready()

        async def scheduling() -> str | None:
            text = await scheduler.metrics()
            return text if "osrs_fetches_scheduled_total 5.0" in text else None  # a slot each

        text = await until(scheduling, 20, "the first slots published", scheduler)
        code, took = scheduler.terminate()
    finally:
        scheduler.kill()
    assert code == 0 and took < GRACE_S, scheduler.log[-4000:]
    assert "osrs_scheduler_leader 1.0" in text
    assert {"osrs_scheduler_players", "osrs_fetches_scheduled_total"} <= _type_lines(text)
    lease = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    with pytest.raises((KeyNotFoundError, KeyDeletedError)):
        await lease.get(subjects.LEASE_KEY)  # handed over at once, not after its TTL
