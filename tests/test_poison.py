"""Poison on every subject a service consumes: each consumer parks what it cannot use on OSRS_DEAD
and carries on.

consumer   subject                      malformed  newer (*)  unknown player        ~1 MB, invalid
fetcher    osrs.cmd.fetch.*             dead       dead       fetched, like any     dead
projector  osrs.evt.player.*            dead       dead       ignored               dead
projector  osrs.evt.hiscore.observed.*  dead       dead       kept (untracked row)  dead
projector  osrs.status.fetch.*          dead       dead       kept (fetch_status)   dead
scheduler  osrs.evt.player.*            copy       copy       ignored               copy
scheduler  osrs.status.fetch.*          copy       copy       remembered            copy
(*) a newer schema version; on osrs.evt.player.* also an event type of a newer producer.

"dead": a dead letter on `osrs.dead.<service>.<stream>` with the reason, the original bytes and
the original headers (each poison message carries `Osrs-Test-Poison: <its name>`),
`osrs_dead_letters_total{service, reason="undecodable"}` up by one each, and the consumer then
handles the good messages published after the poison. The fetcher acks (removes) what it parks;
the projector moves its checkpoint past it. "copy": the scheduler only reads the log, which the
projector reads too, so it deletes nothing: it skips the message and parks a copy for the
operator, once per message even across restarts. A message over NATS' max_payload (1 MB) never
gets in: the publish is refused (asserted once, for 10 MB).

An event for a player never tracked is not poison: it is valid, in the log for good, and the
streams are not ordered with each other (a fetch status may come before the PlayerTracked, a
scheduled command may be fetched after an untrack). So nothing of it is dead-lettered:
- the fetcher fetches a command whatever the player (it keeps no list of who is tracked);
- the projector keeps an observation of an unknown player, under an untracked player row made
  from it, so that nothing observed is lost; it keeps a fetch status in fetch_status; a
  PlayerUpdated or PlayerUntracked of a player it does not know changes nothing (there is no
  row to change, and a later PlayerTracked carries the whole player);
- the scheduler ignores a PlayerUpdated or PlayerUntracked of a player not on its schedule, and
  remembers the last fetch of one, so that the player, once tracked, is not fetched twice in a
  slot.
"""

import asyncio

import msgspec
import nats.errors
import pytest
from prometheus_client import REGISTRY

from services import dlq
from services.projector.app import create_app as projector_app
from services.scheduler.app import Scheduler
from services.scheduler.lease import Lease
from shared import subjects
from shared.events import FetchCompleted, FetchOutcome, Message, PlayerUntracked, PlayerUpdated
from shared.modes import GameMode
from shared.settings import Settings
from tests.test_fetcher import _cmd, _count, _queue, _run_fetcher
from tests.test_progress import tracked
from tests.test_projector import _run_until, rows
from tests.test_rebuild import observed, publish
from tests.test_scheduler import track

POISON = "Osrs-Test-Poison"  # a header of the original, which the dead letter must carry
MALFORMED = b"\xff not json {"
REASONS = {  # what the reason says, by poison kind
    "malformed": "malformed",
    "newer": "v2: this code reads up to v1",
    "new type": "no message type is published on",
    "nearly 1 MB": "at `$.player_key`",
}


def newer(event: Message) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(event, v=2))


def nearly_1mb(event: Message) -> bytes:
    """The event, padded to just under NATS' 1 MB max_payload, with a player_key that is no
    key: it gets in, and no consumer can use it."""
    fields = msgspec.to_builtins(event) | {"player_key": {"not": "a key"}, "padding": ""}
    fields["padding"] = "x" * (1024 * 1024 - 2048 - len(msgspec.json.encode(fields)))
    return msgspec.json.encode(fields)


def poisons(label: str, subject: str, example: Message) -> dict[str, tuple[str, bytes]]:
    """The poison kinds for one subject: name -> (subject, bytes)."""
    return {
        f"{label} malformed": (subject, MALFORMED),
        f"{label} newer": (subject, newer(example)),
        f"{label} nearly 1 MB": (subject, nearly_1mb(example)),
    }


def status_poisons() -> dict[str, tuple[str, bytes]]:
    """OSRS_STATUS keeps one message a subject: each on a subject of its own."""
    status = FetchCompleted(player_key="x", mode=GameMode.REGULAR, outcome=FetchOutcome.CHANGED)
    return {
        name: (subjects.status_subject(name.replace(" ", "_")), data)
        for name, (_, data) in poisons("status", "", status).items()
    }


# An event type of a newer producer, on a subject this code has no type for.
NEW_TYPE = {"player new type": ("osrs.evt.player.renamed", b'{"v": 1, "player_key": "x"}')}


def stream_of(subject: str) -> str:
    prefixes = {"osrs.cmd.": subjects.CMD_STREAM, "osrs.status.": subjects.STATUS_STREAM}
    return next((s for p, s in prefixes.items() if subject.startswith(p)), subjects.EVT_STREAM)


async def inject(js, poison: dict[str, tuple[str, bytes]]) -> None:
    for name, (subject, data) in poison.items():
        await js.publish(subject, data, stream=stream_of(subject), headers={POISON: name})


def dead_letters_counted(service: str) -> float:
    labels = {"service": service, "reason": "undecodable"}
    return REGISTRY.get_sample_value("osrs_dead_letters_total", labels) or 0.0


async def assert_parked(js, service: str, poison: dict[str, tuple[str, bytes]]) -> list[str]:
    """Each poison message parked once by `service`, with its reason, bytes and headers;
    returns the reasons."""
    parked = {}
    async for dead, data, headers in dlq.dead_letters(js, service=service):
        assert headers[POISON] not in parked, f"{headers[POISON]} parked twice"
        parked[headers[POISON]] = (dead.subject, dead.stream, data)
        kind = next(k for k in REASONS if k in headers[POISON])
        assert REASONS[kind] in dead.reason, (headers[POISON], dead.reason)
    assert parked == {
        name: (subject, stream_of(subject), data) for name, (subject, data) in poison.items()
    }
    return [dead.reason async for dead, _, _ in dlq.dead_letters(js, service=service)]


async def test_the_fetcher_parks_poisoned_commands_and_serves_the_next(js, nats_url):
    poison = {  # OSRS_CMD holds one command a player: each on a subject of its own
        name: (subjects.fetch_subject(name.replace(" ", "_")), data)
        for name, (_, data) in poisons("cmd", "", _cmd("Tomorrow")).items()
    }
    await inject(js, poison)
    with pytest.raises(nats.errors.MaxPayloadError):  # 10 MB never gets in (the limit: 1 MB)
        await js.publish(subjects.fetch_subject("huge"), b"x" * 10_000_000)
    await _queue(js, "stranger")  # no one tracks this player: fetched all the same
    await _queue(js, "after")
    counted = dead_letters_counted("fetcher")
    # The hiscores URL points nowhere: a good command gets a status (unavailable) and waits for
    # a retry.
    settings = Settings(nats_url=nats_url, hiscores_url="http://127.0.0.1:9")

    async def served() -> bool:
        statuses = [
            await _count(js, subjects.STATUS_STREAM, subjects.status_subject(key))
            for key in ("stranger", "after")
        ]
        return statuses == [1, 1]

    await _run_fetcher(settings, served)
    await assert_parked(js, "fetcher", poison)
    assert dead_letters_counted("fetcher") - counted == len(poison)
    # The poison is gone from the work queue; the two unavailable commands wait for a retry.
    assert (await js.stream_info(subjects.CMD_STREAM)).state.messages == 2


async def test_the_projector_parks_poisoned_events_and_statuses_and_applies_the_rest(
    js, settings, database_url
):
    poison = {
        **poisons("player", subjects.PLAYER_TRACKED, tracked("x")),
        **poisons("observed", subjects.observed_subject("poison"), observed("x", 0, {})),
        **status_poisons(),
        **NEW_TYPE,
    }
    await inject(js, poison)
    await publish(
        js,
        PlayerUpdated(player_key="never_tracked", interval_s=600, by="t"),
        PlayerUntracked(player_key="never_tracked", by="t"),
        observed("stranger", 0, {"Attack": 1000}),
        FetchCompleted(player_key="stranger", mode=GameMode.REGULAR, outcome=FetchOutcome.CHANGED),
    )
    # The good messages after the poison.
    await track(js, "after", 3600)
    await publish(
        js,
        observed("after", 1, {}),
        FetchCompleted(player_key="after", mode=GameMode.REGULAR, outcome=FetchOutcome.CHANGED),
    )
    ends = {
        stream: (await js.stream_info(stream)).state.last_seq
        for stream in (subjects.EVT_STREAM, subjects.STATUS_STREAM)
    }
    counted = dead_letters_counted("projector")

    def all_read() -> bool:
        return (
            dict(rows(database_url, "SELECT stream, last_seq FROM projector_checkpoints")) == ends
        )

    await _run_until(projector_app(settings), all_read)
    await assert_parked(js, "projector", poison)
    assert dead_letters_counted("projector") - counted == len(poison)
    players = (
        "SELECT p.key, p.tracked, count(o.*) FROM players p"
        " LEFT JOIN observations o ON o.player_id = p.id GROUP BY 1, 2 ORDER BY 1"
    )
    assert rows(database_url, players) == [("after", True, 1), ("stranger", False, 1)]
    assert rows(database_url, "SELECT player_key FROM fetch_status ORDER BY 1") == [
        ("after",),
        ("stranger",),
    ]


async def test_the_scheduler_skips_poison_and_parks_one_copy_of_each(js):
    poison = {
        **poisons("player", subjects.PLAYER_UPDATED, PlayerUpdated(player_key="x", by="t")),
        **status_poisons(),
        **NEW_TYPE,
    }
    await track(js, "before", 3600)
    await inject(js, poison)
    await publish(
        js,
        PlayerUpdated(player_key="never_tracked", interval_s=600, by="t"),
        PlayerUntracked(player_key="never_tracked", by="t"),
        FetchCompleted(player_key="stranger", mode=GameMode.REGULAR, outcome=FetchOutcome.CHANGED),
    )
    counted = dead_letters_counted("scheduler")
    kv = await js.key_value(subjects.SCHEDULER_LEASE_BUCKET)
    first = Scheduler(js, Lease(kv, "first"))
    async with asyncio.timeout(10):
        await first.follow_log()  # the poison in the replay
        # ... and while following: more poison, then good messages.
        live = {"player malformed live": (subjects.PLAYER_TRACKED, MALFORMED)}
        await inject(js, live)
        await track(js, "after", 3600)
        done = FetchCompleted(
            player_key="after", mode=GameMode.REGULAR, outcome=FetchOutcome.UNCHANGED
        )
        await publish(js, done)
        while "after" not in first.last_fetched or "after" not in first.schedule.players:
            await asyncio.sleep(0.02)
    poison |= live
    assert set(first.schedule.players) == {"before", "after"}
    assert "stranger" in first.last_fetched
    reasons = await assert_parked(js, "scheduler", poison)
    assert all("do not replay this copy" in reason for reason in reasons)
    assert dead_letters_counted("scheduler") - counted == len(poison)
    # The poison stays in the log: the projector reads it too.
    assert (await js.stream_info(subjects.DEAD_STREAM)).state.messages == len(poison)

    # A restart reads the same log, and parks nothing twice.
    second = Scheduler(js, Lease(kv, "second"))
    async with asyncio.timeout(10):
        await second.follow_log()
    assert set(second.schedule.players) == {"before", "after"}
    assert dead_letters_counted("scheduler") - counted == len(poison)
    await assert_parked(js, "scheduler", poison)
