"""Leaderboards, stats and achievements, on read models built by the projector itself."""

from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from services.fetcher.hiscores import parse_json, payload_hash
from services.projector.projection import Projector
from shared.events import (
    FetchCompleted,
    FetchOutcome,
    HiscoreObserved,
    PlayerTracked,
    PlayerUntracked,
)
from shared.modes import GameMode
from tests.hiscores_double import MID, with_gain

NOW = datetime.now(UTC)
MID_ATTACK = 2_514_336


def observed(key: str, ago: timedelta, gains: dict, mode=GameMode.REGULAR) -> HiscoreObserved:
    parsed = parse_json(with_gain(MID, gains))
    return HiscoreObserved(
        player_key=key,
        display_name=key.title(),
        mode=mode,
        observed_at=NOW - ago,
        hash=payload_hash(parsed.skills, parsed.activities),
        skills=parsed.skills,
        activities=parsed.activities,
    )


def tracked(key: str, mode=GameMode.REGULAR) -> PlayerTracked:
    return PlayerTracked(
        player_key=key, display_name=key.title(), mode=mode, interval_s=3600, by="admin"
    )


H, D = timedelta(hours=1), timedelta(days=1)
EVENTS = [
    tracked("alice"),
    tracked("bob", GameMode.IRONMAN),
    tracked("carol"),
    tracked("dave"),  # never observed
    observed("alice", 10 * D, {}),
    observed("alice", 2 * D, {"Attack": 1_000_000}),
    observed("alice", H, {"Attack": 12_000_000, "Zulrah": 50}),
    observed("bob", 3 * D, {"Attack": 2_000_000}, GameMode.IRONMAN),
    observed("bob", H / 2, {"Attack": 2_100_000}, GameMode.IRONMAN),
    observed("carol", 5 * D, {"Attack": 90_000_000}),
    observed("carol", H, {"Attack": 90_000_001}),
    PlayerUntracked(player_key="carol", by="admin"),
    FetchCompleted(player_key="alice", mode=GameMode.REGULAR, outcome=FetchOutcome.CHANGED),
    FetchCompleted(player_key="bob", mode=GameMode.IRONMAN, outcome=FetchOutcome.UNCHANGED),
    FetchCompleted(player_key="dave", mode=GameMode.REGULAR, outcome=FetchOutcome.NOT_FOUND),
]


@pytest.fixture
async def client(settings, client):
    """The admin's API client, on read models the projector built from EVENTS."""
    pool = AsyncConnectionPool(settings.database_url, open=False, min_size=1, max_size=2)
    await pool.open(wait=True)
    projector = Projector(pool, dead_letter=None)
    await projector.seed_metrics()
    async with pool.connection() as conn, conn.transaction():
        for seq, event in enumerate(EVENTS, 1):
            await projector.apply(conn, event, seq)
    await pool.close()
    return client


async def test_current_leaderboard_among_tracked_players(client):
    body = (await client.get("/v1/leaderboards/current?metric=attack")).json()
    assert [(e["position"], e["key"], e["value"]) for e in body["entries"]] == [
        (1, "alice", MID_ATTACK + 12_000_000),  # carol has more but is no longer tracked
        (2, "bob", MID_ATTACK + 2_100_000),
    ]
    assert body["entries"][0]["level"] == 99 and body["kind"] == "skill"
    regular = (await client.get("/v1/leaderboards/current?metric=attack&mode=regular")).json()
    assert [e["key"] for e in regular["entries"]] == ["alice"]
    top = (await client.get("/v1/leaderboards/current?metric=zulrah&limit=1")).json()
    assert [(e["key"], e["value"], e["level"]) for e in top["entries"]] == [("alice", 158, None)]
    overall = (await client.get("/v1/leaderboards/current?metric=overall")).json()
    assert overall["entries"][0]["level"] > 1751  # Overall's level is the total level


async def test_gains_leaderboard_uses_the_value_at_the_start_of_the_period(client):
    week = (await client.get("/v1/leaderboards/gains?metric=attack&period=week")).json()
    # alice: since her observation 10 days ago; bob: tracked 3 days ago, his first observation
    # is the baseline.
    assert [(e["key"], e["gained"]) for e in week["entries"]] == [
        ("alice", 12_000_000),
        ("bob", 100_000),
    ]
    day = (await client.get("/v1/leaderboards/gains?metric=attack&period=day")).json()
    assert [(e["key"], e["gained"]) for e in day["entries"]] == [
        ("alice", 11_000_000),
        ("bob", 100_000),
    ]
    assert day["entries"][0]["start_value"] == MID_ATTACK + 1_000_000
    ironmen = (
        await client.get("/v1/leaderboards/gains?metric=attack&period=3d12h&mode=ironman")
    ).json()
    assert [e["key"] for e in ironmen["entries"]] == ["bob"]
    zulrah = (await client.get("/v1/leaderboards/gains?metric=zulrah&period=day")).json()
    assert [(e["key"], e["gained"]) for e in zulrah["entries"]] == [("alice", 50)]
    quiet = (await client.get("/v1/leaderboards/gains?metric=vorkath&period=day")).json()
    assert quiet["entries"] == []


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v1/leaderboards/current?metric=atack", "valid: "),
        ("/v1/leaderboards/current?metric=attack&mode=pure", "valid: regular"),
        ("/v1/leaderboards/current?metric=attack&limit=101", "limit"),
        ("/v1/leaderboards/gains?metric=attack&period=fortnight", "day, week, month, year"),
        ("/v1/leaderboards/gains?metric=zulra&period=day", "zulrah"),
        ("/v1/leaderboards/current", "metric"),
        ("/v1/players/alice/achievements?kind=pets", "level_99"),
    ],
)
async def test_bad_queries_are_400_and_say_what_is_valid(client, path, words):
    response = await client.get(path)
    assert response.status_code == 400
    assert words in str(response.json())


async def test_stats(client):
    body = (await client.get("/v1/stats")).json()
    assert body["players"] == 4
    assert body["players_by_status"] == {"active": 2, "not_found": 1, "untracked": 1}
    assert body["players_by_mode"] == {"regular": 3, "ironman": 1}
    assert body["tracked_by_mode"] == {"regular": 2, "ironman": 1}
    assert body["observations"] == 7
    assert body["fetches_last_24h"] == {"changed": 1, "unchanged": 1, "not_found": 1}


async def test_achievements_with_the_observation_that_first_showed_them(client):
    body = (await client.get("/v1/players/Alice/achievements")).json()
    got = {a["key"]: a for a in body["items"]}
    attack = got["level_99.attack"]
    assert attack["before_tracking"] is False
    assert attack["observed_at"] > attack["previous_at"]
    assert got["boss_kc.zulrah.100"]["before_tracking"] is True
    assert got["boss_kc.zulrah.100"]["previous_at"] is None
    kills = (await client.get("/v1/players/alice/achievements?kind=boss_kc")).json()
    assert {a["kind"] for a in kills["items"]} == {"boss_kc"}
    none = (await client.get("/v1/players/dave/achievements")).json()
    assert none == {"key": "dave", "items": []}
    assert (await client.get("/v1/players/nobody/achievements")).status_code == 404


async def test_leaderboards_page_with_a_cursor(client):
    first = (await client.get("/v1/leaderboards/current?metric=attack&limit=1")).json()
    assert [(e["position"], e["key"]) for e in first["entries"]] == [(1, "alice")]
    cursor = first["next_cursor"]
    second = (
        await client.get(f"/v1/leaderboards/current?metric=attack&limit=1&cursor={cursor}")
    ).json()
    assert [(e["position"], e["key"]) for e in second["entries"]] == [(2, "bob")]
    assert second["next_cursor"] is None  # an exactly full last page says so
    gains = "/v1/leaderboards/gains?metric=attack&period=week&limit=1"
    top = (await client.get(gains)).json()
    rest = (await client.get(f"{gains}&cursor={top['next_cursor']}")).json()
    assert [(e["position"], e["key"]) for e in top["entries"] + rest["entries"]] == [
        (1, "alice"),
        (2, "bob"),
    ]
    assert rest["next_cursor"] is None
    bad = await client.get("/v1/leaderboards/current?metric=attack&cursor=1;DROP")
    assert bad.status_code == 400
