"""The fetcher against a real NATS JetStream server."""

import asyncio
import json

import pytest

from services.fetcher.app import create_app
from services.fetcher.client import HiscoresClient
from services.fetcher.handler import Fetched, FetchHandler
from services.fetcher.resilience import CircuitBreaker, RetryPolicy
from services.fetcher.worker import retry_delay
from shared import nats as natsx
from shared import subjects
from shared.events import (
    FetchCompleted,
    FetchOutcome,
    FetchRequested,
    HiscoreObserved,
    decode,
)
from shared.settings import Settings
from tests.hiscores_double import MID, NOT_FOUND, OUTAGE, ScriptedHiscores, with_gain

FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, confirm_404_s=0.01)


def fast_breaker() -> CircuitBreaker:
    return CircuitBreaker(cooldown_s=0.2, max_cooldown_s=0.5)


async def _handler(js, hiscores: ScriptedHiscores, **kwargs) -> FetchHandler:
    kv = await js.key_value(subjects.FETCH_HASHES_BUCKET)
    kwargs.setdefault("policy", FAST)
    kwargs.setdefault("breaker", fast_breaker())
    return FetchHandler(HiscoresClient("http://hiscores", hiscores.client(), **kwargs), js, kv)


async def _queue(js, name: str) -> None:
    """A scheduled fetch command for `name`, waiting in OSRS_CMD."""
    await natsx.publish(
        js, subjects.fetch_subject(name), _cmd(name), msg_id=f"{name}:1", stream=subjects.CMD_STREAM
    )


async def _count(js, stream: str, subject: str) -> int:
    info = await js.stream_info(stream, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def _cmd(name="Synth Mid") -> FetchRequested:
    from shared.players import player_key

    return FetchRequested(player_key=player_key(name), display_name=name, slot=1)


async def test_first_fetch_is_observed_and_an_idle_player_produces_no_observation(js):
    handler = await _handler(js, ScriptedHiscores())
    commands = [_cmd(), _cmd()]
    first = (await handler.handle(commands[0])).completed
    second = (await handler.handle(commands[1])).completed
    assert (first.outcome, second.outcome) == (FetchOutcome.CHANGED, FetchOutcome.UNCHANGED)
    assert [first.request_id, second.request_id] == [c.id for c in commands]  # which it served
    assert await _count(js, subjects.EVT_STREAM, subjects.observed_subject("synth_mid")) == 1
    msg = await js.get_last_msg(subjects.EVT_STREAM, subjects.observed_subject("synth_mid"))
    observed = decode(msg.data, HiscoreObserved)
    assert observed.display_name == "Synth Mid" and len(observed.skills) == 25
    status = await js.get_last_msg(subjects.STATUS_STREAM, subjects.status_subject("synth_mid"))
    assert decode(status.data, FetchCompleted).outcome is FetchOutcome.UNCHANGED


async def test_rank_drift_alone_is_not_a_change_but_xp_is(js):
    drifted = json.loads(MID)
    drifted["skills"][3]["rank"] += 50
    gained = json.loads(with_gain(MID, {"Strength": 500}))
    hiscores = ScriptedHiscores(
        (200, MID, "application/json"),
        (200, json.dumps(drifted).encode(), "application/json"),
        (200, json.dumps(gained).encode(), "application/json"),
    )
    handler = await _handler(js, hiscores)
    outcomes = [(await handler.handle(_cmd())).completed.outcome for _ in range(3)]
    assert outcomes == [FetchOutcome.CHANGED, FetchOutcome.UNCHANGED, FetchOutcome.CHANGED]
    assert await _count(js, subjects.EVT_STREAM, subjects.observed_subject("synth_mid")) == 2


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ((404, NOT_FOUND, "text/html"), FetchOutcome.NOT_FOUND),
        ((200, OUTAGE, "text/html"), FetchOutcome.UNAVAILABLE),
        ((503, b"", "text/plain"), FetchOutcome.UNAVAILABLE),
        ((429, b"", "text/plain"), FetchOutcome.RATE_LIMITED),
        ((200, b'{"skills": [], "activities": []}', "application/json"), FetchOutcome.INVALID),
    ],
)
async def test_failures_publish_a_status_and_no_observation(js, answer, outcome):
    handler = await _handler(js, ScriptedHiscores(answer))
    completed = (await handler.handle(_cmd())).completed
    assert completed.outcome is outcome and completed.detail


async def test_a_429_passes_its_retry_after_on_to_the_redelivery_delay(js):
    handler = await _handler(js, ScriptedHiscores((429, b"", "text/plain", {"Retry-After": "42"})))
    fetched = await handler.handle(_cmd())
    assert fetched.retry_after == 42.0
    assert retry_delay(1, fetched.retry_after) == 42.0
    assert retry_delay(1) == 5.0 and retry_delay(3) == 45.0 and retry_delay(20) == 600.0
    assert await _count(js, subjects.EVT_STREAM, subjects.observed_subject("synth_mid")) == 0
    assert await _count(js, subjects.STATUS_STREAM, subjects.status_subject("synth_mid")) == 1


async def test_the_request_uses_the_official_path_and_a_user_agent(js):
    hiscores = ScriptedHiscores()
    handler = await _handler(js, hiscores)
    await handler.handle(_cmd("Lynx Titan"))
    request = hiscores.requests[0]
    assert request.url.path == "/m=hiscore_oldschool/index_lite.json"
    assert request.url.params["player"] == "Lynx Titan"
    assert "osrs-diff" in request.headers["user-agent"]


async def _run_fetcher(settings: Settings, until, timeout: float = 15.0):
    app = create_app(settings, policy=FAST, breaker=fast_breaker())
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(timeout):
            while not await until():
                await asyncio.sleep(0.05)
    finally:
        app.exit()
        await asyncio.wait_for(task, 10)


async def test_a_handler_error_redelivers_the_command_instead_of_dropping_it(
    js, nats_url, monkeypatch
):
    import services.fetcher.worker as fetcher_worker

    calls = []
    real_handle = FetchHandler.handle

    async def flaky_handle(self, cmd):
        calls.append(cmd.player_key)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return await real_handle(self, cmd)

    monkeypatch.setattr(FetchHandler, "handle", flaky_handle)
    monkeypatch.setattr(fetcher_worker, "retry_delay", lambda attempt, retry_after=None: 0.2)
    await _queue(js, "nobody")
    settings = Settings(nats_url=nats_url, hiscores_url="http://127.0.0.1:9")

    async def handled_twice() -> bool:
        return (
            len(calls) >= 2
            and await _count(js, subjects.STATUS_STREAM, subjects.status_subject("nobody")) == 1
        )

    await _run_fetcher(settings, handled_twice)
    assert calls[:2] == ["nobody", "nobody"]


async def test_consecutive_not_found_answers_are_counted_and_reset_by_data(js):
    hiscores = ScriptedHiscores(
        *[(404, NOT_FOUND, "text/html")] * 6,
        *[(503, b"", "text/plain")] * 3,  # an outage says nothing: the count stays
        *[(404, NOT_FOUND, "text/html")] * 2,
        (200, MID, "application/json"),
    )
    handler = await _handler(js, hiscores)
    streaks = [(await handler.handle(_cmd())).completed.not_found_streak for _ in range(6)]
    assert streaks == [1, 2, 3, 3, 4, 0]


async def test_a_command_under_an_outage_is_retried_past_any_attempt_limit(
    js, nats_url, monkeypatch
):
    import services.fetcher.worker as fetcher_worker

    calls: list[int] = []
    real_handle = FetchHandler.handle

    async def counting_handle(self, cmd):
        calls.append(1)
        return await real_handle(self, cmd)

    monkeypatch.setattr(FetchHandler, "handle", counting_handle)
    monkeypatch.setattr(fetcher_worker, "retry_delay", lambda attempt, retry_after=None: 0.05)
    await _queue(js, "nobody")
    settings = Settings(nats_url=nats_url, hiscores_url="http://127.0.0.1:9")

    async def many_attempts() -> bool:
        return len(calls) > fetcher_worker.MAX_ATTEMPTS + 2

    await _run_fetcher(settings, many_attempts)
    assert (await js.stream_info(subjects.CMD_STREAM)).state.messages == 1  # still queued
    assert (await js.stream_info(subjects.DEAD_STREAM)).state.messages == 0


async def test_commands_waiting_for_a_free_worker_are_not_redelivered(js, nats_url, monkeypatch):
    import services.fetcher.worker as fetcher_worker

    monkeypatch.setattr(fetcher_worker, "ACK_WAIT_S", 1)
    monkeypatch.setattr(fetcher_worker, "HEARTBEAT_S", 0.3)
    handled: list[str] = []

    async def slow_handle(self, cmd):
        handled.append(cmd.player_key)
        await asyncio.sleep(2.5)  # longer than the ack wait: only heartbeats keep it
        return Fetched(
            FetchCompleted(player_key=cmd.player_key, mode=cmd.mode, outcome=FetchOutcome.UNCHANGED)
        )

    monkeypatch.setattr(FetchHandler, "handle", slow_handle)
    for i in range(4):
        await _queue(js, f"p{i}")
    settings = Settings(nats_url=nats_url, hiscores_url="http://127.0.0.1:9", fetch_concurrency=2)

    async def four_handled_and_settled() -> bool:
        await asyncio.sleep(0.2)
        return len(handled) >= 4 and len(handled) == len(set(handled))

    await _run_fetcher(settings, four_handled_and_settled, timeout=20)
    await asyncio.sleep(0)
    assert sorted(handled) == ["p0", "p1", "p2", "p3"]  # each once
