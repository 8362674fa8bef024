"""The API against real NATS and Postgres, through Litestar's test client (lifespan included)."""

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from services.api.app import create_app
from shared import subjects
from shared.events import FetchRequested, PlayerTracked, PlayerUntracked, PlayerUpdated, decode
from shared.settings import Settings, SettingsError


@pytest.fixture
async def client(settings, js):
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def auth(client):
    response = await client.post(
        "/v1/auth/token", json={"username": "admin", "password": "correct horse"}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_the_api_refuses_to_start_without_a_secret_outside_dev_mode():
    with pytest.raises(SettingsError, match="OSRS_JWT_SECRET"):
        create_app(Settings(jwt_secret=None, dev=False))


async def test_health_and_schema_need_no_token(client):
    assert (await client.get("/health/live")).json() == {"status": "live", "checks": {}}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "nats": "ok"}
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200 and "/v1/players" in schema.json()["paths"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic YWRtaW46eA=="}]
)
async def test_every_other_route_needs_a_valid_token(client, headers):
    for method, path in [
        ("GET", "/v1/players"),
        ("POST", "/v1/players"),
        *[
            (method, path.format(name))
            for name in ("zezima", "health", "schema", "schema_x", "token")
            for method, path in [
                ("GET", "/v1/players/{}"),
                ("DELETE", "/v1/players/{}"),
                ("POST", "/v1/players/{}/refresh"),
            ]
        ],
    ]:
        response = await client.request(method, path, headers=headers, json={"name": "x"})
        assert response.status_code == 401, (method, path, response.text)


async def test_a_token_signed_with_another_secret_is_refused(client):
    import jwt

    forged = jwt.encode({"sub": "admin", "exp": 4102444800, "iat": 1}, "y" * 32, algorithm="HS256")
    response = await client.get("/v1/players", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "nobody", "password": "correct horse"},
    ],
)
async def test_wrong_credentials_are_refused_alike(client, body):
    response = await client.post("/v1/auth/token", json=body)
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid username or password"


async def test_login_with_the_oauth2_password_form(client):
    response = await client.post(
        "/v1/auth/token",
        data={"username": "admin", "password": "correct horse", "grant_type": "password"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900


async def test_malformed_login_bodies_get_400(client):
    for content in [
        b"{",
        b'{"username": 1}',
        b"[]",
        b'{"username": "a\\u0000b", "password": "x"}',
        b'{"username": "", "password": "x"}',
        b'{"username": "admin"}',
    ]:
        response = await client.post(
            "/v1/auth/token", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, content


async def test_tracking_publishes_the_event_and_a_fetch(client, auth, js):
    response = await client.post("/v1/players", json={"name": "Lynx Titan"}, headers=auth)
    assert response.status_code == 202, response.text
    assert response.json()["key"] == "lynx_titan" and response.json()["status"] == "pending"
    tracked = decode(
        (await js.get_last_msg(subjects.EVT_STREAM, subjects.PLAYER_TRACKED)).data, PlayerTracked
    )
    assert (tracked.player_key, tracked.display_name, tracked.interval_s, tracked.by) == (
        "lynx_titan",
        "Lynx Titan",
        3600,
        "admin",
    )
    fetch = decode(
        (await js.get_last_msg(subjects.CMD_STREAM, "osrs.cmd.fetch.lynx_titan")).data,
        FetchRequested,
    )
    assert fetch.reason == "manual"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "way too long a name"},
        {"name": "bad!"},
        {"name": ""},
        {"name": "ok", "interval_s": 5},
        {"name": "ok", "mode": "pirate"},
        {"nam": "typo"},
    ],
)
async def test_bad_track_requests_get_400_and_publish_nothing(client, auth, js, body):
    response = await client.post("/v1/players", json=body, headers=auth)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert (await js.stream_info(subjects.EVT_STREAM)).state.messages == 0


def _project_tracked(database_url, key="lynx_titan", name="Lynx Titan"):
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
            " VALUES (%s, %s, 'regular', true, 3600, now())",
            (key, name),
        )


async def test_unknown_players_are_404(client, auth):
    for method, path in [
        ("GET", "/v1/players/zezima"),
        ("DELETE", "/v1/players/zezima"),
        ("POST", "/v1/players/zezima/refresh"),
    ]:
        response = await client.request(method, path, headers=auth)
        assert response.status_code == 404, (method, path)


async def test_any_spelling_of_a_name_finds_the_player(client, auth, database_url):
    _project_tracked(database_url)
    for spelling in ["lynx_titan", "Lynx%20Titan", "LYNX-TITAN"]:
        response = await client.get(f"/v1/players/{spelling}", headers=auth)
        assert response.status_code == 200 and response.json()["key"] == "lynx_titan"
    invalid = await client.get("/v1/players/bad!name", headers=auth)
    assert invalid.status_code == 400


async def test_refresh_has_a_cooldown_with_retry_after(client, auth, database_url, js):
    _project_tracked(database_url)
    first = await client.post("/v1/players/lynx_titan/refresh", headers=auth)
    second = await client.post("/v1/players/Lynx Titan/refresh", headers=auth)
    assert first.status_code == 202
    assert second.status_code == 429
    assert 1 <= int(second.headers["retry-after"]) <= 60
    assert (await js.stream_info(subjects.CMD_STREAM)).state.messages == 1


async def test_untrack_publishes_the_event(client, auth, database_url, js):
    _project_tracked(database_url)
    response = await client.delete("/v1/players/lynx_titan", headers=auth)
    assert response.status_code == 202
    event = decode(
        (await js.get_last_msg(subjects.EVT_STREAM, subjects.PLAYER_UNTRACKED)).data,
        PlayerUntracked,
    )
    assert event.player_key == "lynx_titan"


async def test_list_players_pages_with_a_cursor(client, auth, database_url):
    for i in range(5):
        _project_tracked(database_url, f"p{i}", f"P{i}")
    first = (await client.get("/v1/players?limit=2", headers=auth)).json()
    assert [p["key"] for p in first["items"]] == ["p0", "p1"]
    second = (
        await client.get(f"/v1/players?limit=2&cursor={first['next_cursor']}", headers=auth)
    ).json()
    assert [p["key"] for p in second["items"]] == ["p2", "p3"]
    last = (await client.get("/v1/players?limit=2&cursor=p3", headers=auth)).json()
    assert [p["key"] for p in last["items"]] == ["p4"] and last["next_cursor"] is None
    assert (await client.get("/v1/players?limit=0", headers=auth)).status_code == 400
    for cursor in ("%00", "a%00b", "x" * 13, "Bad!"):
        response = await client.get(f"/v1/players?cursor={cursor}", headers=auth)
        assert response.status_code == 400, cursor
    assert (await client.get("/v1/players?status=bogus", headers=auth)).status_code == 400
    pending = (await client.get("/v1/players?status=pending", headers=auth)).json()
    assert len(pending["items"]) == 5


async def test_tracking_again_inside_the_refresh_cooldown_is_accepted(client, auth, js):
    for _ in range(2):
        response = await client.post("/v1/players", json={"name": "Zezima"}, headers=auth)
        assert response.status_code == 202, response.text
    assert (await js.stream_info(subjects.EVT_STREAM)).state.messages == 2
    assert (await js.stream_info(subjects.CMD_STREAM)).state.messages == 1


async def test_tracking_without_a_mode_asks_for_detection(client, auth, js):
    await client.post("/v1/players", json={"name": "Auto"}, headers=auth)
    await client.post("/v1/players", json={"name": "Iron", "mode": "ironman"}, headers=auth)
    sub = await js.pull_subscribe("osrs.evt.player.tracked", stream=subjects.EVT_STREAM)
    tracked = [decode(m.data, PlayerTracked) for m in await sub.fetch(2, timeout=2)]
    assert [(t.player_key, t.mode, t.detect_mode) for t in tracked] == [
        ("auto", "regular", True),
        ("iron", "ironman", False),
    ]
    for key, detect in (("auto", True), ("iron", False)):
        msg = await js.get_last_msg(subjects.CMD_STREAM, subjects.fetch_subject(key))
        assert decode(msg.data, FetchRequested).detect_mode is detect


async def test_a_player_not_found_three_times_in_a_row_is_unranked_and_kept(
    client, auth, database_url
):
    _project_tracked(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO fetch_status (player_key, mode, fetched_at, outcome, detail,"
            " not_found_streak) VALUES ('lynx_titan', 'regular', now(), 'not_found', '', 3)"
        )
    body = (await client.get("/v1/players/lynx_titan", headers=auth)).json()
    assert body["status"] == "unranked" and body["last_outcome"] == "not_found"
    listed = (await client.get("/v1/players?status=unranked", headers=auth)).json()
    assert [p["key"] for p in listed["items"]] == ["lynx_titan"]


async def test_patch_changes_the_interval_and_mode_with_an_event(client, auth, database_url, js):
    _project_tracked(database_url)
    response = await client.patch(
        "/v1/players/Lynx Titan", json={"interval_s": 600, "mode": "ironman"}, headers=auth
    )
    assert response.status_code == 202, response.text
    assert (response.json()["interval_s"], response.json()["mode"]) == (600, "ironman")
    msg = await js.get_last_msg(subjects.EVT_STREAM, subjects.PLAYER_UPDATED)
    event = decode(msg.data, PlayerUpdated)
    assert (event.player_key, event.interval_s, event.mode, event.detect_mode, event.by) == (
        "lynx_titan",
        600,
        "ironman",
        False,
        "admin",
    )


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("lynx_titan", {}, 400),
        ("lynx_titan", {"interval_s": 5}, 400),
        ("lynx_titan", {"mode": "pirate"}, 400),
        ("lynx_titan", {"colour": "red"}, 400),
        ("zezima", {"interval_s": 600}, 404),
    ],
)
async def test_bad_patches(client, auth, database_url, js, name, body, status):
    _project_tracked(database_url)
    response = await client.patch(f"/v1/players/{name}", json=body, headers=auth)
    assert response.status_code == status, response.text
    assert (await js.stream_info(subjects.EVT_STREAM)).state.messages == 0
