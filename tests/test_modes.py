"""Account types from the boards an account appears on."""

import json

import httpx
import pytest

from services.fetcher.client import HiscoresClient, new_http_client
from services.fetcher.handler import FetchHandler
from services.fetcher.resilience import CircuitBreaker, RetryPolicy
from shared import subjects
from shared.events import FetchOutcome, FetchRequested, PlayerUpdated, decode
from shared.modes import MODULES, GameMode, account_type
from tests.hiscores_double import MID, with_gain

REG, IRON, HC, UIM, DEIRON = (
    GameMode.REGULAR,
    GameMode.IRONMAN,
    GameMode.HARDCORE,
    GameMode.ULTIMATE,
    GameMode.DE_IRONED,
)


@pytest.mark.parametrize(
    ("boards", "expected"),
    [
        ({REG: None}, None),
        ({REG: 100, IRON: None}, REG),
        ({REG: 100, IRON: 100, HC: 100}, HC),
        ({REG: 100, IRON: 100, HC: 90}, IRON),  # a hardcore who died: its hardcore entry froze
        ({REG: 100, IRON: 100, HC: None, UIM: 100}, UIM),
        ({REG: 100, IRON: 100, HC: None, UIM: None}, IRON),
        ({REG: 120, IRON: 100}, DEIRON),  # de-ironed: the iron entry froze, the regular one grows
    ],
)
def test_account_type(boards, expected):
    assert account_type(boards) == expected


class Boards:
    """A hiscores that knows, per board, the payload of one player (None: 404)."""

    def __init__(self, payloads: dict[GameMode, bytes | None]) -> None:
        self.payloads = payloads
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        module = request.url.path.split("/")[1].removeprefix("m=")
        self.asked.append(module)
        mode = next((m for m in (REG, IRON, HC, UIM) if MODULES[m] == module), None)
        body = self.payloads.get(mode)
        if body is None:
            return httpx.Response(404, content=b"<html>404</html>")
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})


async def detect(js, payloads, mode=REG):
    boards = Boards(payloads)
    kv = await js.key_value(subjects.FETCH_HASHES_BUCKET)
    client = HiscoresClient(
        "http://hiscores",
        new_http_client(transport=httpx.MockTransport(boards)),
        policy=RetryPolicy(confirm_404_s=0.0, base_delay_s=0.01),
        breaker=CircuitBreaker(cooldown_s=0.05, max_cooldown_s=0.1),
    )
    handler = FetchHandler(client, js, kv)
    cmd = FetchRequested(
        player_key="synth_mid", display_name="Synth Mid", mode=mode, detect_mode=True
    )
    fetched = await handler.handle(cmd)
    return fetched.completed, boards


async def _mode_updates(js) -> list[str]:
    """Every PlayerUpdated{mode} published, in order."""
    info = await js.stream_info(subjects.EVT_STREAM, subjects_filter=subjects.PLAYER_UPDATED)
    count = (info.state.subjects or {}).get(subjects.PLAYER_UPDATED, 0)
    if not count:
        return []
    sub = await js.pull_subscribe(subjects.PLAYER_UPDATED, stream=subjects.EVT_STREAM)
    msgs = await sub.fetch(count, timeout=2)
    await sub.unsubscribe()
    return [decode(m.data, PlayerUpdated).mode for m in msgs]


async def test_an_ironman_is_detected_and_fetched_from_its_board(js):
    completed, boards = await detect(js, {REG: MID, IRON: MID})
    assert completed.mode == IRON and completed.outcome is FetchOutcome.CHANGED
    assert await _mode_updates(js) == [IRON]
    assert boards.asked.count(MODULES[IRON]) == 1  # the ironman answer is reused, not asked again


async def test_a_regular_player_is_left_alone(js):
    completed, _ = await detect(js, {REG: MID})
    assert completed.mode == REG and await _mode_updates(js) == []


async def test_a_hardcore_death_is_recorded(js):
    alive = MID
    progressed = with_gain(MID, {"Attack": 5000})
    completed, _ = await detect(js, {REG: progressed, IRON: progressed, HC: alive}, mode=HC)
    assert completed.mode == IRON and await _mode_updates(js) == [IRON]


async def test_a_de_ironed_account_is_fetched_from_the_regular_board(js):
    completed, boards = await detect(
        js, {REG: with_gain(MID, {"Attack": 5000}), IRON: MID}, mode=IRON
    )
    assert completed.mode == DEIRON and await _mode_updates(js) == [DEIRON]
    assert MODULES[HC] not in boards.asked  # clear once the iron entry lags the regular one


async def test_detection_waits_when_a_board_fails(js):
    boards = {REG: MID, IRON: b"<html>down</html>"}
    completed, _ = await detect(js, boards, mode=REG)
    assert await _mode_updates(js) == []  # no change recorded on an outage
    # The fetch fails (and its command comes back): detection is retried, not put off a day.
    assert completed.outcome is FetchOutcome.UNAVAILABLE
    info = await js.stream_info(subjects.EVT_STREAM)
    assert info.state.messages == 0  # no observation either


async def test_an_ultimate_is_detected(js):
    completed, boards = await detect(js, {REG: MID, IRON: MID, UIM: MID})
    assert completed.mode == UIM and await _mode_updates(js) == [UIM]


async def test_a_spurious_404_on_the_hardcore_board_is_no_death(js):
    completed, _ = await detect(js, {REG: MID, IRON: MID}, mode=HC)  # hardcore board: 404
    assert await _mode_updates(js) == []
    assert completed.mode == HC


@pytest.mark.parametrize(
    ("current", "boards", "expected"),
    [
        (REG, {REG: 100, IRON: 100, HC: 100}, HC),  # the first detection finds anything
        (IRON, {REG: 100, IRON: 100, HC: 100}, None),  # nobody becomes hardcore later
        (DEIRON, {REG: 100, IRON: 100, HC: None, UIM: None}, None),  # de-ironing is final
        (IRON, {REG: 120, IRON: 100}, DEIRON),
        (HC, {REG: 100, IRON: 100, HC: 90}, IRON),  # a death: the entry is there, behind
        (HC, {REG: 100, IRON: 100, HC: None, UIM: None}, None),  # a spurious 404
        (UIM, {REG: 100, IRON: None}, None),  # an iron entry cannot vanish
        (HC, {REG: None}, None),
    ],
)
def test_only_proven_changes_are_recorded(current, boards, expected):
    from services.fetcher.handler import proven_change

    assert proven_change(current, account_type(boards), boards) == expected


def test_de_ironed_uses_the_regular_module():
    assert MODULES[DEIRON] == MODULES[REG]
    assert json.loads(MID)["name"] == "Synth Mid"
