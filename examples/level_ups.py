"""Print level-ups as osrs-diff sees them, e.g. `2026-11-27 12:00 Zezima attack 98 -> 99`.

    pip install nats-py                         # Python 3.11+
    python level_ups.py                         # new level-ups of every player, until Ctrl-C
    python level_ups.py --player zezima --from-start
    python level_ups.py --since 2026-11-27T00:00:00Z

It needs nothing of osrs-diff but the NATS address: the events are decoded as plain JSON with the
standard library, so this file can be copied anywhere. (Inside the osrs-diff repository,
`shared.events.decode(msg.data, LevelUp)` gives typed events instead.) docs/asyncapi.json
describes every field.

It reads with an *ordered consumer*: an ephemeral consumer that the server forgets when this
program stops, which delivers in stream order and needs no acks. Nothing is remembered between two
runs; see durable_subscriber.py for a consumer that resumes where it stopped.
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
from nats.js.api import ConsumerConfig, DeliverPolicy

STREAM = "OSRS_PROGRESS"
KNOWN_VERSION = 1  # the `v` this program understands


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print level-ups from osrs-diff as they come.")
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL") or "nats://127.0.0.1:4222",
        help="the NATS server (default: $NATS_URL, else nats://127.0.0.1:4222)",
    )
    parser.add_argument("--player", help="one player only: a name or its key (`Lynx Titan`)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-start", action="store_true", help="every level-up the stream still holds"
    )
    start.add_argument(
        "--since", type=parse_time, help="level-ups stored since this ISO 8601 time (UTC if bare)"
    )
    # For scripts and tests: stop by themselves.
    parser.add_argument("--max-events", type=int, help="stop after printing this many")
    parser.add_argument(
        "--exit-when-idle", type=float, metavar="SECONDS", help="stop after so long without one"
    )
    return parser.parse_args(argv)


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def player_key(name: str) -> str:
    """osrs-diff's key for a name: lower case, space and `-` as `_`."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def consumer_config(args: argparse.Namespace) -> ConsumerConfig:
    """Where in the stream to start: the next event (default), the first, or a time.
    The time is when the stream stored the event, which is close to the observation's."""
    if args.from_start:
        return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    if args.since:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=args.since)
    return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)


def describe(event: dict) -> str:
    at = datetime.fromisoformat(event["observed_at"])
    line = (
        f"{at:%Y-%m-%d %H:%M} {event['display_name']} {event['skill']} "
        f"{event['from']} -> {event['to']}"
    )
    return line + " (virtual)" if event.get("virtual") else line


async def main(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    # osrs.progress.<player_key>.<kind>: `*` stands for every player.
    subject = f"osrs.progress.{player_key(args.player) if args.player else '*'}.level_up"
    sub = await js.subscribe(
        subject, stream=STREAM, ordered_consumer=True, config=consumer_config(args)
    )
    print(f"listening on {subject}", file=sys.stderr, flush=True)
    main_task = asyncio.current_task()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    try:
        await print_level_ups(sub, args.max_events, args.exit_when_idle)
    except asyncio.CancelledError:
        pass  # Ctrl-C or SIGTERM
    finally:
        # close, not drain: nothing is left to send, and drain would wait for deliveries
        # that nobody reads any more.
        await nc.close()
    return 0


async def print_level_ups(sub, max_events: int | None, idle: float | None) -> None:
    printed = 0
    while max_events is None or printed < max_events:
        try:
            msg = await sub.next_msg(timeout=idle)  # None: wait for ever
        except TimeoutError:  # nats.errors.TimeoutError is one
            return
        event = json.loads(msg.data)
        if event.get("v", 1) != KNOWN_VERSION:
            # A newer payload version may have renamed or removed a field read here.
            print(f"skipped a level-up of version {event.get('v')}", file=sys.stderr)
            continue
        print(describe(event), flush=True)
        printed += 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(options())))
