"""The AsyncAPI 3.0 document of the progress events on `OSRS_PROGRESS`, generated from the code.

FastStream describes the server, channels and operations: one publisher per kind of
`PROGRESS_KINDS`. It builds payload schemas with pydantic, which cannot read msgspec Structs, so
the payloads are the msgspec JSON schemas of the event types, put into the document afterwards.

    python -m services.progress_docs -o docs/asyncapi.json     (`make asyncapi`)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from faststream.nats import JStream, NatsBroker
from faststream.specification import AsyncAPI

from shared import subjects
from shared.events import (
    PROGRESS_KINDS,
    AccountTypeChanged,
    LevelUp,
    Message,
    MilestoneReached,
    PlayerProgressed,
    ProgressEvent,
    TrackingChanged,
    encode,
)
from shared.modes import GameMode
from shared.nats import DUPLICATE_WINDOW
from shared.settings import Settings

# The contract's version: its major is the events' `v`; raise the minor when a kind or an
# optional field is added.
DOCUMENT_VERSION = "1.0.0"
SCHEMA_REF = "#/components/schemas/{name}"
HEADERS_SCHEMA = "ProgressHeaders"

_DEFAULTS = Settings()
EVENTS_VERSION: int = next(f.default for f in msgspec.structs.fields(Message) if f.name == "v")

DESCRIPTION = f"""\
What the players osrs-diff tracks achieve, as it sees it on the hiscores: the gains of each new
observation, each level-up, each milestone, a change of account type, tracking started or stopped.
For bots and dashboards.

**Subjects.** Each event is published on `osrs.progress.<player_key>.<kind>` into the JetStream
stream `{subjects.PROGRESS_STREAM}`. `player_key` is the player's name in lower case with space
and `-` folded to `_` (`Lynx Titan` is `lynx_titan`); `kind` is one of
{", ".join(f"`{kind}`" for kind in PROGRESS_KINDS)}. The kind is in the subject only, not in
the payload.

**Wildcards.** `osrs.progress.*.level_up`: every player's level-ups;
`osrs.progress.zezima.>`: everything about one player; `osrs.progress.>`: everything.

**Payload.** JSON. Every event has `v`, `id`, `at`, `player_key`, `display_name`, `mode` and
`observed_at`, then the fields of its kind. Times are RFC 3339, in UTC.

**Versioning.** `v` is the payload's schema version, now {EVENTS_VERSION}. Fields may be added
without a new version: ignore the ones you do not know. Removing, renaming or retyping a field
raises `v`: skip an event whose `v` you do not know.

**Delivery.** The projector writes each event into a transactional outbox, in the transaction
that updates the read models it comes from; a relay publishes the outbox in id order with header
`Nats-Msg-Id` set to the row id, and marks a row sent once JetStream has acknowledged it. A row
published again after a crash has the same id, which JetStream drops (inside its
{DUPLICATE_WINDOW:.0f} s duplicate window; past it, the relay first skips what the stream already
holds). The stream thus holds each event once, in order per player. Redeliveries to a consumer
are the consumer's: ack after handling an event, and know a repeat by its `id`.

**Retention.** The stream keeps events for `OSRS_PROGRESS_RETENTION_DAYS` days
({_DEFAULTS.progress_retention_days} by default). A consumer starts with the new events
(`DeliverPolicy.NEW`), from the beginning (`ALL`) or from a time (`BY_START_TIME` with
`opt_start_time`); a durable consumer resumes after its last ack if it comes back within that
time.
"""

# Field descriptions; a description given in shared/events.py (msgspec.Meta) wins.
_COMMON_FIELDS = {
    "v": "the payload's schema version (see Versioning)",
    "id": "the event's unique id, 32 hex digits",
    "at": "when osrs-diff made the event",
    "player_key": "the player's name folded: lower case, space and `-` as `_`; also the "
    "subject's third token",
    "display_name": "the player's name as the hiscores show it",
    "mode": "the hiscores board the player is tracked on (for a detected account, its type)",
    "observed_at": "the time of the hiscores observation the event comes from; for "
    "`account_type` and `tracking`, the time of the change",
}
_FIELDS: dict[type[ProgressEvent], dict[str, str]] = {
    PlayerProgressed: {
        "since": "the time of the previous observation",
        "span_s": "seconds between the previous observation and this one",
        "gains": "each metric that changed (skills such as `attack` and `overall`, activities "
        "such as `zulrah`) to its gain in xp or score; unranked counts as 0, so a metric "
        "that drops off the hiscores shows a negative gain",
    },
    LevelUp: {
        "skill": "the skill, e.g. `attack`",
        "from": "the level before, on the virtual scale 1-126",
        "to": "the level now, on the virtual scale 1-126",
        "virtual": "the new level is above 99 (xp beyond 13,034,431)",
    },
    MilestoneReached: {
        "milestone": "the milestone's key, e.g. `level_99.attack`, `boss_kc.zulrah.500`, "
        "`total_level.2000`",
        "milestone_kind": "`base_level`, `level_99`, `xp_200m`, `total_level`, `overall_xp`, "
        "`boss_kc` or `clues`",
        "metric": "the skill or activity it is about; null for `base_level` and `total_level`",
        "threshold": "the level, xp or count reached",
    },
    AccountTypeChanged: {
        "from": "the board before",
        "to": "the board now",
        "reason": "`hardcore_death`, `de_ironed` or `changed`",
    },
    TrackingChanged: {
        "tracked": "true: tracking started; false: it stopped (the history is kept)",
        "by": "the user who started or stopped it",
    },
}

_OBSERVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_WHO = {
    "at": datetime(2026, 11, 27, 12, 0, 7, tzinfo=UTC),
    "player_key": "zezima",
    "display_name": "Zezima",
    "mode": GameMode.REGULAR,
    "observed_at": _OBSERVED,
}
# One observation of Zezima and what it brought, plus the two kinds that are not about xp.
EXAMPLES: dict[str, ProgressEvent] = {
    "gains": PlayerProgressed(
        **_WHO,
        id="5d0c9a7e1f2b4c6d8e0f1a2b3c4d5e6f",
        since=datetime(2026, 11, 27, 11, 0, tzinfo=UTC),
        span_s=3600.0,
        gains={"attack": 41_250, "overall": 41_250, "zulrah": 3},
    ),
    "level_up": LevelUp(
        **_WHO,
        id="6e1dab8f203c5d7e9f1a2b3c4d5e6f70",
        skill="attack",
        from_level=98,
        to_level=99,
        virtual=False,
    ),
    "milestone": MilestoneReached(
        **_WHO,
        id="7f2ebc904d6e8f0a1b2c3d4e5f607182",
        milestone="level_99.attack",
        milestone_kind="level_99",
        metric="attack",
        threshold=99,
    ),
    "account_type": AccountTypeChanged(
        **(_WHO | {"mode": GameMode.IRONMAN}),
        id="803fcda15e7f9a0b1c2d3e4f50617283",
        from_mode=GameMode.HARDCORE,
        to_mode=GameMode.IRONMAN,
        reason="hardcore_death",
    ),
    "tracking": TrackingChanged(
        **_WHO, id="9140dea26f80ab1c2d3e4f5061728394", tracked=True, by="alice"
    ),
}


def _summary(event_type: type) -> str:
    """The docstring on one line."""
    return " ".join((event_type.__doc__ or "").split())


def faststream_document() -> dict[str, Any]:
    """What FastStream says about one publisher per kind: server, channels, operations."""
    broker = NatsBroker(
        _DEFAULTS.nats_url,
        description="The deployment's NATS server (`NATS_URL`); a local `make up` listens here.",
    )
    stream = JStream(subjects.PROGRESS_STREAM, declare=False)
    for kind, event_type in PROGRESS_KINDS.items():
        broker.publisher(
            subjects.progress_subject("{player_key}", kind),
            stream=stream,
            title=kind,
            description=_summary(event_type),
        )
    spec = AsyncAPI(
        broker,
        title="osrs-diff progress events",
        version=DOCUMENT_VERSION,
        description=DESCRIPTION,
        schema_version="3.0.0",
    )
    return json.loads(spec.to_specification().to_json())


def payload_schemas() -> dict[str, Any]:
    """The JSON schemas of the event types (and of what they refer to), by type name."""
    _, components = msgspec.json.schema_components(
        list(PROGRESS_KINDS.values()), ref_template=SCHEMA_REF
    )
    for event_type in PROGRESS_KINDS.values():
        schema = components[event_type.__name__]
        schema["description"] = _summary(event_type)
        notes = _COMMON_FIELDS | _FIELDS.get(event_type, {})
        for field in msgspec.inspect.type_info(event_type).fields:
            prop = schema["properties"][field.encode_name]
            if isinstance(field.type, msgspec.inspect.DateTimeType):
                prop["format"] = "date-time"
            note = notes.get(field.encode_name)
            if note is None or "description" in prop:
                continue
            if "$ref" in prop:  # JSON Schema ignores the siblings of a $ref
                prop = schema["properties"][field.encode_name] = {"allOf": [prop]}
            prop["description"] = note
    for schema in components.values():
        if "description" in schema:
            schema["description"] = " ".join(schema["description"].split())
    components[HEADERS_SCHEMA] = {
        "type": "object",
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "description": "the outbox row id the event was published from: JetStream "
                "drops a second publish of it",
            }
        },
    }
    return components


def example(kind: str) -> dict[str, Any]:
    """The example event of a kind, as it is on the wire."""
    return json.loads(encode(EXAMPLES[kind]))


def specification() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: FastStream's, with the payloads and subject parameters that
    it cannot make, and message names that AsyncAPI allows (no `:`)."""
    doc = faststream_document()
    messages: dict[str, Any] = {}
    for position, (kind, event_type) in enumerate(PROGRESS_KINDS.items(), start=1):
        name = event_type.__name__
        channel = doc["channels"][kind]
        channel["parameters"] = {
            "player_key": {
                "description": "the player's key; `*` in a subscription matches every player",
                "examples": ["zezima", "lynx_titan"],
            }
        }
        channel["messages"] = {name: {"$ref": f"#/components/messages/{name}"}}
        channel["x-nats-stream"] = subjects.PROGRESS_STREAM
        operation = doc["operations"][kind]
        operation["summary"] = f"osrs-diff publishes a `{kind}` event"
        operation["messages"] = [{"$ref": f"#/channels/{kind}/messages/{name}"}]
        messages[name] = {
            "name": name,
            "title": kind,
            "summary": _summary(event_type),
            "contentType": "application/json",
            "headers": {"$ref": SCHEMA_REF.format(name=HEADERS_SCHEMA)},
            "payload": {"$ref": SCHEMA_REF.format(name=name)},
            "examples": [
                {
                    "name": f"{kind}_zezima",
                    "headers": {"Nats-Msg-Id": str(1000 + position)},
                    "payload": example(kind),
                }
            ],
        }
    doc["components"] = {"messages": messages, "schemas": payload_schemas()}
    return doc


def render() -> str:
    """The document as committed: sorted keys, so a regeneration changes only what changed."""
    return json.dumps(specification(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.progress_docs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-o", "--output", type=Path, help="write here instead of to stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
