"""Hardening of the API: failed-login throttling, body size limit, CORS, security headers."""

import asyncio
import hashlib

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from services.api.app import create_app
from services.api.hardening import CORS_METHODS, HSTS, HTML_CSP, JSON_CSP
from services.api.ratelimit import FailureWindow, LoginThrottle

ADMIN = {"username": "admin", "password": "correct horse"}
WRONG = {"username": "admin", "password": "wrong"}
ORIGIN = "https://dash.example.com"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _client(settings, clock) -> AsyncTestClient:
    app = create_app(settings)
    app.state.login_throttle.clock = clock
    return AsyncTestClient(app=app)


@pytest.fixture
async def client(settings, js, clock):
    async with _client(settings, clock) as test_client:
        yield test_client


@pytest.fixture
async def auth(client):
    response = await client.post("/v1/auth/token", json=ADMIN)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def scrypt_calls(monkeypatch) -> list[int]:
    """Counts password checks: every one runs scrypt."""
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def _assert_too_many(response, what: str, most: int = 300) -> int:
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= most
    assert what in response.json()["detail"] and f"retry in {wait} s" in response.json()["detail"]
    return wait


# --- failed logins -----------------------------------------------------------------------------


async def test_five_failed_logins_lock_the_username_even_for_the_right_password(client, clock):
    for _ in range(5):
        assert (await client.post("/v1/auth/token", json=WRONG)).status_code == 401
        clock.now += 10
    locked = await client.post("/v1/auth/token", json=ADMIN)
    assert _assert_too_many(locked, "for this username") == 300 - 50
    # Another spelling of the same name (the users table compares in lower case) is locked too.
    shouted = await client.post("/v1/auth/token", json={**ADMIN, "username": "ADMIN"})
    assert shouted.status_code == 429


async def test_the_lock_ends_when_the_oldest_failure_leaves_the_window(client, clock):
    for _ in range(5):
        await client.post("/v1/auth/token", json=WRONG)
    clock.now += 299
    assert _assert_too_many(await client.post("/v1/auth/token", json=ADMIN), "username") == 1
    clock.now += 1
    assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200


async def test_a_locked_login_is_refused_without_checking_the_password(client, scrypt_calls):
    for _ in range(5):
        await client.post("/v1/auth/token", json=WRONG)
    assert len(scrypt_calls) == 5
    for body in (ADMIN, WRONG):
        assert (await client.post("/v1/auth/token", json=body)).status_code == 429
    assert len(scrypt_calls) == 5


async def test_a_success_clears_the_usernames_failures(client):
    for _ in range(4):
        assert (await client.post("/v1/auth/token", json=WRONG)).status_code == 401
    assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200
    for _ in range(5):
        assert (await client.post("/v1/auth/token", json=WRONG)).status_code == 401
    assert (await client.post("/v1/auth/token", json=WRONG)).status_code == 429


async def test_unknown_usernames_are_counted_like_known_ones(client):
    nobody = {"username": "nobody", "password": "x"}
    for _ in range(5):
        assert (await client.post("/v1/auth/token", json=nobody)).status_code == 401
    _assert_too_many(await client.post("/v1/auth/token", json=nobody), "for this username")
    assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200


async def test_failures_across_usernames_lock_the_address(client, clock):
    for i in range(20):
        response = await client.post("/v1/auth/token", json={"username": f"u{i}", "password": "x"})
        assert response.status_code == 401, i
    locked = await client.post("/v1/auth/token", json=ADMIN)
    _assert_too_many(locked, "from this address")
    # X-Forwarded-For is not believed from a client that is not a trusted proxy.
    spoofed = await client.post(
        "/v1/auth/token", json=ADMIN, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert spoofed.status_code == 429
    clock.now += 300
    assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200


async def test_failed_refreshes_count_against_the_address(settings, js, clock):
    settings = msgspec.structs.replace(settings, login_max_failures_per_address=3)
    async with _client(settings, clock) as client:
        for _ in range(3):
            refused = await client.post("/v1/auth/refresh", json={"refresh_token": "nonsense"})
            assert refused.status_code == 401, refused.text
        _assert_too_many(
            await client.post("/v1/auth/refresh", json={"refresh_token": "nonsense"}), "address"
        )
        _assert_too_many(await client.post("/v1/auth/token", json=ADMIN), "address")


async def test_bad_requests_and_successes_do_not_count_against_the_address(settings, js, clock):
    settings = msgspec.structs.replace(settings, login_max_failures_per_address=2)
    async with _client(settings, clock) as client:
        for _ in range(3):
            assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200
            malformed = await client.post("/v1/auth/token", json={"username": "admin"})
            assert malformed.status_code == 400
        assert (await client.post("/v1/auth/token", json=WRONG)).status_code == 401
        assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200


async def test_attempts_running_at_once_cannot_all_slip_under_the_limit(client, scrypt_calls):
    responses = await asyncio.gather(
        *(client.post("/v1/auth/token", json=WRONG) for _ in range(12))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 5 + [429] * 7
    assert len(scrypt_calls) == 5


async def test_the_handler_still_reads_a_body_the_throttle_read(client):
    """Litestar keeps the body (or the parsed form) for the handler: JSON, urlencoded, multipart."""
    form = {"username": "admin", "password": "correct horse"}
    multipart = {name: (None, value) for name, value in form.items()}
    assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200
    assert (await client.post("/v1/auth/token", data=form)).status_code == 200
    assert (await client.post("/v1/auth/token", files=multipart)).status_code == 200
    # ...and the throttle sees the username in each of them.
    wrong_form = {**form, "password": "wrong"}
    await client.post("/v1/auth/token", data=wrong_form)
    await client.post("/v1/auth/token", files={k: (None, v) for k, v in wrong_form.items()})
    for _ in range(3):
        await client.post("/v1/auth/token", json=WRONG)
    assert (await client.post("/v1/auth/token", data=form)).status_code == 429


def test_the_client_address_believes_x_forwarded_for_only_from_a_trusted_proxy():
    def scope(client: str, forwarded: str | None = None) -> dict:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return {"client": (client, 50000), "headers": headers}

    untrusting = LoginThrottle(max_failures_per_username=5, max_failures_per_address=20, window=300)
    assert untrusting.client_address(scope("10.0.0.2", "203.0.113.9")) == "10.0.0.2"
    proxied = LoginThrottle(
        max_failures_per_username=5,
        max_failures_per_address=20,
        window=300,
        trusted_proxies=["10.0.0.0/8", "192.0.2.1"],
    )
    assert proxied.client_address(scope("10.0.0.2", "203.0.113.9")) == "203.0.113.9"
    # The client may send its own X-Forwarded-For: only the hop the proxies appended counts.
    chain = "198.51.100.7, 203.0.113.9, 192.0.2.1"
    assert proxied.client_address(scope("10.0.0.2", chain)) == "203.0.113.9"
    assert proxied.client_address(scope("198.51.100.1", "203.0.113.9")) == "198.51.100.1"
    assert proxied.client_address(scope("10.0.0.2")) == "10.0.0.2"


def test_the_failure_counts_stay_bounded_in_memory():
    window = FailureWindow(limit=5, window=300, max_keys=100)
    for i in range(1000):
        window.add(f"user{i}", now=float(i))
    assert len(window) == 100
    assert window.retry_after("user0", now=1000.0) == 0
    # Keys whose failures left the window are dropped as new failures arrive.
    window.add("late", now=2000.0)
    assert len(window) == 1


def test_the_retry_after_counts_from_the_oldest_failure_in_the_window():
    window = FailureWindow(limit=3, window=300)
    for t in (0.0, 100.0, 200.5):
        window.add("admin", now=t)
    assert window.retry_after("admin", now=250.0) == 50
    assert window.retry_after("admin", now=300.0) == 0  # the first failure left the window
    window.discard("admin", at=200.5)
    window.add("admin", now=310.0)
    assert window.retry_after("admin", now=310.0) == 0


# --- body size ---------------------------------------------------------------------------------


async def _post_in_chunks(client, path: str, content_type: str, total: int, headers=()) -> dict:
    """POST `total` bytes as several ASGI body messages without a Content-Length (what a server
    hands the app for a chunked request); the response start message with its decoded body."""
    chunks = [b"x" * 8192] * (total // 8192)
    received: list[dict] = []

    async def receive() -> dict:
        body = chunks.pop() if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        received.append(message)

    raw_headers = [(b"content-type", content_type.encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in dict(headers).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await client.app(scope, receive, send)
    start = received[0]
    body = b"".join(m.get("body", b"") for m in received[1:])
    return {"status": start["status"], "json": msgspec.json.decode(body)}


def _assert_too_large(response) -> None:
    assert response.status_code == 413, response.text
    assert response.json()["detail"]


async def test_bodies_above_the_limit_get_413_with_a_content_length(client, auth):
    big = {"username": "admin", "password": "x" * 70_000}
    _assert_too_large(await client.post("/v1/auth/token", json=big))
    _assert_too_large(await client.post("/v1/auth/token", data=big))
    _assert_too_large(await client.post("/v1/auth/token", files={"password": (None, "x" * 70_000)}))
    _assert_too_large(await client.post("/v1/players", json={"name": "x" * 70_000}, headers=auth))


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"],
)
async def test_bodies_above_the_limit_get_413_without_a_content_length(client, auth, content_type):
    for path, headers in [("/v1/auth/token", {}), ("/v1/players", auth)]:
        response = await _post_in_chunks(client, path, content_type, 80_000, headers)
        assert response["status"] == 413, (path, response)
        assert response["json"]["detail"]
    # The same way in, under the limit, reaches the handler.
    small = await _post_in_chunks(client, "/v1/auth/token", "application/json", 8192)
    assert small["status"] == 400


async def test_a_413_is_not_a_failed_login(settings, js, clock):
    settings = msgspec.structs.replace(settings, login_max_failures_per_address=1)
    async with _client(settings, clock) as client:
        for _ in range(3):
            big = {"username": "admin", "password": "x" * 70_000}
            _assert_too_large(await client.post("/v1/auth/token", json=big))
        assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 200


async def test_the_body_limit_is_a_setting(settings, js, clock):
    settings = msgspec.structs.replace(settings, max_body_bytes=1024)
    async with _client(settings, clock) as client:
        under = await client.post("/v1/auth/token", json={**ADMIN, "password": "x" * 900})
        assert under.status_code == 401
        _assert_too_large(
            await client.post("/v1/auth/token", json={**ADMIN, "password": "x" * 1100})
        )


# --- CORS --------------------------------------------------------------------------------------


def _cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


async def test_cors_is_off_by_default(client, auth):
    preflight = await client.options(
        "/v1/players",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert _cors_headers(preflight) == {}
    simple = await client.get("/v1/players", headers={**auth, "Origin": ORIGIN})
    assert simple.status_code == 200 and _cors_headers(simple) == {}


async def test_cors_allows_a_configured_origin(settings, js, clock):
    settings = msgspec.structs.replace(settings, cors_origins=(ORIGIN,))
    async with _client(settings, clock) as client:
        preflight = await client.options(
            "/v1/players/zezima",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "access-control-allow-credentials" not in preflight.headers
        assert preflight.headers["x-content-type-options"] == "nosniff"

        login = await client.post("/v1/auth/token", json=ADMIN, headers={"Origin": ORIGIN})
        assert login.headers["access-control-allow-origin"] == ORIGIN
        methods = set(login.headers["access-control-allow-methods"].split(", "))
        assert methods == {"GET", "POST", "PATCH", "DELETE"}
        assert "retry-after" in login.headers["access-control-expose-headers"].lower()

        evil = "https://dash.example.com.evil.test"
        other = await client.post("/v1/auth/token", json=ADMIN, headers={"Origin": evil})
        assert "access-control-allow-origin" not in other.headers
        refused = await client.options(
            "/v1/players", headers={"Origin": evil, "Access-Control-Request-Method": "GET"}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        odd_header = await client.options(
            "/v1/players", headers={**headers, "Access-Control-Request-Headers": "X-Custom"}
        )
        assert odd_header.status_code == 400


def test_cors_allows_every_method_the_api_routes_use(settings):
    used = {
        method
        for route in create_app(settings).routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
    }
    assert used - {"HEAD", "OPTIONS"} == set(CORS_METHODS)


# --- security headers --------------------------------------------------------------------------


def _assert_security_headers(response, *, csp: str = JSON_CSP, no_store: bool = True) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff", response.url
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"] == csp
    assert (headers.get("cache-control") == "no-store") is no_store, response.url
    assert "strict-transport-security" not in headers


async def test_every_kind_of_answer_has_the_security_headers(client, auth):
    responses = {
        200: await client.get("/v1/players", headers=auth),
        401: await client.get("/v1/players"),
        404: await client.get("/v1/players/zezima", headers=auth),
        405: await client.put("/v1/players", headers=auth),
        413: await client.post("/v1/auth/token", json={"password": "x" * 70_000}),
    }
    for _ in range(5):
        await client.post("/v1/auth/token", json=WRONG)
    responses[429] = await client.post("/v1/auth/token", json=WRONG)
    for status, response in responses.items():
        assert response.status_code == status, response.text
        _assert_security_headers(response)
    for path in ("/health/live", "/health/ready"):
        _assert_security_headers(await client.get(path))
    unrouted = await client.get("/nowhere")
    assert unrouted.status_code == 404
    _assert_security_headers(unrouted, no_store=False)


async def test_the_schema_pages_keep_their_cdn_scripts_but_cannot_be_framed(client):
    schema = await client.get("/schema/openapi.json")
    _assert_security_headers(schema, no_store=False)
    for ui in ("/schema/swagger", "/schema/redoc", "/schema/elements"):
        page = await client.get(ui)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        # The page loads its UI from a CDN and runs inline scripts: no source list may block them.
        assert "https://cdn.jsdelivr.net/" in page.text or "https://unpkg.com/" in page.text
        assert "<script>" in page.text or "<script " in page.text
        _assert_security_headers(page, csp=HTML_CSP, no_store=False)
        assert "src" not in page.headers["content-security-policy"]


async def test_hsts_only_behind_https(settings, js, clock):
    settings = msgspec.structs.replace(settings, hsts=True)
    async with _client(settings, clock) as client:
        for response in (await client.get("/health/live"), await client.get("/nowhere")):
            assert response.headers["strict-transport-security"] == HSTS
