"""Gains: the value at an instant is the last observation at or before it."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.api.gains import Observation, PeriodError, compute_gains, parse_period
from services.projector.queries import SEED_METRIC
from shared.metrics import KNOWN_METRICS
from shared.packed import pack

T = datetime(2026, 11, 1, tzinfo=UTC)
METRICS = [
    (1, "overall", "skill"),
    (2, "attack", "skill"),
    (3, "zulrah", "activity"),
    (4, "new_boss", "activity"),
]


def obs(hours: float, total_level: int, entries: dict) -> Observation:
    return Observation(T + timedelta(hours=hours), total_level, entries)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("day", timedelta(days=1)),
        ("week", timedelta(weeks=1)),
        ("month", timedelta(days=30)),
        ("year", timedelta(days=365)),
        ("3d12h", timedelta(days=3, hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_periods(text, span):
    assert parse_period(text) == span


@pytest.mark.parametrize("text", ["fortnight", "3x", "0d", "", "d", "99999d"])
def test_a_bad_period_lists_what_is_valid(text):
    with pytest.raises(PeriodError, match="day, week, month, year"):
        parse_period(text)


def test_gains_between_two_observations_with_unranked_counting_as_zero():
    start = obs(0, 1000, {1: (500, 1_000_000), 2: (900, 100_000)})
    end = obs(48, 1010, {1: (480, 1_400_000), 2: (800, 500_000), 3: (70_000, 12), 4: (9, 3)})
    gains = compute_gains("p", T, T + timedelta(days=3), METRICS, start, end)
    assert (gains.skills["overall"].xp, gains.skills["overall"].levels) == (400_000, 10)
    attack = gains.skills["attack"]
    assert (attack.xp, attack.levels, attack.rank) == (400_000, 66 - 49, -100)
    assert (gains.activities["zulrah"].score, gains.activities["zulrah"].rank) == (12, None)
    assert gains.activities["new_boss"].score == 3  # a metric added mid-history counts from 0
    assert gains.start.observed_at == start.observed_at and gains.end.observed_at == end.observed_at


def test_an_idle_stretch_gains_nothing_and_an_empty_window_answers_zeros():
    same = obs(0, 1000, {1: (500, 1_000_000)})
    idle = compute_gains("p", T, T + timedelta(days=7), METRICS, same, same)
    assert idle.skills["overall"].xp == 0 and idle.skills["overall"].levels == 0
    empty = compute_gains("p", T, T + timedelta(days=1), METRICS, None, None)
    assert empty.start is None and empty.end is None
    assert all(g.xp == 0 for g in empty.skills.values())


def test_an_entry_stored_unranked_that_becomes_ranked_counts_from_zero():
    start = obs(0, 1000, {1: (500, 1_000_000), 3: (-1, -1)})
    end = obs(24, 1000, {1: (500, 1_000_000), 3: (70_000, 50)})
    zulrah = compute_gains("p", T, T + timedelta(days=1), METRICS, start, end).activities["zulrah"]
    assert (zulrah.score, zulrah.rank) == (50, None)


def _history(database_url):
    """A player tracked on Nov 1, observed at 10:00 and, after an idle day, on Nov 3 at 10:00."""
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:  # the projector seeds the registry at start
            cur.executemany(SEED_METRIC, [(m.key, m.name, m.kind.value) for m in KNOWN_METRICS])
        ids = dict(conn.execute("SELECT key, id FROM metrics").fetchall())
        (pid,) = conn.execute(
            "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
            " VALUES ('zezima', 'Zezima', 'regular', true, 3600, %s) RETURNING id",
            (T,),
        ).fetchone()
        for at, overall, attack, level in (
            (10, 1_000_000, 100_000, 1000),
            (58, 1_400_000, 500_000, 1014),
        ):
            data = pack([(ids["overall"], 500, overall), (ids["attack"], 900, attack)])
            conn.execute(
                "INSERT INTO observations (player_id, observed_at, mode, total_level,"
                " data) VALUES (%s, %s, 'regular', %s, %s)",
                (pid, T + timedelta(hours=at), level, data),
            )
        conn.execute("UPDATE players SET last_changed_at = %s", (T + timedelta(hours=58),))


def iso(hours: float) -> str:
    return (T + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


async def test_gains_through_the_api(client, database_url):
    _history(database_url)
    # A window inside the idle day: both ends are the 10:00 observation.
    idle = (await client.get(f"/v1/players/Zezima/gains?from={iso(20)}&to={iso(40)}")).json()
    assert idle["skills"]["attack"]["xp"] == 0 and idle["start"] == idle["end"]
    # Across the change: the baseline is the last observation before `from`.
    across = (await client.get(f"/v1/players/zezima/gains?from={iso(20)}&to={iso(70)}")).json()
    assert across["skills"]["attack"] == {"xp": 400_000, "levels": 17, "rank": 0}
    assert across["skills"]["overall"]["levels"] == 14
    assert across["start"]["observed_at"].startswith("2026-11-01T10:00")
    # Nothing stored before `from`: the first observation inside the window is the baseline.
    first = (await client.get(f"/v1/players/zezima/gains?from={iso(0)}&to={iso(70)}")).json()
    assert first["skills"]["attack"]["xp"] == 400_000
    # Before any data: zeros, and the ends say so.
    before = (await client.get(f"/v1/players/zezima/gains?from={iso(0)}&to={iso(5)}")).json()
    assert before["start"] is None and before["skills"]["attack"]["xp"] == 0
    week = await client.get("/v1/players/zezima/gains?period=week")
    assert week.status_code == 200


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("period=fortnight", 400, "day, week, month, year"),
        (f"from={iso(10)}&to={iso(5)}", 400, "is after to"),
        (f"period=day&from={iso(0)}", 400, "not both"),
        ("", 400, "give period"),
    ],
)
async def test_bad_gains_requests(client, database_url, query, status, words):
    _history(database_url)
    response = await client.get(f"/v1/players/zezima/gains?{query}")
    assert response.status_code == status and words in response.json()["detail"]


async def test_gains_of_an_unknown_player_are_404(client):
    assert (await client.get("/v1/players/nobody/gains?period=day")).status_code == 404


async def test_snapshots_page_through_the_stored_observations(client, database_url):
    _history(database_url)
    first = (await client.get("/v1/players/zezima/snapshots?limit=1")).json()
    assert [s["total_level"] for s in first["items"]] == [1000]
    assert first["items"][0]["skills"]["attack"] == {
        "rank": 900,
        "level": 49,
        "xp": 100_000,
        "virtual_level": 49,
    }
    assert first["items"][0]["activities"]["zulrah"] == {"rank": -1, "score": -1}
    cursor = first["next_cursor"].replace("+00:00", "Z")
    second = (await client.get(f"/v1/players/zezima/snapshots?limit=1&cursor={cursor}")).json()
    assert [s["total_level"] for s in second["items"]] == [1014]
    assert second["next_cursor"] is None  # an exactly full last page says so
    window = (await client.get(f"/v1/players/zezima/snapshots?from={iso(20)}&to={iso(70)}")).json()
    assert len(window["items"]) == 1 and window["next_cursor"] is None
    assert (await client.get("/v1/players/zezima/snapshots?limit=101")).status_code == 400


async def test_timeline_of_one_metric(client, database_url):
    _history(database_url)
    body = (await client.get("/v1/players/zezima/timeline?metric=attack")).json()
    assert body["kind"] == "skill"
    assert [(p["rank"], p["value"]) for p in body["points"]] == [(900, 100_000), (900, 500_000)]
    unranked = (await client.get("/v1/players/zezima/timeline?metric=zulrah")).json()
    assert [p["value"] for p in unranked["points"]] == [-1, -1]
    bad = await client.get("/v1/players/zezima/timeline?metric=strenght")
    assert bad.status_code == 400 and "valid: " in bad.json()["detail"]
    assert "strength" in bad.json()["detail"]
    assert (await client.get("/v1/players/nobody/timeline?metric=attack")).status_code == 404
    late = await client.get(f"/v1/players/zezima/timeline?metric=attack&from={iso(9)}&to={iso(1)}")
    assert late.status_code == 400


async def test_a_metric_registered_mid_history_counts_from_zero(client, database_url):
    _history(database_url)
    before = (await client.get(f"/v1/players/zezima/gains?from={iso(20)}&to={iso(70)}")).json()
    assert "the_new_boss" not in before["activities"]  # the registry is cached without it
    with psycopg.connect(database_url) as conn:
        conn.execute(SEED_METRIC, ("the_new_boss", "The New Boss", "activity"))
        ids = dict(conn.execute("SELECT key, id FROM metrics").fetchall())
        data = pack(
            [
                (ids["overall"], 500, 1_400_000),
                (ids["attack"], 900, 500_000),
                (ids["the_new_boss"], 9, 7),
            ]
        )
        conn.execute(
            "INSERT INTO observations (player_id, observed_at, mode, total_level, data)"
            " SELECT id, %s, 'regular', 1014, %s FROM players",
            (T + timedelta(hours=80), data),
        )
    after = (await client.get(f"/v1/players/zezima/gains?from={iso(60)}&to={iso(90)}")).json()
    assert after["activities"]["the_new_boss"] == {"score": 7, "rank": None}
    assert after["skills"]["attack"]["xp"] == 0


async def test_a_player_tracked_yesterday_has_its_first_observation_as_both_ends(
    client, database_url
):
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(SEED_METRIC, [(m.key, m.name, m.kind.value) for m in KNOWN_METRICS])
        ids = dict(conn.execute("SELECT key, id FROM metrics").fetchall())
        (pid,) = conn.execute(
            "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
            " VALUES ('zezima', 'Zezima', 'regular', true, 3600, %s) RETURNING id",
            (now - timedelta(days=1),),
        ).fetchone()
        observed_at = now - timedelta(hours=20)
        conn.execute(
            "INSERT INTO observations (player_id, observed_at, mode, total_level, data)"
            " VALUES (%s, %s, 'regular', 1000, %s)",
            (
                pid,
                observed_at,
                pack([(ids["overall"], 500, 1_000_000), (ids["attack"], 900, 100_000)]),
            ),
        )
    week = (await client.get("/v1/players/zezima/gains?period=week")).json()
    assert week["start"] == week["end"] and week["start"] is not None
    start = datetime.fromisoformat(week["start"]["observed_at"].replace("Z", "+00:00"))
    assert abs(start - observed_at) < timedelta(milliseconds=1)
    assert week["skills"]["attack"] == {"xp": 0, "levels": 0, "rank": 0}
    assert week["skills"]["overall"] == {"xp": 0, "levels": 0, "rank": 0}
