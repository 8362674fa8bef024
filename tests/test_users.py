"""Users and roles: `osrs-diff users`, the admin endpoints /v1/users, and who may do what."""

import asyncio
import io
import logging
from types import SimpleNamespace
from urllib.parse import quote

import msgspec
import psycopg
import pytest
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.testing import AsyncTestClient

from services import cli, user_store
from services.api import users as users_api
from services.api.app import create_app
from services.api.guards import admin_only, can_write
from services.api.passwords import verify_password
from shared.settings import get_settings

ADMIN = ("admin", "correct horse")  # from the settings fixture: created when the API starts


@pytest.fixture
async def client(settings, js):
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


async def login(client, username: str, password: str) -> dict[str, str]:
    response = await client.post(
        "/v1/auth/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def admin(client):
    return await login(client, *ADMIN)


async def add_user(client, admin, username, role="user", password="long enough") -> dict:
    response = await client.post(
        "/v1/users", json={"username": username, "password": password, "role": role}, headers=admin
    )
    assert response.status_code == 201, response.text
    return await login(client, username, password)


def hash_of(database_url: str, username: str) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT password_hash FROM users WHERE lower(username) = lower(%s)", (username,)
        ).fetchone()
    return row[0] if row else None


# --- osrs-diff users -------------------------------------------------------------------------


@pytest.fixture
def osrs_diff(monkeypatch, capsys, database_url):
    """Run `osrs-diff ARGS` in-process against the test database: (exit status, stdout, stderr)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() points the root logger at stderr

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        try:
            status = cli.main(list(args))
        except SystemExit as exc:  # argparse: usage errors
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err

    yield run
    root.handlers[:], root.level = handlers, level
    get_settings.cache_clear()


def test_cli_creates_lists_and_changes_users(osrs_diff, database_url):
    status, out, _ = osrs_diff("users", "create", "Zoë", "--password-stdin", stdin="long enough\n")
    assert (status, out.strip()) == (0, "created user 'Zoë'")
    assert verify_password("long enough", hash_of(database_url, "zoë"))
    status, _, _ = osrs_diff(
        "users", "create", "root", "--role", "admin", "--password-stdin", stdin="rootroot\r\n"
    )
    assert status == 0 and verify_password("rootroot", hash_of(database_url, "root"))

    assert osrs_diff("users", "set-role", "ZOË", "admin")[:2] == (0, "'Zoë' is now admin\n")
    assert osrs_diff("users", "disable", "zoë")[:2] == (0, "disabled 'Zoë'\n")
    status, out, _ = osrs_diff("users", "list")
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["USERNAME", "ROLE", "STATUS", "CREATED", "(UTC)"]
    assert [line.split()[:3] for line in lines[1:3]] == [
        ["root", "admin", "enabled"],
        ["Zoë", "admin", "disabled"],
    ]
    assert lines[-1] == "2 users" and "scrypt" not in out
    assert osrs_diff("users", "enable", "Zoë")[:2] == (0, "enabled 'Zoë'\n")

    status, out, _ = osrs_diff(
        "users", "set-password", "root", "--password-stdin", stdin="new pw 1"
    )
    assert (status, out) == (0, "changed the password of 'root'\n")
    assert verify_password("new pw 1", hash_of(database_url, "root"))


def test_cli_asks_the_password_twice_at_a_prompt(osrs_diff, monkeypatch, database_url):
    answers = iter(["first try", "first typo", "second try", "second try"])
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or next(answers))
    status, _, err = osrs_diff("users", "create", "bob")
    assert status == 2 and "the two passwords differ" in err
    assert hash_of(database_url, "bob") is None
    assert osrs_diff("users", "create", "bob")[0] == 0
    assert verify_password("second try", hash_of(database_url, "bob"))
    assert "at least 8 characters" in prompts[0]


def test_cli_without_a_password_to_read_is_a_usage_error(osrs_diff, monkeypatch):
    def no_terminal(prompt):
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_terminal)
    status, _, err = osrs_diff("users", "create", "bob")
    assert status == 2 and "--password-stdin" in err


@pytest.mark.parametrize(
    ("args", "stdin", "status", "message"),
    [
        (("create", "bob", "--password-stdin"), "short\n", 2, "at least 8 characters"),
        (("create", "bob", "--password-stdin"), "", 2, "at least 8 characters"),
        (("create", "x" * 65, "--password-stdin"), "long enough", 2, "1 to 64 characters"),
        (("create", "tab\there", "--password-stdin"), "long enough", 2, "control characters"),
        (("create", " bob", "--password-stdin"), "long enough", 2, "start or end with a space"),
        (("create", "a/b", "--password-stdin"), "long enough", 2, "may not hold '/'"),
        (("create", "bob", "--role", "root", "--password-stdin"), "long enough", 2, "invalid"),
        (("create", "bob", "--password", "long enough"), None, 2, "unrecognized arguments"),
        (("set-role", "bob", "boss"), None, 2, "invalid choice"),
        (("disable",), None, 2, "required: name"),
        ((), None, 2, "required: ACTION"),
        (("disable", "nobody"), None, 1, "no user named 'nobody'"),
        (("set-password", "nobody", "--password-stdin"), "long enough", 1, "no user named"),
        (("set-role", "Robert'); DROP TABLE users;--", "admin"), None, 1, "no user named"),
    ],
)
def test_cli_refusals_say_why_with_their_exit_status(osrs_diff, args, stdin, status, message):
    got, out, err = osrs_diff("users", *args, stdin=stdin)
    assert (got, out) == (status, "")
    assert message in err


def test_cli_refuses_a_taken_name_and_the_last_admin(osrs_diff):
    osrs_diff("users", "create", "Root", "--role", "admin", "--password-stdin", stdin="rootroot")
    status, _, err = osrs_diff("users", "create", "ROOT", "--password-stdin", stdin="long enough")
    assert status == 1 and "exists already" in err
    for args in (("set-role", "root", "user"), ("disable", "root")):
        status, _, err = osrs_diff("users", *args)
        assert status == 1 and "the last enabled admin" in err, args
    listed = osrs_diff("users", "list")[1].splitlines()
    assert [line.split()[:3] for line in listed[1:]] == [
        ["Root", "admin", "enabled"],
        ["1", "user"],
    ]


def test_cli_without_a_database_is_a_clear_failure(osrs_diff, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/osrs")
    get_settings.cache_clear()
    status, _, err = osrs_diff("users", "list")
    assert status == 1 and "cannot reach the database" in err


# --- /v1/users -----------------------------------------------------------------------------


async def test_an_admin_creates_lists_changes_and_deletes_users(client, admin, database_url):
    created = await client.post(
        "/v1/users", json={"username": "Alice", "password": "long enough"}, headers=admin
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"username", "role", "disabled", "created_at"}
    assert (body["username"], body["role"], body["disabled"]) == ("Alice", "user", False)

    changed = await client.patch(
        "/v1/users/ALICE", json={"role": "admin", "password": "another one"}, headers=admin
    )
    assert changed.status_code == 200 and changed.json()["role"] == "admin"
    assert verify_password("another one", hash_of(database_url, "alice"))
    await login(client, "alice", "another one")

    listed = (await client.get("/v1/users", headers=admin)).json()
    assert [(u["username"], u["role"]) for u in listed["items"]] == [
        ("admin", "admin"),
        ("Alice", "admin"),
    ]
    assert listed["next_cursor"] is None

    deleted = await client.delete("/v1/users/alice", headers=admin)
    assert deleted.status_code == 204 and deleted.content == b""
    assert hash_of(database_url, "alice") is None
    for method in ("PATCH", "DELETE"):
        response = await client.request(
            method, "/v1/users/alice", json={"disabled": True}, headers=admin
        )
        assert response.status_code == 404 and response.json()["detail"] == "no user named 'alice'"


async def test_no_answer_shows_a_password_hash(client, admin):
    await add_user(client, admin, "bob")
    answers = [
        await client.get("/v1/users", headers=admin),
        await client.patch("/v1/users/bob", json={"password": "changed pw"}, headers=admin),
        await client.get("/schema/openapi.json"),
    ]
    for response in answers:
        assert "password_hash" not in response.text and "scrypt" not in response.text


async def test_names_are_unique_ignoring_case(client, admin):
    await add_user(client, admin, "Alice")
    for name in ("alice", "ALICE", "Admin"):
        response = await client.post(
            "/v1/users", json={"username": name, "password": "long enough"}, headers=admin
        )
        assert response.status_code == 409, name
        assert "exists already" in response.json()["detail"]


async def test_users_are_listed_by_name_in_pages(client, admin):
    for name in ("dave", "Carol", "bob", "Eve"):
        await add_user(client, admin, name)
    seen, cursor = [], None
    while True:
        query = "/v1/users?limit=2" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = (await client.get(query, headers=admin)).json()
        seen.append([u["username"] for u in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [["admin", "bob"], ["Carol", "dave"], ["Eve"]]
    for query in ("limit=0", "limit=101", "cursor=%00", "cursor=" + "x" * 65):
        response = await client.get(f"/v1/users?{query}", headers=admin)
        assert response.status_code == 400, query


@pytest.mark.parametrize(
    "name",
    ["Robert'); DROP TABLE users;--", "Zoë 管理者 🐉", "%_\\", "?x#y", "...", "x" * 64, "a b"],
)
async def test_any_printable_name_is_kept_as_given(client, admin, name):
    await add_user(client, admin, name)
    path = f"/v1/users/{quote(name, safe='')}"
    response = await client.patch(path, json={"role": "admin"}, headers=admin)
    assert response.status_code == 200 and response.json()["username"] == name
    assert (await client.delete(path, headers=admin)).status_code == 204


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"username": "", "password": "long enough"}, "length >= 1"),
        ({"username": "x" * 65, "password": "long enough"}, "length <= 64"),
        ({"username": "a\u0000b", "password": "long enough"}, "regex"),
        ({"username": "new\nline", "password": "long enough"}, "regex"),
        ({"username": "zero\u200bwidth", "password": "long enough"}, "printable"),
        ({"username": "\u00a0nbsp", "password": "long enough"}, "printable"),
        ({"username": "trailing ", "password": "long enough"}, "start or end with a space"),
        ({"username": "a/b", "password": "long enough"}, "'/'"),
        ({"username": "..", "password": "long enough"}, "'..'"),
        ({"username": "bob", "password": "short"}, "length >= 8"),
        ({"username": "bob", "password": "x" * 1025}, "length <= 1024"),
        ({"username": "bob", "password": "long enough", "role": "root"}, "Invalid enum value"),
        ({"username": "bob", "password": "long enough", "is_admin": True}, "is_admin"),
        ({"username": "bob"}, "password"),
        ({"username": 7, "password": "long enough"}, "str"),
    ],
)
async def test_an_invalid_new_user_is_a_400_that_says_why(client, admin, body, message):
    response = await client.post("/v1/users", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert message in response.text
    listed = (await client.get("/v1/users", headers=admin)).json()
    assert [u["username"] for u in listed["items"]] == ["admin"]


async def test_impossible_names_in_the_path_are_400_and_unknown_ones_404(client, admin):
    for path, status in [
        ("/v1/users/" + "x" * 65, 400),
        ("/v1/users/a%00b", 400),
        ("/v1/users/a%0Ab", 400),
        ("/v1/users/Robert'%29%3B%20DROP%20TABLE%20users%3B--", 404),
        ("/v1/users/%E2%80%8B", 404),
    ]:
        for method in ("PATCH", "DELETE"):
            response = await client.request(method, path, json={"disabled": True}, headers=admin)
            assert response.status_code == status, (method, path, response.text)


async def test_a_change_needs_something_to_change(client, admin):
    await add_user(client, admin, "bob")
    for body in ({}, {"role": None}, {"role": "root"}, {"password": "short"}, {"name": "x"}):
        response = await client.patch("/v1/users/bob", json=body, headers=admin)
        assert response.status_code == 400, body


# --- who may do what --------------------------------------------------------------------------


async def test_a_user_reads_and_changes_players_but_nothing_else(client, admin, database_url):
    user = await add_user(client, admin, "bob")
    assert (await client.get("/v1/players", headers=user)).status_code == 200
    tracked = await client.post("/v1/players", json={"name": "Lynx Titan"}, headers=user)
    assert tracked.status_code == 202, tracked.text
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
            " VALUES ('zezima', 'Zezima', 'regular', true, 3600, now())"
        )
    assert (await client.post("/v1/players/zezima/refresh", headers=user)).status_code == 202
    changed = await client.patch("/v1/players/zezima", json={"interval_s": 600}, headers=user)
    assert changed.status_code == 202
    assert (await client.delete("/v1/players/zezima", headers=user)).status_code == 202

    for method, path in [
        ("GET", "/v1/users"),
        ("POST", "/v1/users"),
        ("PATCH", "/v1/users/admin"),
        ("DELETE", "/v1/users/admin"),
        ("PATCH", "/v1/users/bob"),
        ("GET", "/v1/stats"),
    ]:
        body = {"username": "eve", "password": "long enough", "role": "admin"}
        if method == "PATCH":
            body = {"role": "admin"}
        response = await client.request(method, path, json=body, headers=user)
        assert response.status_code == 403, (method, path)
        assert response.json()["detail"] == "admins only"
    assert (await client.get("/v1/stats", headers=admin)).status_code == 200
    assert (await client.get("/v1/users/x", headers=user)).status_code in (403, 404, 405)


@pytest.mark.parametrize(
    ("role", "reads_stats", "writes"),
    [("admin", True, True), ("user", False, True), ("viewer", False, False)],
)
async def test_the_guards_go_by_role(role, reads_stats, writes):
    principal = SimpleNamespace(username="someone", role=role)
    connection = SimpleNamespace(scope={"user": principal})
    for guard, allowed in ((admin_only, reads_stats), (can_write, writes)):
        if allowed:
            await guard(connection, None)
        else:
            with pytest.raises(PermissionDeniedException):
                await guard(connection, None)


async def test_the_guards_refuse_without_a_principal():
    for guard in (admin_only, can_write):
        with pytest.raises(NotAuthorizedException):
            await guard(SimpleNamespace(scope={}), None)


async def test_options_needs_no_principal(client):
    for path in ("/v1/users", "/v1/users/admin", "/v1/stats", "/v1/players/zezima"):
        assert (await client.options(path)).status_code == 204, path


async def test_a_disabled_user_can_no_longer_log_in(client, admin):
    await add_user(client, admin, "bob")
    patched = await client.patch("/v1/users/bob", json={"disabled": True}, headers=admin)
    assert patched.status_code == 200 and patched.json()["disabled"] is True
    refused = await client.post(
        "/v1/auth/token", json={"username": "bob", "password": "long enough"}
    )
    assert refused.status_code == 401
    await client.patch("/v1/users/bob", json={"disabled": False}, headers=admin)
    await login(client, "bob", "long enough")


async def test_a_disabled_user_loses_access_on_the_next_request(client, admin):
    user = await add_user(client, admin, "bob")
    assert (await client.get("/v1/players", headers=user)).status_code == 200
    await client.patch("/v1/users/bob", json={"disabled": True}, headers=admin)
    assert (await client.get("/v1/players", headers=user)).status_code == 401


# --- the last admin -----------------------------------------------------------------------------


async def test_the_last_enabled_admin_stays(client, admin):
    for body in ({"disabled": True}, {"role": "user"}):
        response = await client.patch("/v1/users/admin", json=body, headers=admin)
        assert response.status_code == 409, body
        assert "the last enabled admin" in response.json()["detail"]
    itself = await client.delete("/v1/users/admin", headers=admin)
    assert itself.status_code == 409 and "cannot delete yourself" in itself.json()["detail"]

    # A disabled admin does not count.
    await add_user(client, admin, "root", role="admin")
    assert (
        await client.patch("/v1/users/root", json={"disabled": True}, headers=admin)
    ).status_code == 200
    response = await client.patch("/v1/users/admin", json={"role": "user"}, headers=admin)
    assert response.status_code == 409

    # With another enabled admin, either may step down, and one may delete the other.
    await client.patch("/v1/users/root", json={"disabled": False}, headers=admin)
    root = await login(client, "root", "long enough")
    demoted = await client.patch("/v1/users/admin", json={"role": "user"}, headers=admin)
    assert demoted.status_code == 200 and demoted.json()["role"] == "user"
    assert (await client.delete("/v1/users/admin", headers=root)).status_code == 204


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(client, admin, database_url):
    root = await add_user(client, admin, "root", role="admin")
    first, second = await asyncio.gather(
        client.patch("/v1/users/root", json={"role": "user"}, headers=admin),
        client.patch("/v1/users/admin", json={"role": "user"}, headers=root),
    )
    # The loser is refused by the last-admin rule, or already as a user (roles are read anew).
    assert sorted([first.status_code, second.status_code]) in ([200, 403], [200, 409])
    with psycopg.connect(database_url) as conn:
        (admins,) = conn.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()
    assert admins == 1


async def test_the_store_never_deletes_the_last_enabled_admin(client, admin, database_url):
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        with pytest.raises(user_store.LastAdmin):
            await user_store.delete_user(conn, "ADMIN", by="someone else")
        with pytest.raises(user_store.UnknownUser):
            await user_store.delete_user(conn, "nobody", by="someone else")


# --- the OpenAPI schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("struct", "example"),
    [(user_store.User, users_api.USER), (users_api.UserPage, users_api.USER_PAGE)],
)
def test_the_examples_decode_as_their_struct(struct, example):
    decoded = msgspec.json.decode(msgspec.json.encode(example.value), type=struct)
    assert msgspec.to_builtins(decoded) == example.value


async def test_the_user_routes_are_documented_for_admins(client):
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    operations = {**paths["/v1/users"], **paths["/v1/users/{username}"]}
    assert set(operations) == {"get", "post", "patch", "delete"}
    for method, operation in operations.items():
        assert operation["summary"] and "Admins only" in operation["description"], method


async def test_a_new_password_ends_the_users_sessions(client, admin):
    await add_user(client, admin, "bob")
    pair = (
        await client.post("/v1/auth/token", json={"username": "bob", "password": "long enough"})
    ).json()
    bob = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get("/v1/auth/me", headers=bob)).status_code == 200
    changed = await client.patch(
        "/v1/users/bob", json={"password": "another long one"}, headers=admin
    )
    assert changed.status_code == 200
    assert (await client.get("/v1/auth/me", headers=bob)).status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    assert (await login(client, "bob", "another long one"))["Authorization"]
