"""`osrs-diff dlq list|replay`: the dead letters in OSRS_DEAD, and sending them back.

A dead letter is the original message (its bytes and headers) with the reason and where it came
from in `Osrs-*` headers (shared/nats.py `dead_letter`). Replaying publishes the original bytes
and headers to the original subject again, into its stream, under the message id
`replay:<dead letter's sequence>` (so two replays of one dead letter make one message), then
deletes the dead letter. A message that fails again becomes a new dead letter.

Some are not sent back: the scheduler's dead letters are copies (it only reads the log, and
the original stays in OSRS_EVT, which the projector reads too): replaying one would put the event
in the log twice; and a fetch command refused because the player's command is in OSRS_CMD still is
served by that one, so the dead letter is just deleted. Nor is one too long to be parked whole
(its headers and ours over NATS' max_payload): only its first bytes were kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from shared import nats as natsx
from shared import subjects

COPIES_ONLY = frozenset({"scheduler"})  # services whose dead letters are copies of log events

OURS = ("Nats-Msg-Id", "Nats-Expected-Stream")  # headers of the dead letter, not the original


class DeadLetter(msgspec.Struct):
    seq: int  # in OSRS_DEAD
    at: datetime | None
    service: str  # the one that gave up on it
    subject: str  # where it was first published
    stream: str
    deliveries: int | None
    reason: str
    size: int  # bytes of the original message
    kept: int | None = None  # when only the first `kept` bytes fitted in the dead letter


class DlqError(RuntimeError):
    pass


async def dead_letters(
    js: JetStreamContext, *, service: str | None = None, seqs: set[int] | None = None
) -> AsyncIterator[tuple[DeadLetter, bytes, dict[str, str]]]:
    """Every dead letter, oldest first (or those numbered `seqs`, or parked by `service`), with
    the original bytes and headers."""
    try:
        state = (await js.stream_info(subjects.DEAD_STREAM)).state
    except NotFoundError:
        return
    wanted = sorted(seqs) if seqs else range(max(state.first_seq, 1), state.last_seq + 1)
    for seq in wanted:
        try:
            msg = await js.get_msg(subjects.DEAD_STREAM, seq)
        except NotFoundError:  # replayed, or never there
            if seqs:
                raise DlqError(f"no dead letter #{seq} in {subjects.DEAD_STREAM}") from None
            continue
        headers = dict(msg.headers or {})
        parts = msg.subject.split(".")
        dead = DeadLetter(
            seq=seq,
            at=msg.time,
            service=parts[2] if len(parts) > 2 else "?",
            subject=headers.pop("Osrs-Original-Subject", ""),
            stream=headers.pop("Osrs-Original-Stream", ""),
            deliveries=_int(headers.pop("Osrs-Deliveries", None)),
            reason=headers.pop("Osrs-Dead-Reason", "?"),
            size=len(msg.data or b""),
        )
        if (truncated := _int(headers.pop("Osrs-Truncated-From", None))) is not None:
            dead.kept, dead.size = dead.size, truncated
        headers.pop("Osrs-Original-Sequence", None)
        for name in OURS:
            headers.pop(name, None)
        if service is None or dead.service == service:
            yield dead, msg.data or b"", headers


async def replay(
    js: JetStreamContext, dead: DeadLetter, data: bytes, headers: dict
) -> tuple[str, str]:
    """Publish a dead letter's original message again, then delete the dead letter; returns
    what happened (`replayed`, `deleted` or `skipped`, see above) and a line saying so."""
    if dead.service in COPIES_ONLY:
        return "skipped", f"a copy by the {dead.service}: the original is still in {dead.stream}"
    if dead.kept is not None:
        return "skipped", f"only the first {dead.kept:,} of its {dead.size:,} bytes were kept"
    if not dead.subject or not dead.stream:
        raise DlqError(f"dead letter #{dead.seq} does not say where it came from")
    try:
        ack = await js.publish(
            dead.subject,
            data,
            stream=dead.stream,
            headers=headers
            | {"Nats-Msg-Id": f"replay:{dead.seq}", "Osrs-Replay-Of": str(dead.seq)},
        )
        done = "replayed", f"-> {dead.stream} #{ack.seq} {dead.subject}"
    except APIError as exc:
        if (exc.err_code, exc.description) != (natsx.STORE_FAILED, natsx.SUBJECT_FULL):
            raise
        done = "deleted", f"the player's command in {dead.stream} serves it"
    await js.delete_msg(subjects.DEAD_STREAM, dead.seq)
    return done


def line(dead: DeadLetter) -> str:
    at = dead.at.strftime("%Y-%m-%d %H:%M:%S") if dead.at else "?"
    tries = f"  after {dead.deliveries} deliveries" if dead.deliveries else ""
    tries += f"  (the first {dead.kept:,} kept)" if dead.kept is not None else ""
    return (
        f"#{dead.seq}  {at}  {dead.service}  {dead.stream} {dead.subject}  "
        f"{dead.size:,} bytes{tries}\n    {dead.reason}"
    )


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
