"""Every message on NATS: immutable, versioned msgspec Structs, JSON on the wire.

Commands are imperative; events are past tense (`FetchRequested` is the one exception, named as
the request it is). Each carries `v` (schema version), an `id` and an `at` timestamp (UTC).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec

from shared import subjects
from shared.modes import GameMode

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


_VERSION_4 = ~(0xF000 << 64) & ~(0xC000 << 48)  # the bits a UUID's version and variant take


def new_id() -> str:
    """A random UUID (version 4) as 32 hex digits. Built from `random`, which is reseeded in a
    forked child, rather than uuid.uuid4(): the projector makes one for each progress event,
    and uuid4's object took 5 % of its time. Ids name events; they are not secrets."""
    bits = random.getrandbits(128) & _VERSION_4 | (0x4000 << 64) | (0x8000 << 48)
    return f"{bits:032x}"


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    v: int = 1
    id: str = msgspec.field(default_factory=new_id)
    at: datetime = msgspec.field(default_factory=utcnow)


class FetchReason(enum.StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"


class FetchOutcome(enum.StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INVALID = "invalid"


class FetchRequested(Message, frozen=True, kw_only=True):
    player_key: str
    display_name: str
    mode: GameMode = GameMode.REGULAR
    reason: FetchReason = FetchReason.SCHEDULED
    slot: int | None = None
    detect_mode: bool = False  # ask the boards first and publish PlayerUpdated{mode} on a change


class SkillEntry(msgspec.Struct, frozen=True, gc=False):  # no cycles: str and int only
    name: str
    rank: int
    level: int
    xp: int


class ActivityEntry(msgspec.Struct, frozen=True, gc=False):
    name: str
    rank: int
    score: int


class HiscoreObserved(Message, frozen=True, kw_only=True):
    """The full payload, so the event log alone can rebuild every read model."""

    player_key: str
    display_name: str
    mode: GameMode
    observed_at: datetime
    hash: str
    skills: tuple[SkillEntry, ...]
    activities: tuple[ActivityEntry, ...]


# After this many `not_found` in a row a player counts as unranked: kept, checked daily.
UNRANKED_AFTER = 3


class FetchCompleted(Message, frozen=True, kw_only=True):
    player_key: str
    mode: GameMode
    outcome: FetchOutcome
    http_status: int | None = None
    detail: str = ""
    not_found_streak: int = 0  # consecutive not_found answers, this one included
    request_id: str = ""  # the id of the FetchRequested served ("" in events written before it)


Interval = Annotated[int, msgspec.Meta(gt=0)]


class PlayerTracked(Message, frozen=True, kw_only=True):
    player_key: str
    display_name: str
    mode: GameMode = GameMode.REGULAR
    interval_s: Interval
    by: str
    detect_mode: bool = False  # tracked without a mode: the account type is detected daily


class PlayerUntracked(Message, frozen=True, kw_only=True):
    player_key: str
    by: str


class PlayerUpdated(Message, frozen=True, kw_only=True):
    """Only the fields that changed are set."""

    player_key: str
    display_name: str | None = None
    mode: GameMode | None = None
    interval_s: Interval | None = None
    by: str = ""
    # Apply the change only while the player still has this mode: a detection that was
    # queued while a user set the mode by hand must not undo the user's choice.
    if_mode: GameMode | None = None
    detect_mode: bool | None = None  # False: a mode set by hand ends the daily detection


PlayerEvent = PlayerTracked | PlayerUntracked | PlayerUpdated


# Progress events, derived by the projector for outside subscribers (OSRS_PROGRESS, on
# `osrs.progress.<player_key>.<kind>`), written to an outbox with the read models and relayed.


class ProgressEvent(Message, frozen=True, kw_only=True):
    """Whose progress, on which hiscores board, seen when (the observation's time, or the
    time of the change for tracking and account type)."""

    player_key: str
    display_name: str
    mode: GameMode
    observed_at: datetime


class PlayerProgressed(ProgressEvent, frozen=True, kw_only=True):
    """kind `gains`: every new observation after the first. `gains` maps each metric that
    changed to its gain in xp or score since the previous observation (unranked counts as 0)."""

    since: datetime  # the previous observation
    span_s: float  # seconds between the two observations
    gains: dict[str, int]


class LevelUp(ProgressEvent, frozen=True, kw_only=True):
    """kind `level_up`: a skill's level rose (one event per skill, however many levels)."""

    skill: str
    from_level: int = msgspec.field(name="from")
    to_level: int = msgspec.field(name="to")
    virtual: bool  # the new level is a virtual one, above 99 (xp beyond 13,034,431)


class MilestoneReached(ProgressEvent, frozen=True, kw_only=True):
    """kind `milestone`: one of shared/milestones.py, the same set as the achievements."""

    milestone: str  # e.g. level_99.attack, boss_kc.zulrah.500, total_level.2000
    milestone_kind: (
        str  # base_level | level_99 | xp_200m | total_level | overall_xp | boss_kc | clues
    )
    metric: str | None
    threshold: int


class AccountTypeChanged(ProgressEvent, frozen=True, kw_only=True):
    """kind `account_type`: the board the player is tracked on changed."""

    from_mode: GameMode = msgspec.field(name="from")
    to_mode: GameMode = msgspec.field(name="to")
    reason: str  # hardcore_death | de_ironed | changed


class TrackingChanged(ProgressEvent, frozen=True, kw_only=True):
    """kind `tracking`: osrs-diff started or stopped tracking the player."""

    tracked: bool
    by: str


PROGRESS_KINDS: dict[str, type[ProgressEvent]] = {
    "gains": PlayerProgressed,
    "level_up": LevelUp,
    "milestone": MilestoneReached,
    "account_type": AccountTypeChanged,
    "tracking": TrackingChanged,
}


_encoder = msgspec.json.Encoder()


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


_decoders: dict[type, tuple[msgspec.json.Decoder, int]] = {}


class UnknownVersion(msgspec.ValidationError):
    """A message of a schema version newer than this code reads. Fields are only ever added
    as optional ones within a version; `v` goes up for a change older code would misread, so
    such a message is refused (and dead-lettered, to replay once the consumer is upgraded)."""


# Upcasting: the log keeps every event for ever, so each version bump of a type comes with a
# function that turns a payload of the version before into the next one (fields as JSON
# values); `decode` chains them up to the current version. Registered with `upcaster` beside
# the bump, e.g. `@upcaster(FetchCompleted, 1)` for v1 -> v2. None yet: every change so far
# added an optional field within v1 (tests/data/events/ has events as each version wrote them).
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[type, int], Upcaster] = {}


def upcaster(type_: type[Message], from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the function that turns a `type_` payload of `from_version` into the next."""

    def register(step: Upcaster) -> Upcaster:
        UPCASTERS[(type_, from_version)] = step
        return step

    return register


def decode(data: bytes, type_: type[T]) -> T:
    """Decode one message, upcast to the current version when older; raises
    msgspec.DecodeError / ValidationError (UnknownVersion for a newer one) with the reason."""
    known = _decoders.get(type_)
    if known is None:
        version = next((f.default for f in msgspec.structs.fields(type_) if f.name == "v"), 0)
        known = _decoders[type_] = (msgspec.json.Decoder(type_), version)
    decoder, version = known
    try:
        message = decoder.decode(data)
    except msgspec.ValidationError as error:
        # An older (or newer) shape may not fit the current type: its `v` says which.
        return _upcast(data, type_, version, error)
    if not version or message.v == version:
        return message
    return _upcast(data, type_, version, None)


def _upcast(data: bytes, type_: type[T], version: int, error: Exception | None) -> T:
    fields = msgspec.json.decode(data)
    found = fields.get("v") if isinstance(fields, dict) else None
    if not version or not isinstance(found, int) or found == version:
        raise error or msgspec.ValidationError(f"{type_.__name__}: no version")
    if found > version:
        raise UnknownVersion(
            f"{type_.__name__} v{found}: this code reads up to v{version}; upgrade the "
            "consumer, then replay it (osrs-diff dlq replay)"
        )
    for v in range(found, version):
        step = UPCASTERS.get((type_, v))
        if step is None:
            raise msgspec.ValidationError(
                f"{type_.__name__} v{found}: no upcaster from v{v} to v{v + 1}"
            )
        try:
            fields = step(fields)
        except (KeyError, TypeError, ValueError) as exc:  # a payload the step cannot read
            raise msgspec.ValidationError(f"{type_.__name__} v{v} -> v{v + 1}: {exc!r}") from exc
        fields["v"] = v + 1
    return _decoders[type_][0].decode(msgspec.json.encode(fields))


def event_type_for(subject: str) -> type[Message] | None:
    """The message type carried on a subject, or None for a subject no service knows."""
    if subject.startswith(subjects.OBSERVED_PREFIX + "."):
        return HiscoreObserved
    if subject.startswith(subjects.STATUS_PREFIX + "."):
        return FetchCompleted
    if subject.startswith(subjects.FETCH_PREFIX + "."):
        return FetchRequested
    return _PLAYER_EVENT_TYPES.get(subject)


_PLAYER_EVENT_TYPES: dict[str, type[Message]] = {
    subjects.PLAYER_TRACKED: PlayerTracked,
    subjects.PLAYER_UNTRACKED: PlayerUntracked,
    subjects.PLAYER_UPDATED: PlayerUpdated,
}


class UnknownSubject(ValueError):
    """No message type is published on this subject."""


def decode_on(subject: str, data: bytes) -> Message:
    """Decode a message by the subject it arrived on."""
    type_ = event_type_for(subject)
    if type_ is None:
        raise UnknownSubject(f"no message type is published on {subject!r}")
    return decode(data, type_)
