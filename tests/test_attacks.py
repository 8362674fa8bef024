"""Hostile input in every path, query and body field of the query API: always a 4xx with a JSON
detail, never a server error, never data that was not asked for."""

from urllib.parse import quote

import pytest

from shared.players import validate_name

HOSTILE = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "a" * 5000,
    "'; DROP TABLE players; --",
    "' OR '1'='1",
    "Zézima",
    "\u202eevil",
    "😀",
    "%00",
    "\x00",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "-1",
    "99999999999999999999999",
    "",
    " ",
]

PLAYER_PATHS = [
    "/v1/players/{}",
    "/v1/players/{}/gains?period=day",
    "/v1/players/{}/snapshots",
    "/v1/players/{}/timeline?metric=attack",
    "/v1/players/{}/records",
    "/v1/players/{}/achievements",
]

QUERIES = [
    "/v1/players?status={}",
    "/v1/players?mode={}",
    "/v1/players?name={}",
    "/v1/players?sort={}",
    "/v1/players?order={}",
    "/v1/players?cursor={}",
    "/v1/players?limit={}",
    "/v1/players/zezima/gains?period={}",
    "/v1/players/zezima/gains?from={}",
    "/v1/players/zezima/gains?from=2026-01-01T00:00:00Z&to={}",
    "/v1/players/zezima/snapshots?cursor={}",
    "/v1/players/zezima/snapshots?limit={}",
    "/v1/players/zezima/timeline?metric={}",
    "/v1/players/zezima/records?metric={}",
    "/v1/players/zezima/records?period={}",
    "/v1/players/zezima/achievements?kind={}",
    "/v1/leaderboards/current?metric={}",
    "/v1/leaderboards/current?metric=attack&mode={}",
    "/v1/leaderboards/current?metric=attack&limit={}",
    "/v1/leaderboards/current?metric=attack&cursor={}",
    "/v1/leaderboards/gains?metric=attack&period={}",
]

BODIES = [
    ("POST", "/v1/players", {"name": "{}"}),
    ("POST", "/v1/players", {"name": "zezima", "mode": "{}"}),
    ("POST", "/v1/players", {"name": "zezima", "interval_s": "{}"}),
    ("PATCH", "/v1/players/zezima", {"mode": "{}"}),
    ("POST", "/v1/auth/token", {"username": "{}", "password": "{}"}),
]


@pytest.fixture
async def client(client):
    assert (await client.post("/v1/players", json={"name": "Zezima"})).is_success
    return client


def _refused(response, allowed=(400, 401, 404, 405, 413, 422, 429)) -> None:
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    assert "detail" in response.json() or response.status_code in (404, 405)
    assert "Traceback" not in response.text and "psycopg" not in response.text


@pytest.mark.parametrize("template", PLAYER_PATHS)
async def test_hostile_player_names(client, template):
    for value in HOSTILE:
        if not value.strip():
            continue  # an empty name is another route: the list
        response = await client.get(template.format(quote(value, safe="")))
        _refused(response)


@pytest.mark.parametrize("template", QUERIES)
async def test_hostile_query_values(client, template):
    for value in HOSTILE:
        response = await client.get(template.format(quote(value, safe="")))
        if response.status_code == 200:
            continue  # a value that is merely a filter matching nothing, like name='a'*5000
        _refused(response)


@pytest.mark.parametrize(("method", "path", "body"), BODIES)
async def test_hostile_body_fields(client, method, path, body):
    for value in HOSTILE:
        filled = {k: v.replace("{}", value) if isinstance(v, str) else v for k, v in body.items()}
        response = await client.request(method, path, json=filled)
        if response.is_success:  # only a value that is a valid player name may be taken
            assert body == {"name": "{}"}, (body, value)
            validate_name(value)
            continue
        _refused(response)


async def test_malformed_bodies(client):
    for raw in (b"{", b"[]", b"null", b'{"name": 1}', b"\xff\xfe", b'{"name": "x"' + b" " * 10):
        response = await client.post(
            "/v1/players", content=raw, headers={"content-type": "application/json"}
        )
        _refused(response)
