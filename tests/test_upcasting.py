"""Events written by earlier code are still read: the golden files under tests/data/events/
(as each version wrote them, see its README) decode to the current types for ever, and an
upcaster turns a payload of an older version into the current one, in `osrs-diff rebuild` too."""

from pathlib import Path

import msgspec
import pytest

from services.projector.rebuild import rebuild
from shared import events, subjects
from shared.events import (
    Message,
    PlayerTracked,
    ProgressEvent,
    UnknownVersion,
    decode,
    decode_on,
    encode,
)
from tests.test_rebuild import dump, live  # noqa: F401 - `live` is a fixture

GOLDEN = Path(__file__).parent / "data" / "events"
GOLDEN_FILES = sorted(GOLDEN.glob("v*/*.json"))


def event_types() -> list[type[Message]]:
    """Every concrete message type of shared/events.py."""
    bases = {Message, ProgressEvent}
    return [
        t
        for t in vars(events).values()
        if isinstance(t, type) and issubclass(t, Message) and t not in bases
    ]


def current_version(type_: type[Message]) -> int:
    return next(f.default for f in msgspec.structs.fields(type_) if f.name == "v")


def golden_type(path: Path) -> type[Message]:
    return getattr(events, path.name.split(".")[0])


def test_every_event_type_has_a_golden_file_of_each_of_its_versions():
    missing = [
        f"v{v}/{t.__name__}.json"
        for t in event_types()
        for v in range(1, current_version(t) + 1)
        if not (GOLDEN / f"v{v}" / f"{t.__name__}.json").exists()
    ]
    assert len(event_types()) == 11 and not missing, (
        "write the golden file of each new type or version from encode(): " + ", ".join(missing)
    )


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_golden_event_decodes_to_the_current_type(path):
    type_ = golden_type(path)
    written = msgspec.json.decode(path.read_bytes())
    event = decode(path.read_bytes(), type_)
    assert type(event) is type_ and event.v == current_version(type_)
    assert event.id == written["id"]
    if written["v"] == current_version(type_):
        # Within a version, fields are only ever added: what was written reads back as it was.
        read_back = msgspec.json.decode(encode(event))
        assert {k: read_back.get(k) for k in written} == written


# An imaginary event at v3, to drive the upcasters: v2 renamed `interval` to `interval_s`,
# v3 made `tracked_by` (v1 and v2: `by`) required.
class Tracked(Message, frozen=True, kw_only=True):
    v: int = 3
    player_key: str
    interval_s: int
    tracked_by: str


def v1_to_v2(fields: dict) -> dict:
    fields["interval_s"] = fields.pop("interval")
    return fields


def v2_to_v3(fields: dict) -> dict:
    fields["tracked_by"] = fields.pop("by", None) or "unknown"
    return fields


@pytest.fixture
def upcasters(monkeypatch):
    monkeypatch.setitem(events.UPCASTERS, (Tracked, 1), v1_to_v2)
    monkeypatch.setitem(events.UPCASTERS, (Tracked, 2), v2_to_v3)


def written(v: int, **fields) -> bytes:
    return msgspec.json.encode({"v": v, "id": "e1", "at": "2026-11-27T12:00:00Z", **fields})


@pytest.mark.usefixtures("upcasters")
def test_older_payloads_are_upcast_step_by_step_to_the_current_version():
    v1 = decode(written(1, player_key="zezima", interval=60, by="admin"), Tracked)
    v2 = decode(written(2, player_key="zezima", interval_s=60), Tracked)
    v3 = decode(written(3, player_key="zezima", interval_s=60, tracked_by="admin"), Tracked)
    assert (v1.v, v1.interval_s, v1.tracked_by, v1.id) == (3, 60, "admin", "e1")
    assert (v2.v, v2.tracked_by) == (3, "unknown")
    assert v3 == v1
    # A payload that happens to fit the current shape is upcast all the same: its `v` decides.
    fits = written(2, player_key="zezima", interval_s=60, by="admin", tracked_by="x")
    assert decode(fits, Tracked).tracked_by == "admin"
    with pytest.raises(UnknownVersion, match="Tracked v4: this code reads up to v3"):
        decode(written(4, player_key="zezima", period="1h"), Tracked)
    # A payload a step cannot read is refused like any invalid message (and dead-lettered).
    with pytest.raises(msgspec.ValidationError, match=r"v1 -> v2: KeyError\('interval'\)"):
        decode(written(1, player_key="zezima", by="admin"), Tracked)
    with pytest.raises(msgspec.ValidationError, match="no upcaster from v0 to v1"):
        decode(written(0, player_key="zezima"), Tracked)


def test_a_version_without_its_upcaster_is_refused_with_the_step_missing(monkeypatch):
    monkeypatch.setitem(events.UPCASTERS, (Tracked, 1), v1_to_v2)
    with pytest.raises(msgspec.ValidationError, match="Tracked v1: no upcaster from v2 to v3"):
        decode(written(1, player_key="zezima", interval=60, by="admin"), Tracked)


# PlayerTracked as a v2 could be: `detect_mode` required (v1 events without it, written before
# detection existed, were tracked with the mode given).
class PlayerTrackedV2(PlayerTracked, frozen=True, kw_only=True):
    v: int = 2
    detect_mode: bool


async def test_a_log_of_older_events_rebuilds_as_the_code_of_their_time_built_it(
    js,
    settings,
    database_url,
    live,  # noqa: F811 - the fixture of tests/test_rebuild.py
    monkeypatch,
):
    # The log as earlier code wrote it: a player tracked before detection existed (its
    # PlayerTracked has no detect_mode), updated before `if_mode`, then observed.
    for name in ("PlayerTracked.a8ed31e", "PlayerUpdated.a8ed31e", "HiscoreObserved"):
        data = (GOLDEN / "v1" / f"{name}.json").read_bytes()
        subject = {
            "PlayerTracked": subjects.PLAYER_TRACKED,
            "PlayerUpdated": subjects.PLAYER_UPDATED,
        }.get(name.split(".")[0], subjects.observed_subject("lynx_titan"))
        await js.publish(subject, data, stream=subjects.EVT_STREAM)
    assert await live.catch_up() == 3  # the models as the v1 code builds them
    built_by_v1 = dump(database_url)

    # The code moves to PlayerTracked v2; the log still holds v1 events.
    upcast = []

    def add_detect_mode(fields: dict) -> dict:
        upcast.append(fields["id"])
        return {"detect_mode": False, **fields}

    types = dict(events._PLAYER_EVENT_TYPES, **{subjects.PLAYER_TRACKED: PlayerTrackedV2})
    monkeypatch.setattr(events, "_PLAYER_EVENT_TYPES", types)
    monkeypatch.setitem(events.UPCASTERS, (PlayerTrackedV2, 1), add_detect_mode)
    tracked_v1 = (GOLDEN / "v1" / "PlayerTracked.a8ed31e.json").read_bytes()
    assert decode_on(subjects.PLAYER_TRACKED, tracked_v1).v == 2
    upcast.clear()

    report = await rebuild(settings)
    assert (report.events, report.dead) == (3, 0)
    assert len(upcast) == 1  # the rebuild read the v1 event through the upcaster
    assert dump(database_url) == built_by_v1
    assert built_by_v1["players"][0][:5] == ("lynx_titan", "Lynx Titan", "hardcore", True, 600)
    assert len(built_by_v1["observations"]) == 1
