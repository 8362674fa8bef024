"""GET /v1/players: filters, sorts and keyset pages that visit every player once, in order."""

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest

from shared.modes import GameMode

T = datetime(2026, 11, 1, tzinfo=UTC)
SORTS = ("name", "tracked_at", "last_changed_at", "overall_xp")
# key, display name, mode, tracked, tracked_at (hours after T), last_changed_at, overall_xp.
# Ties in every sort, three players never observed, and keys that LIKE would confuse (a_b, aab).
PLAYERS = [
    ("aab", "Aab", "regular", True, 1, 5, 500),
    ("a_b", "A b", "ironman", True, 1, None, None),
    ("a_c", "A-c", "ironman", True, 2, 3, 500),
    ("b0", "B0", "regular", True, 1, 5, 10),
    ("lynx", "Lynx", "hardcore", True, 2, 9, 10),
    ("lynx_titan", "Lynx Titan", "regular", True, 3, 9, 4_600_000_000),
    ("m", "M", "regular", True, 1, 2, 500),
    ("q9", "Q9", "regular", True, 4, None, None),
    ("x_y_z", "X y z", "ultimate", True, 2, 1, 7),
    ("z", "Z", "ultimate", True, 4, None, None),
    ("zezima", "Zezima", "regular", False, 1, 7, 10),
    ("zz", "Zz", "regular", True, 3, 8, 7),
]
COLUMNS = {"tracked_at": 4, "last_changed_at": 5, "overall_xp": 6}


@pytest.fixture
def key_rank(database_url) -> dict[str, int]:
    """The players inserted, and each key's place in the database's own key order (its
    collation decides where `_` goes)."""
    with psycopg.connect(database_url) as conn:
        for key, name, mode, tracked, tracked_h, changed_h, overall_xp in PLAYERS:
            conn.execute(
                "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at,"
                " last_changed_at, overall_xp) VALUES (%s, %s, %s, %s, 3600, %s, %s, %s)",
                (key, name, mode, tracked, _at(tracked_h), _at(changed_h), overall_xp),
            )
        keys = conn.execute("SELECT key FROM players ORDER BY key").fetchall()
    return {key: place for place, (key,) in enumerate(keys)}


def _at(hours: int | None) -> datetime | None:
    return None if hours is None else T + timedelta(hours=hours)


def expected(sort: str, order: str, key_rank: dict[str, int]) -> list[str]:
    """Keys by (sort value, key) in the order, players without a value last."""
    descending = order == "desc"
    if sort == "name":
        return sorted(key_rank, key=key_rank.__getitem__, reverse=descending)
    column = COLUMNS[sort]
    valued = [p for p in PLAYERS if p[column] is not None]
    unvalued = [p for p in PLAYERS if p[column] is None]
    by_value = sorted(valued, key=lambda p: (p[column], key_rank[p[0]]), reverse=descending)
    by_key = sorted(unvalued, key=lambda p: key_rank[p[0]], reverse=descending)
    return [p[0] for p in by_value + by_key]


async def keys(client, query: str) -> list[str]:
    response = await client.get(f"/v1/players?{query}")
    assert response.status_code == 200, response.text
    return [player["key"] for player in response.json()["items"]]


async def all_pages(client, query: str, limit: int) -> list[list[str]]:
    pages, cursor = [], ""
    while True:
        response = await client.get(f"/v1/players?{query}&limit={limit}&cursor={cursor}")
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([player["key"] for player in body["items"]])
        if body["next_cursor"] is None:
            return pages
        cursor = body["next_cursor"]
        assert len(pages) <= len(PLAYERS), "the cursor does not advance"


@pytest.mark.parametrize("sort", SORTS)
async def test_each_sort_in_both_orders_with_players_never_observed_last(client, key_rank, sort):
    for order in ("asc", "desc"):
        listed = await keys(client, f"sort={sort}&order={order}")
        assert listed == expected(sort, order, key_rank), order
        if sort in ("last_changed_at", "overall_xp"):
            assert set(listed[-3:]) == {"a_b", "q9", "z"}


async def test_name_sorts_ascending_by_default_and_the_others_descending(client, key_rank):
    assert await keys(client, "") == expected("name", "asc", key_rank)
    for sort in SORTS[1:]:
        assert await keys(client, f"sort={sort}") == expected(sort, "desc", key_rank)


@pytest.mark.parametrize("sort", SORTS)
async def test_pages_visit_every_player_once_in_order_for_every_sort(client, key_rank, sort):
    for order in ("asc", "desc"):
        for limit in (1, 3, 5, len(PLAYERS), 500):  # 3 and 12 fill the last page exactly
            pages = await all_pages(client, f"sort={sort}&order={order}", limit)
            assert [key for page in pages for key in page] == expected(sort, order, key_rank)
            assert all(len(page) == limit for page in pages[:-1])
            assert len(pages) == -(-len(PLAYERS) // limit), (order, limit)


async def test_pages_of_a_filtered_listing(client, key_rank):
    pages = await all_pages(client, "sort=overall_xp&order=asc&mode=regular&status=active", 2)
    assert pages == [["zz", "b0"], ["aab", "m"], ["lynx_titan"]]


async def test_filter_by_status_and_mode(client, key_rank):
    assert await keys(client, "status=untracked") == ["zezima"]
    assert await keys(client, "status=pending&sort=tracked_at&order=asc") == ["a_b", "q9", "z"]
    assert await keys(client, "mode=ultimate") == ["x_y_z", "z"]
    assert await keys(client, "mode=ironman&status=pending") == ["a_b"]
    assert await keys(client, "mode=skiller") == []


@pytest.mark.parametrize(
    ("prefix", "found"),
    [
        ("a_", ["a_b", "a_c"]),  # `_` matches itself only: not aab
        ("A%20", ["a_b", "a_c"]),
        ("a-", ["a_b", "a_c"]),
        ("LYNX", ["lynx", "lynx_titan"]),
        ("Lynx%20T", ["lynx_titan"]),
        ("x-y_z", ["x_y_z"]),
        ("zezima", ["zezima"]),
        ("zezima1", []),
        ("q", ["q9"]),
        ("c", []),
    ],
)
async def test_filter_by_name_prefix_folded_like_keys(client, key_rank, prefix, found):
    listed = await keys(client, f"name={prefix}&sort=tracked_at&order=asc")
    assert sorted(listed) == found


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("mode=iron", "mode must be one of " + ", ".join(GameMode)),
        ("sort=xp", "sort must be one of name, tracked_at, last_changed_at, overall_xp"),
        ("order=up", "order must be one of asc, desc"),
        ("status=gone", "status must be one of active, pending"),
        ("name=bad!", "letters, digits, space, '_' and '-'"),
        ("name=abcdefghijklm", "at most 12 characters"),
        ("name=", "must not be empty"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
    ],
)
async def test_bad_listing_requests_say_what_is_valid(client, query, words):
    response = await client.get(f"/v1/players?{query}")
    assert response.status_code == 400, response.text
    assert words in response.text


def forged(*fields) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(fields)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("query", "cursor"),
    [
        ("", "Bad!"),
        ("", "%00"),
        ("", "WyJ"),  # base64, not JSON
        ("", forged("name", "asc", None)),
        ("", forged("name", "asc", None, "b0", 1)),
        ("", forged("name", "asc", None, "Not a key!")),
        ("sort=overall_xp", forged("overall_xp", "desc", "500", "b0")),
        ("sort=tracked_at", forged("tracked_at", "desc", "2026-11-01T01:00:00", "b0")),  # no tz
        ("sort=tracked_at", "b0"),  # a plain key is a cursor of the name sort only
        ("sort=name&order=desc", "b0"),
    ],
)
async def test_a_garbled_cursor_is_a_400(client, key_rank, query, cursor):
    response = await client.get(f"/v1/players?{query}&cursor={cursor}")
    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["detail"]


async def test_a_cursor_made_for_another_sort_or_order_is_a_400(client, key_rank):
    first = (await client.get("/v1/players?sort=tracked_at&limit=2")).json()
    cursor = first["next_cursor"]
    assert (await client.get(f"/v1/players?sort=tracked_at&cursor={cursor}")).status_code == 200
    for query in ("sort=overall_xp", "sort=name", "sort=tracked_at&order=asc"):
        response = await client.get(f"/v1/players?{query}&cursor={cursor}")
        assert response.status_code == 400, query
        assert "not a next_cursor of this listing" in response.json()["detail"]


async def test_the_openapi_schema_documents_every_query_parameter(client):
    schema = (await client.get("/schema/openapi.json")).json()
    parameters = {
        p["name"]: p
        for p in schema["paths"]["/v1/players"]["get"]["parameters"]
        if p["in"] == "query"
    }
    assert set(parameters) == {"limit", "cursor", "status", "mode", "name", "sort", "order"}
    assert all(p.get("description") for p in parameters.values())
    assert parameters["sort"]["schema"]["enum"] == list(SORTS)
    assert parameters["mode"]["schema"]["enum"] == list(GameMode)
