import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from shared import subjects
from shared.events import (
    AccountTypeChanged,
    ActivityEntry,
    FetchCompleted,
    FetchOutcome,
    FetchRequested,
    HiscoreObserved,
    LevelUp,
    MilestoneReached,
    PlayerProgressed,
    PlayerTracked,
    PlayerUntracked,
    PlayerUpdated,
    SkillEntry,
    TrackingChanged,
    UnknownSubject,
    decode,
    decode_on,
    encode,
    new_id,
)

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
WHO = {"player_key": "zezima", "display_name": "Zezima", "mode": "regular", "observed_at": NOW}
EXAMPLES = [
    FetchRequested(player_key="zezima", display_name="Zezima", slot=7),
    HiscoreObserved(
        player_key="zezima",
        display_name="Zezima",
        mode="ironman",
        observed_at=NOW,
        hash="ab" * 16,
        skills=(SkillEntry("Overall", 1, 2277, 4_600_000_000),),
        activities=(ActivityEntry("Zulrah", -1, -1),),
    ),
    FetchCompleted(
        player_key="zezima",
        mode="regular",
        outcome=FetchOutcome.NOT_FOUND,
        http_status=404,
        detail="not on this hiscores board",
    ),
    PlayerTracked(player_key="zezima", display_name="Zezima", interval_s=3600, by="admin"),
    PlayerUntracked(player_key="zezima", by="admin"),
    PlayerUpdated(player_key="zezima", interval_s=600),
    *(
        kind(**WHO, **fields)
        for kind, fields in (
            (PlayerProgressed, {"since": NOW, "span_s": 3600.0, "gains": {"attack": 1200}}),
            (LevelUp, {"skill": "attack", "from_level": 98, "to_level": 99, "virtual": False}),
            (
                MilestoneReached,
                {
                    "milestone": "boss_kc.zulrah.1000",
                    "milestone_kind": "boss_kc",
                    "metric": "zulrah",
                    "threshold": 1000,
                },
            ),
            (
                AccountTypeChanged,
                {"from_mode": "hardcore", "to_mode": "ironman", "reason": "hardcore_death"},
            ),
            (TrackingChanged, {"tracked": True, "by": "admin"}),
        )
    ),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_events_round_trip_and_are_versioned_and_immutable(event):
    assert decode(encode(event), type(event)) == event
    assert event.v == 1 and len(event.id) == 32 and event.at.tzinfo is not None
    with pytest.raises(AttributeError):
        event.player_key = "someone else"


def test_64_bit_xp_survives_the_wire():
    observed = EXAMPLES[1]
    assert decode(encode(observed), HiscoreObserved).skills[0].xp == 4_600_000_000


def test_messages_decode_by_the_subject_they_arrive_on():
    tracked = EXAMPLES[3]
    assert decode_on(subjects.PLAYER_TRACKED, encode(tracked)) == tracked
    assert isinstance(
        decode_on(subjects.status_subject("zezima"), encode(EXAMPLES[2])), FetchCompleted
    )
    with pytest.raises(UnknownSubject):
        decode_on("osrs.evt.player.renamed", encode(tracked))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"player_key": "x", "display_name": "x", "interval_s": 0, "by": "t"}',
        b'{"player_key": "x"}',
        b"not json",
    ],
)
def test_invalid_player_events_are_refused(raw):
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        decode(raw, PlayerTracked)


def test_event_ids_are_random_version_4_uuids():
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for id_ in ids[:500]:
        parsed = uuid.UUID(id_)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, id_)


def test_a_newer_schema_version_is_refused_with_the_way_out():
    tracked = PlayerTracked(player_key="zezima", display_name="Zezima", interval_s=3600, by="a")
    newer = encode(msgspec.structs.replace(tracked, v=2))
    with pytest.raises(msgspec.ValidationError, match=r"PlayerTracked v2: .* up to v1.*dlq"):
        decode_on(subjects.PLAYER_TRACKED, newer)
    assert decode_on(subjects.PLAYER_TRACKED, encode(tracked)) == tracked
