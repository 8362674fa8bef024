"""Records: the best gain per metric in a UTC calendar day, ISO week, month and year."""

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import psycopg
import pytest

from services.api.gains import Observation
from services.api.records import Record, Records, compute_records
from services.projector.queries import SEED_METRIC
from shared.metrics import KNOWN_METRICS
from shared.packed import pack

METRICS = [
    (1, "overall", "skill"),
    (2, "attack", "skill"),
    (3, "zulrah", "activity"),
    (4, "new_boss", "activity"),
]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def obs(text: str, entries: dict) -> Observation:
    return Observation(at(text), None, entries)


def test_the_day_attack_reached_99_is_its_day_record():
    history = [
        obs("2026-03-02T09:00", {2: (900, 11_000_000)}),
        obs("2026-03-02T21:00", {2: (850, 11_500_000)}),
        obs("2026-03-03T22:00", {2: (600, 13_034_431)}),
        obs("2026-03-04T10:00", {2: (590, 13_100_000)}),
    ]
    records = compute_records(history, METRICS)
    assert records["day"]["attack"] == Record(
        1_534_431, at("2026-03-03"), at("2026-03-04"), at("2026-03-03T22:00")
    )
    assert records["week"]["attack"] == Record(
        2_100_000, at("2026-03-02"), at("2026-03-09"), at("2026-03-04T10:00")
    )
    assert records["month"]["attack"].start == at("2026-03-01")
    assert records["year"]["attack"].end == at("2027-01-01")


def test_what_was_gained_over_idle_weeks_counts_in_the_bucket_that_observed_it():
    history = [
        obs("2026-01-05T10:00", {2: (900, 100_000)}),
        obs("2026-02-02T10:00", {2: (800, 400_000)}),
        obs("2026-02-03T10:00", {2: (790, 450_000)}),
    ]
    records = compute_records(history, METRICS)
    assert records["day"]["attack"] == Record(
        300_000, at("2026-02-02"), at("2026-02-03"), at("2026-02-02T10:00")
    )
    assert records["week"]["attack"] == Record(
        350_000, at("2026-02-02"), at("2026-02-09"), at("2026-02-03T10:00")
    )
    assert records["month"]["attack"].start == at("2026-02-01")


def test_a_first_observation_mid_week_is_the_baseline_of_its_buckets():
    history = [
        obs("2026-11-25T08:00", {2: (900, 1_000_000)}),
        obs("2026-11-25T20:00", {2: (880, 1_400_000)}),
        obs("2026-11-27T12:00", {2: (870, 1_500_000)}),
    ]
    records = compute_records(history, METRICS)
    assert records["day"]["attack"] == Record(
        400_000, at("2026-11-25"), at("2026-11-26"), at("2026-11-25T20:00")
    )
    assert records["week"]["attack"] == Record(
        500_000, at("2026-11-23"), at("2026-11-30"), at("2026-11-27T12:00")
    )


def test_a_lone_first_observation_gains_nothing():
    assert compute_records([obs("2026-11-25T08:00", {2: (900, 1_000_000)})], METRICS) == {
        "day": {},
        "week": {},
        "month": {},
        "year": {},
    }
    assert compute_records([], METRICS, ["week"]) == {"week": {}}


def test_a_metric_counts_from_zero_when_it_becomes_ranked():
    history = [
        obs("2026-11-02T10:00", {1: (500, 1_000_000)}),
        obs("2026-11-03T10:00", {1: (500, 1_000_000), 3: (-1, -1)}),
        obs("2026-11-04T10:00", {1: (500, 1_000_000), 3: (70_000, 50)}),
    ]
    assert compute_records(history, METRICS, ["day"])["day"] == {
        "zulrah": Record(50, at("2026-11-04"), at("2026-11-05"), at("2026-11-04T10:00"))
    }


def test_a_metric_that_appears_mid_history_counts_from_zero():
    history = [
        obs("2026-11-02T10:00", {1: (500, 1_000_000), 2: (900, 100_000)}),
        obs("2026-11-09T10:00", {1: (500, 1_000_000), 2: (900, 100_000), 4: (9, 3)}),
    ]
    assert compute_records(history, METRICS, ["week"])["week"] == {
        "new_boss": Record(3, at("2026-11-09"), at("2026-11-16"), at("2026-11-09T10:00"))
    }


def test_only_positive_gains_are_records():
    history = [
        obs("2026-11-02T10:00", {1: (500, 1_000_000), 3: (70_000, 50)}),
        obs("2026-11-03T10:00", {1: (500, 1_000_000), 3: (70_000, 40)}),
    ]
    assert compute_records(history, METRICS)["day"] == {}


def test_a_tie_keeps_the_earliest_bucket():
    history = [
        obs("2026-11-02T10:00", {2: (900, 100_000)}),
        obs("2026-11-03T10:00", {2: (900, 150_000)}),
        obs("2026-11-10T10:00", {2: (900, 200_000)}),
    ]
    records = compute_records(history, METRICS)
    assert records["day"]["attack"] == Record(
        50_000, at("2026-11-03"), at("2026-11-04"), at("2026-11-03T10:00")
    )
    assert records["week"]["attack"] == Record(
        50_000, at("2026-11-02"), at("2026-11-09"), at("2026-11-03T10:00")
    )


def test_the_year_boundary_splits_months_and_years():
    history = [
        obs("2026-12-30T10:00", {1: (500, 5_000_000), 2: (900, 1_000_000)}),
        obs("2026-12-31T23:30", {1: (500, 5_900_000), 2: (900, 1_100_000)}),
        obs("2027-01-01T00:30", {1: (500, 5_950_000), 2: (900, 1_300_000)}),
    ]
    records = compute_records(history, METRICS)
    assert records["year"]["overall"] == Record(
        900_000, at("2026-01-01"), at("2027-01-01"), at("2026-12-31T23:30")
    )
    assert records["month"]["overall"] == Record(
        900_000, at("2026-12-01"), at("2027-01-01"), at("2026-12-31T23:30")
    )
    assert records["year"]["attack"] == Record(
        200_000, at("2027-01-01"), at("2028-01-01"), at("2027-01-01T00:30")
    )
    assert records["month"]["attack"].end == at("2027-02-01")


def test_an_iso_week_ends_on_sunday_and_an_observation_at_monday_midnight_opens_the_next():
    history = [
        obs("2026-11-28T12:00", {1: (500, 1_000), 2: (900, 100)}),
        obs("2026-11-29T23:59:59", {1: (500, 5_000), 2: (900, 300)}),
        obs("2026-11-30T00:00", {1: (500, 5_001), 2: (900, 600)}),
    ]
    records = compute_records(history, METRICS)
    assert records["week"]["overall"] == Record(
        4_000, at("2026-11-23"), at("2026-11-30"), at("2026-11-29T23:59:59")
    )
    assert records["week"]["attack"] == Record(
        300, at("2026-11-30"), at("2026-12-07"), at("2026-11-30T00:00")
    )
    assert records["day"]["attack"].start == at("2026-11-30")


def test_buckets_follow_the_utc_calendar_whatever_the_offset():
    plus_two = timezone(timedelta(hours=2))
    history = [
        obs("2026-11-29T10:00", {2: (900, 100)}),
        Observation(datetime(2026, 11, 30, 1, 0, tzinfo=plus_two), None, {2: (900, 300)}),
    ]
    assert compute_records(history, METRICS)["week"]["attack"].start == at("2026-11-23")


def _daily_closes(history: list[Observation]) -> list[Observation]:
    """What the SQL reads: the first observation, then the last of each UTC day."""
    closes = {o.observed_at.astimezone(UTC).date(): o for o in history}
    return [history[0], *closes.values()]


def _zigzag() -> list[Observation]:
    """Three weeks of uneven play: several observations some days, none on others."""
    history, attack, zulrah = [], 1_000, 0
    for hour in range(0, 21 * 24, 5):
        if (hour // 24) % 4 == 3:
            continue
        attack += (hour * 7919) % 5_000
        zulrah += 1 if hour % 3 == 0 else 0
        entries = {2: (900, attack)} | ({3: (70_000, zulrah)} if zulrah else {})
        history.append(Observation(at("2026-11-20") + timedelta(hours=hour), None, entries))
    return history


def test_the_daily_closes_give_the_records_of_every_observation():
    history = _zigzag()
    assert compute_records(_daily_closes(history), METRICS) == compute_records(history, METRICS)


# Through the API, against Postgres.


def _history(database_url, history: list[Observation], metric_keys: dict[int, str]) -> None:
    """The player zezima with these observations; `metric_keys` maps the test's ids to keys."""
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:  # the projector seeds the registry at start
            cur.executemany(SEED_METRIC, [(m.key, m.name, m.kind.value) for m in KNOWN_METRICS])
        ids = dict(conn.execute("SELECT key, id FROM metrics").fetchall())
        (pid,) = conn.execute(
            "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
            " VALUES ('zezima', 'Zezima', 'regular', true, 3600, %s) RETURNING id",
            (at("2026-11-01"),),
        ).fetchone()
        for observation in history:
            data = pack([(ids[metric_keys[m]], r, v) for m, (r, v) in observation.entries.items()])
            conn.execute(
                "INSERT INTO observations (player_id, observed_at, mode, total_level, data)"
                " VALUES (%s, %s, 'regular', NULL, %s)",
                (pid, observation.observed_at, data),
            )
        if history:
            conn.execute("UPDATE players SET last_changed_at = %s", (history[-1].observed_at,))


TEST_KEYS = {2: "attack", 3: "zulrah"}


async def test_records_through_the_api_match_those_of_every_observation(client, database_url):
    history = _zigzag()
    _history(database_url, history, TEST_KEYS)
    response = await client.get("/v1/players/Zezima/records")
    assert response.status_code == 200
    body = msgspec.json.decode(response.content, type=Records)
    assert body.key == "zezima"
    assert body.records == compute_records(history, [(2, "attack", "skill"), (3, "zulrah", "")])
    assert set(body.records["day"]) == {"attack", "zulrah"}


async def test_records_of_one_metric_and_one_period(client, database_url):
    _history(
        database_url,
        [
            obs("2026-11-28T12:00", {2: (900, 100), 3: (70_000, 5)}),
            obs("2026-11-30T00:00", {2: (900, 600), 3: (70_000, 9)}),
        ],
        TEST_KEYS,
    )
    body = (await client.get("/v1/players/zezima/records?metric=attack&period=week")).json()
    assert body == {
        "key": "zezima",
        "records": {
            "week": {
                "attack": {
                    "gain": 500,
                    "start": "2026-11-30T00:00:00Z",
                    "end": "2026-12-07T00:00:00Z",
                    "observed_at": body["records"]["week"]["attack"]["observed_at"],
                }
            }
        },
    }
    closed_by = body["records"]["week"]["attack"]["observed_at"]
    assert datetime.fromisoformat(closed_by.replace("Z", "+00:00")) == at("2026-11-30")
    every = (await client.get("/v1/players/zezima/records?metric=zulrah")).json()["records"]
    assert list(every) == ["day", "week", "month", "year"]
    assert {period: list(best) for period, best in every.items()} == {
        "day": ["zulrah"],
        "week": ["zulrah"],
        "month": ["zulrah"],
        "year": ["zulrah"],
    }


async def test_a_player_without_observations_has_no_records(client, database_url):
    _history(database_url, [], TEST_KEYS)
    response = await client.get("/v1/players/zezima/records")
    assert response.status_code == 200
    assert response.json()["records"] == {"day": {}, "week": {}, "month": {}, "year": {}}


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("metric=strenght", "strength"),
        ("period=fortnight", "valid: day, week, month, year"),
    ],
)
async def test_bad_records_requests_list_what_is_valid(client, database_url, query, words):
    _history(database_url, [obs("2026-11-28T12:00", {2: (900, 100)})], TEST_KEYS)
    response = await client.get(f"/v1/players/zezima/records?{query}")
    assert response.status_code == 400
    assert "valid: " in response.json()["detail"] and words in response.json()["detail"]


async def test_records_of_an_unknown_player_are_404(client):
    assert (await client.get("/v1/players/nobody/records")).status_code == 404
