"""docs/asyncapi.json: generated from the code, committed as generated, and its payload schemas
accept the events the projector publishes and refuse what they could not decode."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import jsonschema_rs
import msgspec
import pytest

from services import progress_docs
from shared import subjects
from shared.events import (
    PROGRESS_KINDS,
    AccountTypeChanged,
    LevelUp,
    Message,
    MilestoneReached,
    PlayerProgressed,
    TrackingChanged,
    decode,
    encode,
)

COMMITTED = Path(__file__).parent.parent / "docs" / "asyncapi.json"
NOW = datetime(2026, 12, 3, 18, 30, 15, 250_000, tzinfo=UTC)
WHO = {
    "player_key": "lynx_titan",
    "display_name": "Lynx Titan",
    "mode": "ironman",
    "observed_at": NOW,
}
# Built here rather than taken from the document, with the unusual values: virtual levels,
# a null metric, a negative gain, tracking stopped.
EVENTS = {
    "gains": PlayerProgressed(
        **WHO, since=NOW, span_s=0.5, gains={"attack": 13_034_431, "zulrah": -1}
    ),
    "level_up": LevelUp(**WHO, skill="slayer", from_level=99, to_level=104, virtual=True),
    "milestone": MilestoneReached(
        **WHO,
        milestone="total_level.2000",
        milestone_kind="total_level",
        metric=None,
        threshold=2000,
    ),
    "account_type": AccountTypeChanged(
        **WHO, from_mode="ironman", to_mode="de_ironed", reason="de_ironed"
    ),
    "tracking": TrackingChanged(**WHO, tracked=False, by="admin"),
}


@pytest.fixture(scope="module")
def document() -> dict:
    return progress_docs.specification()


def payload_validator(document: dict, kind: str):
    """A validator for the payload of a kind, resolving its $refs inside the document."""
    message_ref = document["channels"][kind]["messages"]
    (ref,) = (m["$ref"] for m in message_ref.values())
    message = document["components"]["messages"][ref.rsplit("/", 1)[1]]
    root = {"$ref": message["payload"]["$ref"], "components": document["components"]}
    return jsonschema_rs.Draft7Validator(root, validate_formats=True)


def test_the_committed_document_is_the_generated_one():
    assert COMMITTED.read_text(encoding="utf-8") == progress_docs.render(), (
        "docs/asyncapi.json is out of date: run `make asyncapi` and commit it"
    )


def test_every_kind_has_a_channel_on_its_subject_in_the_progress_stream(document):
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == set(PROGRESS_KINDS)
    for kind, event_type in PROGRESS_KINDS.items():
        channel = document["channels"][kind]
        assert channel["address"] == subjects.progress_subject("{player_key}", kind)
        assert set(channel["parameters"]) == {"player_key"}
        assert channel["x-nats-stream"] == subjects.PROGRESS_STREAM
        assert channel["description"].startswith(f"kind `{kind}`")
        operation = document["operations"][kind]
        assert operation["action"] == "send"
        assert operation["channel"] == {"$ref": f"#/channels/{kind}"}
        name = event_type.__name__
        assert operation["messages"] == [{"$ref": f"#/channels/{kind}/messages/{name}"}]
        payload = document["components"]["messages"][name]["payload"]
        assert payload == {"$ref": f"#/components/schemas/{name}"}
        assert document["components"]["schemas"][name]["title"] == name


def test_the_description_tells_subjects_wildcards_versioning_and_retention(document):
    text = document["info"]["description"]
    for needle in (
        "osrs.progress.<player_key>.<kind>",
        "osrs.progress.*.level_up",
        "osrs.progress.zezima.>",
        f"`v` is the payload's schema version, now {Message().v}.",
        "OSRS_PROGRESS_RETENTION_DAYS",
        "Nats-Msg-Id",
    ):
        assert needle in text


@pytest.mark.parametrize("kind", PROGRESS_KINDS)
def test_an_event_of_each_kind_validates_against_its_payload_schema(document, kind):
    validator = payload_validator(document, kind)
    wire = json.loads(encode(EVENTS[kind]))
    validator.validate(wire)
    (example,) = document["components"]["messages"][PROGRESS_KINDS[kind].__name__]["examples"]
    validator.validate(example["payload"])
    assert (
        decode(json.dumps(example["payload"]).encode(), PROGRESS_KINDS[kind])
        == (progress_docs.EXAMPLES[kind])
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda e: e.pop("player_key"), id="a required field missing"),
        pytest.param(lambda e: e.update(mode="main"), id="a mode that is no board"),
        pytest.param(lambda e: e.update(observed_at="yesterday"), id="a time that is no time"),
        pytest.param(lambda e: e.update(to="99"), id="a level as a string"),
    ],
)
def test_the_payload_schema_refuses_what_the_events_cannot_decode(document, change):
    wire = json.loads(encode(EVENTS["level_up"]))
    change(wire)
    assert not payload_validator(document, "level_up").is_valid(wire)
    with pytest.raises(msgspec.ValidationError):
        decode(json.dumps(wire).encode(), LevelUp)


def test_every_payload_field_is_described(document):
    schemas = document["components"]["schemas"]
    undescribed = [
        f"{event_type.__name__}.{field}"
        for event_type in PROGRESS_KINDS.values()
        for field, schema in schemas[event_type.__name__]["properties"].items()
        if not schema.get("description")
    ]
    assert undescribed == [], "describe them in services/progress_docs.py (_FIELDS)"


def test_component_names_are_ones_asyncapi_allows(document):
    for section in document["components"].values():
        for name in section:
            assert re.fullmatch(r"[a-zA-Z0-9.\-_]+", name), name


def test_the_document_major_version_is_the_events_version():
    assert progress_docs.DOCUMENT_VERSION.split(".")[0] == str(Message().v)


def test_the_generator_writes_the_file(tmp_path):
    out = tmp_path / "docs" / "asyncapi.json"
    assert progress_docs.main(["-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == progress_docs.render()
