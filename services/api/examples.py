"""Examples of the /v1 success responses for the OpenAPI schema: Lynx Titan's account from the
day it was tracked, on the wire as the API encodes it (datetimes as ISO 8601 text).

Only Sailing is left to train, so it alone moves his xp: every figure below follows from the
same history. tests/test_openapi_examples.py converts each example into its route's Struct."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example


class ResponseExample(Example):
    """An Example that shows its value as written: Litestar drops every None inside a value,
    and with them the nullable fields that every response carries."""

    def to_schema(self) -> dict[str, Any]:
        return {**super().to_schema(), "value": self.value}


def ok(
    struct: type, example: Example, status: int = 200, description: str | None = None
) -> dict[int, ResponseSpec]:
    """A route's `responses`: its success response, `struct` as before, with the example. Given
    the route's own status code it replaces the generated one, description included."""
    return {
        status: ResponseSpec(
            data_container=struct,
            description=description or HTTPStatus(status).description,
            generate_examples=False,
            examples=[example],
        )
    }


TRACKED_AT = "2026-10-02T08:15:30Z"
LAST_CHANGED_AT = "2026-11-16T11:00:04Z"
WEEK_START_AT = "2026-11-09T12:00:05Z"  # GET .../gains?period=week, asked at NOW
NOW = "2026-11-16T12:00:05Z"

LYNX_TITAN = {
    "key": "lynx_titan",
    "display_name": "Lynx Titan",
    "mode": "regular",
    "status": "active",
    "interval_s": 3600,
    "tracked_at": TRACKED_AT,
    "last_fetched_at": "2026-11-16T12:00:03Z",
    "last_changed_at": LAST_CHANGED_AT,
    "last_outcome": "unchanged",
    "overall_xp": 4_623_456_789,
    "total_level": 2376,
    "combat_level": 126,
}
ZEZIMA = {
    "key": "zezima",
    "display_name": "Zezima",
    "mode": "regular",
    "status": "active",
    "interval_s": 3600,
    "tracked_at": "2026-10-05T14:02:11Z",
    "last_fetched_at": "2026-11-16T11:30:02Z",
    "last_changed_at": "2026-11-16T11:30:02Z",
    "last_outcome": "changed",
    "overall_xp": 1_204_587_331,
    "total_level": 2277,
    "combat_level": 126,
}
SKILLS = {
    "overall": {"rank": 1, "level": 2376, "xp": 4_623_456_789},
    "attack": {"rank": 15, "level": 99, "xp": 200_000_000, "virtual_level": 126},
    "sailing": {"rank": 312, "level": 99, "xp": 23_456_789, "virtual_level": 104},
}
ACTIVITIES = {"zulrah": {"rank": 58_214, "score": 1_203}}

PLAYER = ResponseExample(
    summary="Lynx Titan, tracked and observed",
    value={**LYNX_TITAN, "last_detail": "", "skills": SKILLS, "activities": ACTIVITIES},
)

TRACKED = ResponseExample(
    summary="Lynx Titan, tracked for the first time: pending its first fetch",
    value={
        **LYNX_TITAN,
        "status": "pending",
        "last_fetched_at": None,
        "last_changed_at": None,
        "last_outcome": None,
        "overall_xp": None,
        "total_level": None,
        "combat_level": None,
        "last_detail": None,
        "skills": {},
        "activities": {},
    },
)

CHANGED = ResponseExample(
    summary="Lynx Titan, now fetched every 6 hours (interval_s=21600)",
    value={**PLAYER.value, "interval_s": 21_600},
)

PLAYER_PAGE = ResponseExample(
    summary="A first page of two (limit=2): next_cursor asks for the next",
    value={"items": [LYNX_TITAN, ZEZIMA], "next_cursor": "WyJuYW1lIiwiYXNjIixudWxsLCJ6ZXppbWEiXQ"},
)

UNTRACKING = ResponseExample(
    summary="Lynx Titan is no longer fetched",
    value={
        "key": "lynx_titan",
        "status": "untracking",
        "detail": "tracking stops; history is kept",
    },
)

FETCHING = ResponseExample(
    summary="A fetch of Lynx Titan is queued",
    value={"key": "lynx_titan", "status": "fetching", "detail": "a fetch was requested"},
)

GAINS = ResponseExample(
    summary="Lynx Titan's week (period=week): Sailing xp and a few Zulrah kills",
    value={
        "key": "lynx_titan",
        "from": WEEK_START_AT,
        "to": NOW,
        "start": {"observed_at": "2026-11-09T10:00:02Z"},
        "end": {"observed_at": LAST_CHANGED_AT},
        "skills": {
            "overall": {"xp": 2_150_330, "levels": 0, "rank": 0},
            "sailing": {"xp": 2_150_330, "levels": 0, "rank": -14},
        },
        "activities": {"zulrah": {"score": 14, "rank": -21}},
    },
)

SNAPSHOTS = ResponseExample(
    summary="Lynx Titan's last two observations (from=2026-11-15): the last page",
    value={
        "items": [
            {
                "observed_at": "2026-11-15T20:00:03Z",
                "mode": "regular",
                "total_level": 2376,
                "skills": {
                    "overall": {"rank": 1, "level": 2376, "xp": 4_622_590_117},
                    "sailing": {"rank": 318, "level": 99, "xp": 22_590_117, "virtual_level": 104},
                },
                "activities": {"zulrah": {"rank": 58_260, "score": 1_201}},
            },
            {
                "observed_at": LAST_CHANGED_AT,
                "mode": "regular",
                "total_level": 2376,
                "skills": {"overall": SKILLS["overall"], "sailing": SKILLS["sailing"]},
                "activities": ACTIVITIES,
            },
        ],
        "next_cursor": None,
    },
)

TIMELINE = ResponseExample(
    summary="Lynx Titan's overall xp since November 14 (metric=overall&from=2026-11-14)",
    value={
        "key": "lynx_titan",
        "metric": "overall",
        "kind": "skill",
        "points": [
            {"at": "2026-11-14T23:00:01Z", "rank": 1, "value": 4_622_018_214},
            {"at": "2026-11-15T20:00:03Z", "rank": 1, "value": 4_622_590_117},
            {"at": LAST_CHANGED_AT, "rank": 1, "value": 4_623_456_789},
        ],
    },
)


def _record(gain: int, start_day: str, end_day: str, observed_at: str) -> dict:
    """A Record: buckets start and end at UTC midnight."""
    return {
        "gain": gain,
        "start": f"{start_day}T00:00:00Z",
        "end": f"{end_day}T00:00:00Z",
        "observed_at": observed_at,
    }


RECORDS = ResponseExample(
    summary="Lynx Titan's best overall xp per day, week, month and year",
    value={
        "key": "lynx_titan",
        "records": {
            "day": {
                "overall": _record(941_208, "2026-10-24", "2026-10-25", "2026-10-24T23:00:02Z"),
                "zulrah": _record(31, "2026-10-20", "2026-10-21", "2026-10-20T17:00:02Z"),
            },
            "week": {
                "overall": _record(2_804_913, "2026-10-19", "2026-10-26", "2026-10-25T22:00:03Z")
            },
            "month": {
                "overall": _record(8_940_117, "2026-10-01", "2026-11-01", "2026-10-31T23:00:04Z")
            },
            "year": {"overall": _record(11_622_347, "2026-01-01", "2027-01-01", LAST_CHANGED_AT)},
        },
    },
)

CURRENT_BOARD = ResponseExample(
    summary="Overall xp among every tracked player (metric=overall)",
    value={
        "metric": "overall",
        "kind": "skill",
        "mode": None,
        "entries": [
            {
                "position": 1,
                "key": "lynx_titan",
                "display_name": "Lynx Titan",
                "mode": "regular",
                "value": 4_623_456_789,
                "level": 2376,
                "last_changed_at": LAST_CHANGED_AT,
            },
            {
                "position": 2,
                "key": "zezima",
                "display_name": "Zezima",
                "mode": "regular",
                "value": 1_204_587_331,
                "level": 2277,
                "last_changed_at": "2026-11-16T11:30:02Z",
            },
        ],
        "next_cursor": "2.1204587331.zezima",
    },
)

GAINS_BOARD = ResponseExample(
    summary="Most Zulrah kills this week (metric=zulrah&period=week)",
    value={
        "metric": "zulrah",
        "kind": "activity",
        "mode": None,
        "from": WEEK_START_AT,
        "to": NOW,
        "entries": [
            {
                "position": 1,
                "key": "zezima",
                "display_name": "Zezima",
                "mode": "regular",
                "gained": 212,
                "start_value": 1_840,
                "end_value": 2_052,
                "start_observed_at": "2026-11-09T09:30:01Z",
                "end_observed_at": "2026-11-16T11:30:02Z",
            },
            {
                "position": 2,
                "key": "lynx_titan",
                "display_name": "Lynx Titan",
                "mode": "regular",
                "gained": 14,
                "start_value": 1_189,
                "end_value": 1_203,
                "start_observed_at": "2026-11-09T10:00:02Z",
                "end_observed_at": LAST_CHANGED_AT,
            },
        ],
        "next_cursor": None,
    },
)

STATS = ResponseExample(
    summary="A deployment tracking about 1,250 players",
    value={
        "players": 1_284,
        "players_by_status": {
            "active": 1_190,
            "pending": 3,
            "not_found": 12,
            "unranked": 41,
            "untracked": 38,
        },
        "players_by_mode": {"regular": 903, "ironman": 288, "hardcore": 51, "ultimate": 42},
        "tracked_by_mode": {"regular": 870, "ironman": 283, "hardcore": 51, "ultimate": 42},
        "observations": 2_417_903,
        "fetches_last_24h": {
            "changed": 9_812,
            "unchanged": 18_455,
            "not_found": 61,
            "rate_limited": 7,
        },
    },
)

ACHIEVEMENTS = ResponseExample(
    summary="Lynx Titan's 200M Attack, held before tracking, and his 99 Sailing",
    value={
        "key": "lynx_titan",
        "items": [
            {
                "key": "xp_200m.attack",
                "kind": "xp_200m",
                "metric": "attack",
                "threshold": 200_000_000,
                "observed_at": "2026-10-02T08:15:41Z",
                "previous_at": None,
                "before_tracking": True,
            },
            {
                "key": "level_99.sailing",
                "kind": "level_99",
                "metric": "sailing",
                "threshold": 99,
                "observed_at": "2026-10-04T21:00:02Z",
                "previous_at": "2026-10-04T20:00:03Z",
                "before_tracking": False,
            },
        ],
    },
)

TOKEN = ResponseExample(
    summary="An access token for admin, valid for 15 minutes, and the session's refresh token",
    value={
        "access_token": (
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJvc3JzLWRpZmYiLCJhdWQiOiJvc3JzLWRpZm"
            "YtYXBpIiwic3ViIjoiMSIsImlhdCI6MTc5NDgzMDQwNSwibmJmIjoxNzk0ODMwNDA1LCJleHAiOjE3OTQ4"
            "MzEzMDUsImp0aSI6IjNmMmI4YzFlLTVkNGEtNGU3Yi05YzYxLTBhOGQyZTRmNmIxMyIsInJvbGUiOiJhZG"
            "1pbiJ9.jZ4QAcuPzvZKoWMiEueeqUkL6d1t_BUOJ3a910RgSgM"
        ),
        "refresh_token": "9G_-Oz158G35bFZ-FYb4IepbZFGQtk-PGyLYES4gomk",
        "token_type": "bearer",
        "expires_in": 900,
    },
)
LOGGED_OUT = ResponseExample(
    summary="The access token and its session's refresh tokens revoked",
    value={"access_token_revoked": True, "refresh_family_revoked": True},
)
ME = ResponseExample(
    summary="admin, with an access token",
    value={
        "username": "admin",
        "role": "admin",
        "kind": "access_token",
        "expires_at": "2026-11-16T12:15:05Z",
    },
)
_API_KEY = {
    "id": 3,
    "name": "clan dashboard",
    "role": "user",
    "prefix": "osrs_YpBz7yJ",
    "owner": "admin",
    "created_at": "2026-11-02T18:40:11Z",
    "last_used_at": "2026-11-16T11:59:00Z",
    "revoked_at": None,
}
CREATED_API_KEY = ResponseExample(
    summary="A key for a bot that reads and tracks players, shown this once",
    value={
        **_API_KEY,
        "created_at": NOW,
        "last_used_at": None,
        "key": "osrs_YpBz7yJFObVYHCAJudfndftMsPGW8uQuqVUzY9J5tbM",
    },
)
API_KEYS = ResponseExample(
    summary="admin's keys: one in use, one revoked",
    value={
        "items": [
            {
                **_API_KEY,
                "id": 1,
                "name": "old bot",
                "prefix": "osrs_Qm3xT0a",
                "revoked_at": "2026-11-02T18:41:00Z",
            },
            _API_KEY,
        ]
    },
)
REVOKED_API_KEY = ResponseExample(
    summary="The clan dashboard's key, revoked",
    value={**_API_KEY, "revoked_at": NOW},
)
