"""examples/: the subscribers a stranger copies, run as programs against a nats-server of their
own, on events published as the outbox relay publishes them (subject, Nats-Msg-Id)."""

import ast
import asyncio
import itertools
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from shared import nats as natsx
from shared import subjects
from shared.events import (
    PROGRESS_KINDS,
    AccountTypeChanged,
    LevelUp,
    MilestoneReached,
    PlayerProgressed,
    ProgressEvent,
    TrackingChanged,
)
from shared.players import player_key

EXAMPLES = Path(__file__).parent.parent / "examples"
KIND_OF = {event_type: kind for kind, event_type in PROGRESS_KINDS.items()}
_outbox_ids = itertools.count(1)
IDLE = ("--exit-when-idle", "0.5")  # the examples stop once nothing more comes


def who(name: str, minute: int, mode: str = "regular") -> dict:
    return {
        "player_key": player_key(name),
        "display_name": name,
        "mode": mode,
        "observed_at": datetime(2026, 11, 27, 12, minute, tzinfo=UTC),
    }


def level_up(name: str, minute: int, skill: str, before: int, after: int) -> LevelUp:
    return LevelUp(
        **who(name, minute), skill=skill, from_level=before, to_level=after, virtual=after > 99
    )


async def publish(js, *events: ProgressEvent) -> None:
    for event in events:
        subject = subjects.progress_subject(event.player_key, KIND_OF[type(event)])
        msg_id = str(next(_outbox_ids))
        assert await natsx.publish(
            js, subject, event, msg_id=msg_id, stream=subjects.PROGRESS_STREAM
        )


async def start(script: str, *args: str) -> asyncio.subprocess.Process:
    """The example running, once it says (on stderr) that it is subscribed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    ready = await asyncio.wait_for(proc.stderr.readline(), 15)
    assert ready, (await proc.stderr.read()).decode()
    return proc


async def output(proc: asyncio.subprocess.Process, timeout: float = 20) -> list[str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()


async def run(script: str, *args: str) -> list[str]:
    return await output(await start(script, *args))


async def test_level_ups_from_the_start_are_every_level_up_in_order(js, nats_url):
    await publish(
        js,
        level_up("Zezima", 0, "attack", 98, 99),
        PlayerProgressed(
            **who("Lynx Titan", 1),
            since=datetime(2026, 11, 27, tzinfo=UTC),
            span_s=43_260.0,
            gains={"slayer": 9_000},
        ),
        level_up("Lynx Titan", 1, "slayer", 99, 100),
        MilestoneReached(
            **who("Zezima", 0),
            milestone="level_99.attack",
            milestone_kind="level_99",
            metric="attack",
            threshold=99,
        ),
        level_up("Zezima", 5, "strength", 1, 3),
    )

    lines = await run("level_ups.py", "--nats-url", nats_url, "--from-start", *IDLE)

    assert lines == [
        "2026-11-27 12:00 Zezima attack 98 -> 99",
        "2026-11-27 12:01 Lynx Titan slayer 99 -> 100 (virtual)",
        "2026-11-27 12:05 Zezima strength 1 -> 3",
    ]


async def test_level_ups_of_one_player_by_name(js, nats_url):
    await publish(
        js,
        level_up("Zezima", 0, "attack", 98, 99),
        level_up("Lynx Titan", 1, "slayer", 99, 100),
        level_up("Lynx Titanic", 2, "magic", 50, 51),
    )

    lines = await run(
        "level_ups.py", "--nats-url", nats_url, "--player", "Lynx Titan", "--from-start", *IDLE
    )

    assert lines == ["2026-11-27 12:01 Lynx Titan slayer 99 -> 100 (virtual)"]


async def test_level_ups_since_a_time_leave_out_the_older_ones(js, nats_url):
    await publish(js, level_up("Zezima", 0, "attack", 98, 99))
    await asyncio.sleep(0.2)
    since = datetime.now(UTC)
    await asyncio.sleep(0.2)
    await publish(js, level_up("Zezima", 5, "strength", 1, 3))

    lines = await run("level_ups.py", "--nats-url", nats_url, "--since", since.isoformat(), *IDLE)

    assert lines == ["2026-11-27 12:05 Zezima strength 1 -> 3"]


async def test_level_ups_by_default_are_only_the_new_ones(js, nats_url):
    await publish(js, level_up("Zezima", 0, "attack", 98, 99))
    proc = await start("level_ups.py", "--nats-url", nats_url, "--max-events", "1")

    await publish(js, level_up("Zezima", 5, "strength", 1, 3))

    assert await output(proc) == ["2026-11-27 12:05 Zezima strength 1 -> 3"]


FIRST = [
    level_up("Zezima", 0, "attack", 98, 99),
    PlayerProgressed(
        **who("Zezima", 0),
        since=datetime(2026, 11, 27, 11, tzinfo=UTC),
        span_s=3600.0,
        gains={"attack": 41_250, "overall": 41_250, "zulrah": 3, "slayer": 10},
    ),
    MilestoneReached(
        **who("Zezima", 0),
        milestone="level_99.attack",
        milestone_kind="level_99",
        metric="attack",
        threshold=99,
    ),
    TrackingChanged(**who("Lynx Titan", 1), tracked=True, by="alice"),
]
FIRST_LINES = [
    "2026-11-27 12:00 level_up     Zezima attack 98 -> 99",
    "2026-11-27 12:00 gains        Zezima attack +41,250, overall +41,250, slayer +10 and 1 more",
    "2026-11-27 12:00 milestone    Zezima reached level_99.attack",
    "2026-11-27 12:01 tracking     Lynx Titan tracked by alice",
]
LATER = [
    AccountTypeChanged(
        **who("Lynx Titan", 2, "ironman"),
        from_mode="hardcore",
        to_mode="ironman",
        reason="hardcore_death",
    ),
    TrackingChanged(**who("Zezima", 3), tracked=False, by="admin"),
]
LATER_LINES = [
    "2026-11-27 12:02 account_type Lynx Titan hardcore -> ironman (hardcore_death)",
    "2026-11-27 12:03 tracking     Zezima untracked by admin",
]


async def test_durable_subscriber_resumes_without_missing_or_repeating(js, nats_url):
    bot = ("durable_subscriber.py", "--nats-url", nats_url, "--name", "clan-bot")
    await publish(js, *FIRST)

    assert await run(*bot, "--from-start", "--max-events", "2") == FIRST_LINES[:2]
    await publish(js, *LATER)
    # --from-start again: an existing consumer keeps its position.
    assert await run(*bot, "--from-start", *IDLE) == FIRST_LINES[2:] + LATER_LINES
    assert await run(*bot, *IDLE) == []

    info = await js.consumer_info(subjects.PROGRESS_STREAM, "clan-bot")
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)


async def test_durable_subscriber_stopped_by_sigterm_resumes_after_what_it_printed(js, nats_url):
    bot = ("durable_subscriber.py", "--nats-url", nats_url, "--name", "clan-bot")
    await publish(js, *FIRST)
    proc = await start(*bot, "--from-start")
    printed = [
        (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().rstrip("\n") for _ in FIRST
    ]
    proc.send_signal(signal.SIGTERM)
    assert printed + await output(proc) == FIRST_LINES

    await publish(js, *LATER)
    assert await run(*bot, *IDLE) == LATER_LINES


def test_examples_need_nothing_but_nats_py_and_the_standard_library():
    for script in EXAMPLES.glob("*.py"):
        tree = ast.parse(script.read_text(encoding="utf-8"))
        imported = {
            name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
        }
        outside = imported - set(sys.stdlib_module_names) - {"__future__", "nats"}
        assert outside == set(), f"{script.name} imports {outside}"
