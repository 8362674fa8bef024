"""`osrs-diff dlq list|replay` as an operator runs them, against a real NATS server."""

from __future__ import annotations

from nats.js.errors import NotFoundError

from services.local import free_port
from shared import nats as natsx
from shared import subjects
from shared.events import FetchRequested, PlayerTracked, decode, encode
from tests.test_ops_cli import osrs_diff


async def park(js, subject: str, stream: str, data: bytes, headers: dict, service: str, why: str):
    """Publish a message, take it from a consumer of its stream and dead-letter it as a
    service does when it gives up."""
    await js.publish(subject, data, stream=stream, headers=headers)
    sub = await js.pull_subscribe(subject, stream=stream)
    (msg,) = await sub.fetch(1, timeout=2)
    await natsx.dead_letter(js, service, msg, why, kind="cannot_apply")
    await msg.ack_sync()  # taken off a work queue before the test goes on
    await sub.unsubscribe()


async def park_tracked(js, service: str, why: str, **headers: str) -> PlayerTracked:
    """A PlayerTracked of zezima in OSRS_EVT, dead-lettered by `service`."""
    tracked = PlayerTracked(player_key="zezima", display_name="Zezima", interval_s=3600, by="ops")
    headers = {"Nats-Msg-Id": tracked.id, **headers}
    data = encode(tracked)
    await park(js, subjects.PLAYER_TRACKED, subjects.EVT_STREAM, data, headers, service, why)
    return tracked


async def test_dead_letters_are_listed_and_replayed_where_they_came_from(js, nats_url):
    tracked = await park_tracked(
        js, "projector", "cannot apply: OperationalError('the database is away')", Trace="abc"
    )
    await park(
        js,
        "osrs.cmd.fetch.lynx_titan",
        subjects.CMD_STREAM,
        b"\x00not json",
        {},
        "fetcher",
        "cannot decode: JSON is malformed",
    )
    env = {"NATS_URL": nats_url}

    code, out, _ = await osrs_diff("dlq", "list", **env)
    assert code == 0, out
    assert "2 dead letters" in out
    assert "projector  OSRS_EVT osrs.evt.player.tracked" in out
    assert "the database is away" in out and "JSON is malformed" in out
    code, out, _ = await osrs_diff("dlq", "list", "--service", "fetcher", **env)
    assert "1 dead letters" in out and "projector" not in out

    code, _, err = await osrs_diff("dlq", "replay", **env)
    assert code == 2 and "--all" in err
    code, _, err = await osrs_diff("dlq", "replay", "99", **env)
    assert code == 1 and "no dead letter #99" in err

    last_before = (await js.stream_info(subjects.EVT_STREAM)).state.last_seq
    code, out, _ = await osrs_diff("dlq", "replay", "--all", "--service", "projector", **env)
    assert code == 0, out
    assert "1 dead letters replayed" in out
    # The original bytes and headers are back in their stream, at its end ...
    replayed = await js.get_msg(subjects.EVT_STREAM, last_before + 1)
    assert replayed.subject == subjects.PLAYER_TRACKED
    assert decode(replayed.data, PlayerTracked) == tracked
    assert replayed.headers["Trace"] == "abc" and replayed.headers["Osrs-Replay-Of"] == "1"
    assert not any(name.startswith("Osrs-Dead") for name in replayed.headers)
    # ... and the dead letter is gone; the fetcher's is still there.
    try:
        await js.get_msg(subjects.DEAD_STREAM, 1)
        raise AssertionError("the replayed dead letter is still in OSRS_DEAD")
    except NotFoundError:
        pass
    code, out, _ = await osrs_diff("dlq", "list", **env)
    assert "1 dead letters" in out and "fetcher" in out


async def test_without_nats_the_command_says_so():
    code, _, err = await osrs_diff("dlq", "list", NATS_URL=f"nats://127.0.0.1:{free_port()}")
    assert code == 1 and err.startswith("osrs-diff dlq:")


async def test_a_scheduler_copy_is_not_replayed_and_a_command_already_queued_is_not_doubled(
    js, nats_url
):
    await park_tracked(js, "scheduler", "cannot apply: a copy")
    command = FetchRequested(player_key="lynx_titan", display_name="Lynx Titan")
    subject = subjects.fetch_subject("lynx_titan")
    await park(js, subject, subjects.CMD_STREAM, encode(command), {}, "fetcher", "failed 10 times")
    queued = FetchRequested(player_key="lynx_titan", display_name="Lynx Titan", reason="manual")
    assert await natsx.publish(js, subject, queued, msg_id=queued.id, stream=subjects.CMD_STREAM)
    events_before = (await js.stream_info(subjects.EVT_STREAM)).state.messages

    code, out, _ = await osrs_diff("dlq", "replay", "--all", NATS_URL=nats_url)
    assert code == 0, out
    assert "#1 skipped: a copy by the scheduler: the original is still in OSRS_EVT" in out
    assert "#2 deleted: the player's command in OSRS_CMD serves it" in out
    assert "0 dead letters replayed (1 skipped, 1 deleted)" in out
    assert (await js.stream_info(subjects.EVT_STREAM)).state.messages == events_before
    assert (await js.stream_info(subjects.CMD_STREAM)).state.messages == 1  # the queued one
    code, out, _ = await osrs_diff("dlq", "list", NATS_URL=nats_url)
    assert "1 dead letters" in out and "scheduler" in out


async def test_a_message_that_just_fitted_is_parked_with_its_first_bytes(js, nats_url):
    """Its headers and the dead letter's would pass NATS' max_payload: the server would refuse
    the dead letter for ever, and the consumer would be stuck on the message."""
    size = js._nc.max_payload - 300  # fits with its own small header
    await park(
        js,
        subjects.PLAYER_TRACKED,
        subjects.EVT_STREAM,
        b"{" + b" " * (size - 1),
        {"Trace": "big"},
        "projector",
        "cannot decode: JSON is malformed",
    )
    dead = await js.get_msg(subjects.DEAD_STREAM, 1)
    assert dead.headers["Osrs-Truncated-From"] == str(size) and dead.headers["Trace"] == "big"
    assert 0 < len(dead.data) < size
    code, out, _ = await osrs_diff("dlq", "list", NATS_URL=nats_url)
    assert f"{size:,} bytes" in out and "kept)" in out
    code, out, _ = await osrs_diff("dlq", "replay", "1", NATS_URL=nats_url)
    assert code == 0 and "#1 skipped: only the first" in out
