"""Request and response types of the API (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from shared.modes import GameMode

# Printable text only: Postgres refuses NUL in text, and no name needs a control character.
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password


class TokenResponse(msgspec.Struct):
    access_token: str
    refresh_token: str  # opaque; good for one POST /v1/auth/refresh
    token_type: str
    expires_in: int  # seconds the access token lives


Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Secret


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Secret | None = None  # given: its whole family is revoked too


class LoggedOut(msgspec.Struct):
    access_token_revoked: bool
    refresh_family_revoked: bool


class Me(msgspec.Struct):
    username: str
    role: str
    kind: Literal["access_token", "api_key"]
    expires_at: datetime | None  # null for an API key, which lives until revoked


Role = Literal["admin", "user"]


class NewApiKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Username  # the rule of a username: 1-64 printable characters
    role: Role | None = None  # at most the caller's; the caller's when not given


class ApiKey(msgspec.Struct):
    id: int
    name: str
    role: Role
    prefix: str  # the key's first characters
    owner: str
    created_at: datetime
    last_used_at: datetime | None  # to the minute
    revoked_at: datetime | None


class CreatedApiKey(ApiKey):
    key: str  # shown this once; only its digest is kept


class ApiKeyList(msgspec.Struct):
    items: list[ApiKey]


class ChangePlayer(msgspec.Struct, forbid_unknown_fields=True):
    mode: GameMode | None = None  # set by hand: the daily detection stops
    interval_s: int | None = None


class TrackPlayer(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    mode: GameMode | None = None  # none: the account type is detected, then again daily
    interval_s: int | None = None


class SkillValue(msgspec.Struct, omit_defaults=True):
    rank: int
    level: int
    xp: int
    virtual_level: int | None = None


class ActivityValue(msgspec.Struct):
    rank: int
    score: int


class PlayerSummary(msgspec.Struct):
    key: str
    display_name: str
    mode: GameMode
    status: str
    interval_s: int
    tracked_at: datetime
    last_fetched_at: datetime | None
    last_changed_at: datetime | None
    last_outcome: str | None
    overall_xp: int | None
    total_level: int | None
    combat_level: int | None


class PlayerDetail(PlayerSummary):
    last_detail: str | None
    skills: dict[str, SkillValue]
    activities: dict[str, ActivityValue]


class PlayerPage(msgspec.Struct):
    items: list[PlayerSummary]
    next_cursor: str | None  # opaque; null on the last page


class PlayerCursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """Where a page of GET /v1/players ended, inside its opaque next_cursor: the listing's
    sort and order, and the last row's sort value (None for the name sort, and for a row
    without one) and key."""

    sort: str
    order: str
    value: int | Annotated[datetime, msgspec.Meta(tz=True)] | None
    key: str


class Accepted(msgspec.Struct):
    key: str
    status: str
    detail: str


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}
