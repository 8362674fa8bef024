"""A bot reading osrs-diff's progress events: a durable consumer that resumes where it stopped.

    pip install nats-py                                 # Python 3.11+
    python durable_subscriber.py --name clan-bot --from-start
    python durable_subscriber.py --name clan-bot        # later: carries on after the last ack

It prints every kind (gains, level-ups, milestones, account type, tracking), one line each:
    2026-11-27 12:00 level_up     Zezima attack 98 -> 99

How it resumes: the consumer `--name` is *durable*, kept by the NATS server with the position of
the last event this program acknowledged. Each event is acked only after it has been printed, and
the ack is confirmed by the server (`ack_sync`) before the next one, so a restart carries on with
the first event not printed: none is missed, and none is repeated after a clean stop (Ctrl-C,
SIGTERM, --max-events). Only a crash between a print and its ack shows that one event again when
the program comes back: delivery is at least once. A bot whose effect must happen exactly once
stores the event's `id` (or the stream sequence, `msg.metadata.sequence.stream`) with the effect,
in the same transaction, and skips what it has already seen.

--from-start and --since choose where a *new* consumer begins; an existing one keeps its
position and ignores them. The server keeps the consumer until it is deleted
(`nats consumer rm OSRS_PROGRESS clan-bot`, or `js.delete_consumer`), and the stream keeps events
for OSRS_PROGRESS_RETENTION_DAYS days (30 by default): a bot away longer misses the oldest ones.

Like level_ups.py it needs nothing of osrs-diff: the events are read as plain JSON.
docs/asyncapi.json describes every field.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

STREAM = "OSRS_PROGRESS"
KNOWN_VERSION = 1  # the `v` this program understands
POLL_S = 1.0  # how long one fetch waits; a stop request is seen within this time


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print osrs-diff progress events, resumably.")
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL") or "nats://127.0.0.1:4222",
        help="the NATS server (default: $NATS_URL, else nats://127.0.0.1:4222)",
    )
    parser.add_argument("--name", default="example-bot", help="the durable consumer's name")
    parser.add_argument(
        "--subject", default="osrs.progress.>", help="e.g. osrs.progress.*.milestone"
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-start", action="store_true", help="a new consumer begins at the oldest event"
    )
    start.add_argument(
        "--since", type=parse_time, help="a new consumer begins at this ISO 8601 time"
    )
    parser.add_argument("--batch", type=int, default=10, help="events asked for at once")
    # For scripts and tests: stop by themselves.
    parser.add_argument("--max-events", type=int, help="stop after printing this many")
    parser.add_argument(
        "--exit-when-idle", type=float, metavar="SECONDS", help="stop after so long without one"
    )
    return parser.parse_args(argv)


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def consumer_config(args: argparse.Namespace) -> ConsumerConfig:
    if args.from_start:
        policy = {"deliver_policy": DeliverPolicy.ALL}
    elif args.since:
        policy = {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": args.since}
    else:
        policy = {"deliver_policy": DeliverPolicy.NEW}
    # Explicit acks: the server redelivers an event not acked within ack_wait (30 s).
    return ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30, **policy)


def describe(subject: str, event: dict) -> str:
    """One line for an event; the kind is the subject's last token."""
    kind = subject.rsplit(".", 1)[-1]
    who = event["display_name"]
    if kind == "level_up":
        text = f"{who} {event['skill']} {event['from']} -> {event['to']}"
    elif kind == "gains":
        biggest = sorted(event["gains"].items(), key=lambda gain: (-abs(gain[1]), gain[0]))
        text = f"{who} " + ", ".join(f"{metric} {gain:+,}" for metric, gain in biggest[:3])
        if len(biggest) > 3:
            text += f" and {len(biggest) - 3} more"
    elif kind == "milestone":
        text = f"{who} reached {event['milestone']}"
    elif kind == "account_type":
        text = f"{who} {event['from']} -> {event['to']} ({event['reason']})"
    elif kind == "tracking":
        text = f"{who} {'tracked' if event['tracked'] else 'untracked'} by {event['by']}"
    else:  # a kind added after this program was written
        text = f"{who} {json.dumps(event, sort_keys=True)}"
    at = datetime.fromisoformat(event["observed_at"])
    return f"{at:%Y-%m-%d %H:%M} {kind:<12} {text}"


async def main(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    # Creates the consumer the first time; afterwards binds to it, position and all.
    psub = await js.pull_subscribe(
        args.subject, durable=args.name, stream=STREAM, config=consumer_config(args)
    )
    print(f"consumer {args.name} on {args.subject}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        await consume(psub, stop, args.batch, args.max_events, args.exit_when_idle)
    finally:
        # close, not drain: every ack was confirmed, and drain would wait for the replies to
        # the last fetch that nobody reads.
        await nc.close()
    return 0


async def consume(psub, stop: asyncio.Event, batch: int, max_events, idle) -> None:
    loop = asyncio.get_running_loop()
    printed, last_seen = 0, loop.time()
    while not stop.is_set() and (max_events is None or printed < max_events):
        # Never ask for more than will be printed: an event fetched and left unacked would
        # reach the next run only after ack_wait.
        wanted = batch if max_events is None else min(batch, max_events - printed)
        try:
            msgs = await psub.fetch(wanted, timeout=POLL_S)
        except TimeoutError:  # nats-py raises its own or asyncio's
            msgs = []
        if not msgs:
            if idle is not None and loop.time() - last_seen >= idle:
                return
            continue
        for position, msg in enumerate(msgs):
            if stop.is_set():
                # Stopping half-way through a batch: hand the rest back at once.
                for unprinted in msgs[position:]:
                    await unprinted.nak()
                return
            event = json.loads(msg.data)
            if event.get("v", 1) == KNOWN_VERSION:
                print(describe(msg.subject, event), flush=True)
                printed += 1
            else:
                # A newer payload version may have renamed or removed a field read here.
                print(f"skipped {msg.subject} of version {event.get('v')}", file=sys.stderr)
            await msg.ack_sync()  # after the print: see the module's docstring
        last_seen = loop.time()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(options())))
