"""Access tokens, refresh tokens and API keys against real Postgres and NATS, through Litestar's
test client (lifespan included)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime
from pathlib import Path

import jwt
import msgspec
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from litestar.testing import AsyncTestClient

from services.api.app import create_app
from services.api.passwords import hash_password
from shared.settings import Settings, SettingsError

ADMIN = {"username": "admin", "password": "correct horse"}
ALICE = {"username": "alice", "password": "alice's password"}


@pytest.fixture
async def client(settings, js):
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


async def login(client, credentials=ADMIN) -> dict:
    response = await client.post("/v1/auth/token", json=credentials)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sql(database_url: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def user_id(database_url: str, username: str = "admin") -> int:
    return sql(database_url, "SELECT id FROM users WHERE username = %s", (username,))[0][0]


def add_alice(database_url: str) -> None:
    sql(
        database_url,
        "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, 'user')",
        (ALICE["username"], hash_password(ALICE["password"])),
    )


def claims(sub: int, **changes) -> dict:
    """Claims as the API issues them, changed; a change to None leaves the claim out."""
    now = int(time.time())
    issued = {
        "iss": "osrs-diff",
        "aud": "osrs-diff-api",
        "sub": str(sub),
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        "role": "admin",
    }
    return {k: v for k, v in (issued | changes).items() if v is not None}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def handmade(header: dict, payload: dict, sign=lambda signing_input: b"") -> str:
    """A JWT built by hand: what a forger sends, whatever a library would refuse to sign."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


async def status(client, headers, path="/v1/auth/me") -> int:
    return (await client.get(path, headers=headers)).status_code


# Logging in


async def test_login_with_json_gives_an_access_and_a_refresh_token(client, database_url):
    body = await login(client)
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    token = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(token) == {"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "role"}
    assert (token["iss"], token["aud"], token["role"]) == ("osrs-diff", "osrs-diff-api", "admin")
    assert token["sub"] == str(user_id(database_url))
    assert token["exp"] - token["iat"] == 900 and token["nbf"] == token["iat"]
    # Only a digest of the refresh token is stored.
    stored = sql(database_url, "SELECT token_hash FROM refresh_tokens")
    assert stored == [(hashlib.sha256(body["refresh_token"].encode()).digest(),)]


async def test_login_with_the_oauth2_password_form_gives_the_pair_too(client):
    response = await client.post("/v1/auth/token", data={**ADMIN, "grant_type": "password"})
    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] and await status(client, bearer(body["access_token"])) == 200


async def test_me_says_who_and_until_when(client):
    body = await login(client)
    me = (await client.get("/v1/auth/me", headers=bearer(body["access_token"]))).json()
    exp = jwt.decode(body["access_token"], options={"verify_signature": False})["exp"]
    assert me["username"] == "admin" and me["role"] == "admin" and me["kind"] == "access_token"
    assert datetime.fromisoformat(me["expires_at"]).timestamp() == exp


# Refreshing


async def test_a_refresh_rotates_the_pair_and_the_old_refresh_token_stops_working(client):
    first = await login(client)
    response = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert await status(client, bearer(second["access_token"])) == 200
    third = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


async def test_a_used_refresh_token_presented_again_revokes_its_whole_family(client):
    other_session = await login(client)
    first = await login(client)
    second = (
        await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "log in again" in replay.json()["detail"]
    # The newest refresh token of the family, and the access token issued with it, stop too.
    newest = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401
    assert await status(client, bearer(second["access_token"])) == 401
    # Another session of the same user is not touched.
    assert await status(client, bearer(other_session["access_token"])) == 200
    again = {"refresh_token": other_session["refresh_token"]}
    assert (await client.post("/v1/auth/refresh", json=again)).status_code == 200


@pytest.mark.parametrize("body", [{"refresh_token": "nope"}, {"refresh_token": ""}, {}])
async def test_an_unknown_or_malformed_refresh_token_is_refused(client, body):
    response = await client.post("/v1/auth/refresh", json=body)
    assert response.status_code in (400, 401) and response.json()["detail"]


async def test_an_expired_refresh_token_is_refused(client, database_url):
    body = await login(client)
    sql(database_url, "UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    response = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert response.status_code == 401 and "expired" in response.json()["detail"]


# Logging out


async def test_logout_revokes_the_access_token_and_the_refresh_family(client, database_url):
    body = await login(client)
    headers = bearer(body["access_token"])
    response = await client.post(
        "/v1/auth/logout", json={"refresh_token": body["refresh_token"]}, headers=headers
    )
    assert response.status_code == 200
    assert response.json() == {"access_token_revoked": True, "refresh_family_revoked": True}
    assert await status(client, headers) == 401
    refused = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refused.status_code == 401


async def test_logout_without_a_body_revokes_only_the_access_token(client):
    body = await login(client)
    response = await client.post("/v1/auth/logout", headers=bearer(body["access_token"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"access_token_revoked": True, "refresh_family_revoked": False}
    assert await status(client, bearer(body["access_token"])) == 401
    again = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 200


async def test_logout_cannot_revoke_another_users_session(client, database_url):
    add_alice(database_url)
    admin = await login(client)
    alice = await login(client, ALICE)
    response = await client.post(
        "/v1/auth/logout",
        json={"refresh_token": admin["refresh_token"]},
        headers=bearer(alice["access_token"]),
    )
    assert response.json()["refresh_family_revoked"] is False
    keep = await client.post("/v1/auth/refresh", json={"refresh_token": admin["refresh_token"]})
    assert keep.status_code == 200


async def test_revoked_access_tokens_past_their_expiry_are_pruned(client, database_url):
    stale = uuid.uuid4()
    sql(
        database_url,
        "INSERT INTO revoked_tokens (jti, user_id, expires_at)"
        " VALUES (%s, %s, now() - interval '1 hour')",
        (stale, user_id(database_url)),
    )
    body = await login(client)
    await client.post("/v1/auth/logout", headers=bearer(body["access_token"]))
    jti = uuid.UUID(jwt.decode(body["access_token"], options={"verify_signature": False})["jti"])
    assert sql(database_url, "SELECT jti FROM revoked_tokens") == [(jti,)]


# Tokens that are refused


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer " + "e" * 5000},
        {"Authorization": "Basic YWRtaW46eA=="},
        {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.%%%.%%%"},
        {"X-API-Key": "not-a-key"},
    ],
    ids=["missing", "empty", "garbled", "huge", "basic", "bad-base64", "x-api-key-not-a-key"],
)
async def test_missing_or_garbled_credentials_are_401_with_a_json_detail(client, headers):
    response = await client.get("/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] and response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        # Times relative to the test's run, not to collection: a long run would let them pass.
        ({"exp": lambda now: now - 60}, "the token has expired"),
        ({"nbf": lambda now: now + 60}, "the token is not valid yet"),
        ({"aud": "another-api"}, "invalid token"),
        ({"iss": "someone-else"}, "invalid token"),
        ({"jti": None}, "invalid token"),
        ({"role": None}, "invalid token"),
        ({"nbf": None}, "invalid token"),
        ({"jti": "not-a-uuid"}, "invalid token"),
        ({"sub": "admin"}, "invalid token"),
        ({"sub": "999999"}, "unknown user"),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-aud",
        "wrong-iss",
        "no-jti",
        "no-role",
        "no-nbf",
        "jti-not-uuid",
        "sub-not-id",
        "unknown-user",
    ],
)
async def test_a_well_signed_token_with_bad_claims_is_refused(
    client, settings, database_url, changes, detail
):
    now = int(time.time())
    changes = {k: v(now) if callable(v) else v for k, v in changes.items()}
    sub = changes.pop("sub", user_id(database_url))
    token = jwt.encode(claims(sub, **changes), settings.jwt_secret, algorithm="HS256")
    response = await client.get("/v1/auth/me", headers=bearer(token))
    assert response.status_code == 401 and response.json()["detail"] == detail


async def test_ten_seconds_of_clock_skew_are_tolerated(client, settings, database_url):
    now = int(time.time())
    for changes, expected in [({"exp": now - 5}, 200), ({"nbf": now + 5}, 200)]:
        token = jwt.encode(claims(user_id(database_url), **changes), settings.jwt_secret, "HS256")
        assert await status(client, bearer(token)) == expected


async def test_a_token_signed_with_another_secret_is_refused(client, database_url):
    token = jwt.encode(claims(user_id(database_url)), "y" * 32, algorithm="HS256")
    assert await status(client, bearer(token)) == 401


async def test_an_unsigned_token_is_refused(client, database_url):
    payload = claims(user_id(database_url))
    for alg in ("none", "None", "NONE"):
        token = handmade({"alg": alg, "typ": "JWT"}, payload)
        assert await status(client, bearer(token)) == 401, alg


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_a_token_of_another_hmac_algorithm_is_refused(client, settings, database_url):
    token = jwt.encode(claims(user_id(database_url)), settings.jwt_secret, algorithm="HS512")
    assert await status(client, bearer(token)) == 401


# A disabled user


async def test_a_disabled_user_loses_access_at_once(client, database_url):
    body = await login(client)
    key = (
        await client.post(
            "/v1/auth/api-keys", json={"name": "bot"}, headers=bearer(body["access_token"])
        )
    ).json()["key"]
    sql(database_url, "UPDATE users SET disabled = true WHERE username = 'admin'")
    response = await client.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert response.status_code == 401 and response.json()["detail"] == "this account is disabled"
    assert await status(client, {"X-API-Key": key}) == 401
    assert await status(client, bearer(key)) == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refresh.status_code == 401
    assert (await client.post("/v1/auth/token", json=ADMIN)).status_code == 401


async def test_a_deleted_user_loses_access_and_its_tokens_go_with_it(client, database_url):
    add_alice(database_url)
    body = await login(client, ALICE)
    sql(database_url, "DELETE FROM users WHERE username = 'alice'")
    assert await status(client, bearer(body["access_token"])) == 401
    assert sql(database_url, "SELECT count(*) FROM refresh_tokens") == [(0,)]


async def test_a_token_never_gives_more_than_the_users_role_of_now(client, database_url):
    add_alice(database_url)
    sql(database_url, "UPDATE users SET role = 'admin' WHERE username = 'alice'")
    body = await login(client, ALICE)
    sql(database_url, "UPDATE users SET role = 'user' WHERE username = 'alice'")
    me = (await client.get("/v1/auth/me", headers=bearer(body["access_token"]))).json()
    assert me["role"] == "user"


# API keys


async def test_an_api_key_is_created_shown_once_used_listed_and_revoked(client, database_url):
    headers = bearer((await login(client))["access_token"])
    response = await client.post("/v1/auth/api-keys", json={"name": "clan bot"}, headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["key"]
    assert key.startswith("osrs_") and len(key) > 40 and key.startswith(created["prefix"])
    assert (created["name"], created["role"], created["owner"]) == ("clan bot", "admin", "admin")
    assert created["last_used_at"] is None and created["revoked_at"] is None
    stored = sql(database_url, "SELECT key_hash FROM api_keys")
    assert stored == [(hashlib.sha256(key.encode()).digest(),)]

    for key_headers in ({"X-API-Key": key}, bearer(key)):
        me = (await client.get("/v1/auth/me", headers=key_headers)).json()
        assert me == {"username": "admin", "role": "admin", "kind": "api_key", "expires_at": None}
    assert (await client.get("/v1/players", headers={"X-API-Key": key})).status_code == 200

    listed = (await client.get("/v1/auth/api-keys", headers=headers)).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert listed[0]["last_used_at"] is not None

    revoked = await client.delete(f"/v1/auth/api-keys/{created['id']}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert await status(client, {"X-API-Key": key}) == 401
    assert (await client.delete("/v1/auth/api-keys/999", headers=headers)).status_code == 404
    too_big = await client.delete(f"/v1/auth/api-keys/{2**70}", headers=headers)
    assert too_big.status_code == 400


async def test_a_user_cannot_mint_an_admin_key_nor_see_or_revoke_others_keys(client, database_url):
    add_alice(database_url)
    admin = bearer((await login(client))["access_token"])
    alice = bearer((await login(client, ALICE))["access_token"])
    refused = await client.post(
        "/v1/auth/api-keys", json={"name": "root", "role": "admin"}, headers=alice
    )
    assert refused.status_code == 403
    own = await client.post("/v1/auth/api-keys", json={"name": "mine"}, headers=alice)
    assert own.status_code == 201 and own.json()["role"] == "user"
    admins = await client.post(
        "/v1/auth/api-keys", json={"name": "reader", "role": "user"}, headers=admin
    )
    assert admins.json()["role"] == "user"
    admin_key = admins.json()["key"]
    assert (await client.get("/v1/auth/me", headers={"X-API-Key": admin_key})).json()["role"] == (
        "user"
    )

    assert (await client.get("/v1/auth/api-keys?all=true", headers=alice)).status_code == 403
    mine = (await client.get("/v1/auth/api-keys", headers=alice)).json()["items"]
    assert [k["name"] for k in mine] == ["mine"]
    everyone = (await client.get("/v1/auth/api-keys?all=true", headers=admin)).json()["items"]
    assert [(k["name"], k["owner"]) for k in everyone] == [("mine", "alice"), ("reader", "admin")]

    other = await client.delete(f"/v1/auth/api-keys/{admins.json()['id']}", headers=alice)
    assert other.status_code == 404
    by_admin = await client.delete(f"/v1/auth/api-keys/{own.json()['id']}", headers=admin)
    assert by_admin.status_code == 200


async def test_an_api_key_neither_creates_keys_nor_logs_out(client):
    headers = bearer((await login(client))["access_token"])
    key = (await client.post("/v1/auth/api-keys", json={"name": "bot"}, headers=headers)).json()
    as_key = {"X-API-Key": key["key"]}
    created = await client.post("/v1/auth/api-keys", json={"name": "child"}, headers=as_key)
    assert created.status_code == 403
    assert (await client.post("/v1/auth/logout", headers=as_key)).status_code == 400
    assert (await client.get("/v1/auth/api-keys", headers=as_key)).status_code == 200


async def test_a_key_of_an_owner_demoted_since_acts_with_the_owners_role(client, database_url):
    add_alice(database_url)
    sql(database_url, "UPDATE users SET role = 'admin' WHERE username = 'alice'")
    alice = bearer((await login(client, ALICE))["access_token"])
    key = (await client.post("/v1/auth/api-keys", json={"name": "bot"}, headers=alice)).json()
    assert key["role"] == "admin"
    sql(database_url, "UPDATE users SET role = 'user' WHERE username = 'alice'")
    me = (await client.get("/v1/auth/me", headers={"X-API-Key": key["key"]})).json()
    assert me["role"] == "user"


@pytest.mark.parametrize(
    "body", [{}, {"name": ""}, {"name": "a\u0000b"}, {"name": "x", "role": "root"}, {"nam": "x"}]
)
async def test_a_malformed_api_key_request_is_400(client, body):
    headers = bearer((await login(client))["access_token"])
    assert (await client.post("/v1/auth/api-keys", json=body, headers=headers)).status_code == 400


async def test_sessions_and_api_keys_survive_a_rebuild_of_the_read_models(client, settings):
    from services.projector.rebuild import rebuild

    body = await login(client)
    headers = bearer(body["access_token"])
    key = (await client.post("/v1/auth/api-keys", json={"name": "bot"}, headers=headers)).json()
    await rebuild(settings)
    assert await status(client, headers) == 200
    assert await status(client, {"X-API-Key": key["key"]}) == 200
    again = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 200


# The OpenAPI schema


async def test_swaggers_authorize_button_uses_the_password_flow(client):
    schema = (await client.get("/schema/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerToken"]["flows"]["password"]["tokenUrl"] == "/v1/auth/token"
    assert (schemes["APIKey"]["in"], schemes["APIKey"]["name"]) == ("header", "X-API-Key")
    assert {"BearerToken": []} in schema["security"]


# Signing keys


def ed25519_keys(folder):
    return _write_keys(folder / "ed25519", ed25519.Ed25519PrivateKey.generate())


def rsa_keys(folder, bits=2048):
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _write_keys(folder / f"rsa{bits}", private)


def _write_keys(stem, private) -> tuple[str, str]:
    """(private key file, public key file), in PEM."""
    private_file, public_file = stem.with_suffix(".key"), stem.with_suffix(".pub")
    private_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_file.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(private_file), str(public_file)


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def with_keys(settings, private_file, public_file=None, algorithm=None) -> Settings:
    return msgspec.structs.replace(
        settings,
        jwt_secret=None,
        jwt_private_key_file=private_file,
        jwt_public_key_file=public_file,
        jwt_algorithm=algorithm,
    )


@pytest.mark.parametrize(("make_keys", "algorithm"), [(ed25519_keys, "EdDSA"), (rsa_keys, "RS256")])
async def test_the_api_signs_with_the_key_files_algorithm(
    settings, js, tmp_path, database_url, make_keys, algorithm
):
    private_file, public_file = make_keys(tmp_path)
    async with AsyncTestClient(app=create_app(with_keys(settings, private_file))) as client:
        body = await login(client)
        assert jwt.get_unverified_header(body["access_token"])["alg"] == algorithm
        assert await status(client, bearer(body["access_token"])) == 200
        again = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert again.status_code == 200
        # A token signed with the HS256 secret of the test settings is refused.
        hs = jwt.encode(claims(user_id(database_url)), settings.jwt_secret, algorithm="HS256")
        assert await status(client, bearer(hs)) == 401
        unsigned = handmade({"alg": "none"}, claims(user_id(database_url)))
        assert await status(client, bearer(unsigned)) == 401


async def test_a_token_signed_hs256_with_the_public_key_is_refused(
    settings, js, tmp_path, database_url
):
    """The HS/RS confusion: a verifier that let the token pick HMAC would check it with the
    public key, which anyone may hold, as the secret."""
    private_file, public_file = rsa_keys(tmp_path)
    public_pem = read(public_file)
    app = create_app(with_keys(settings, private_file, public_file, "RS256"))
    async with AsyncTestClient(app=app) as client:
        payload = claims(user_id(database_url))
        forged = handmade(
            {"alg": "HS256", "typ": "JWT"},
            payload,
            lambda signing_input: hmac.new(public_pem, signing_input, hashlib.sha256).digest(),
        )
        response = await client.get("/v1/auth/me", headers=bearer(forged))
        assert response.status_code == 401 and response.json()["detail"] == "invalid token"


def test_the_api_refuses_to_start_without_a_usable_signing_key(settings, tmp_path):
    def refused(**changes) -> str:
        with pytest.raises(SettingsError) as error:
            create_app(msgspec.structs.replace(settings, **changes))
        return str(error.value)

    assert "OSRS_JWT_SECRET" in refused(jwt_secret=None)
    assert "at least 32 bytes" in refused(jwt_secret="short")
    assert "needs OSRS_JWT_PRIVATE_KEY_FILE" in refused(jwt_algorithm="RS256")
    ed_private, ed_public = ed25519_keys(tmp_path)
    _, rsa_public = rsa_keys(tmp_path)
    assert "holds a key for EdDSA" in refused(
        jwt_private_key_file=ed_private, jwt_algorithm="RS256"
    )
    mismatch = refused(jwt_private_key_file=ed_private, jwt_public_key_file=rsa_public)
    assert "not the public half" in mismatch
    assert "needs OSRS_JWT_PRIVATE_KEY_FILE" in refused(jwt_public_key_file=ed_public)
    missing = refused(jwt_private_key_file=str(tmp_path / "absent.pem"))
    assert "OSRS_JWT_PRIVATE_KEY_FILE: cannot read" in missing
    assert "PEM" in refused(jwt_private_key_file=ed_public)
    small_private, _ = rsa_keys(tmp_path, bits=1024)
    assert "2048 bits" in refused(jwt_private_key_file=small_private)


def test_dev_mode_signs_with_a_random_secret(settings):
    create_app(msgspec.structs.replace(settings, jwt_secret=None, dev=True))


def test_token_settings_are_read_from_the_environment():
    s = Settings.from_env(
        {
            "OSRS_JWT_PRIVATE_KEY_FILE": "/keys/jwt.key",
            "OSRS_JWT_PUBLIC_KEY_FILE": "/keys/jwt.pub",
            "OSRS_JWT_ALGORITHM": "eddsa",
            "OSRS_JWT_ISSUER": "me",
            "OSRS_JWT_AUDIENCE": "them",
            "OSRS_REFRESH_TOKEN_TTL": "3600",
        }
    )
    assert (s.jwt_private_key_file, s.jwt_public_key_file) == ("/keys/jwt.key", "/keys/jwt.pub")
    assert (s.jwt_algorithm, s.jwt_issuer, s.jwt_audience) == ("EdDSA", "me", "them")
    assert s.refresh_token_ttl == 3600
    defaults = Settings.from_env({})
    assert (defaults.jwt_algorithm, defaults.jwt_issuer, defaults.jwt_audience) == (
        None,
        "osrs-diff",
        "osrs-diff-api",
    )
    assert defaults.refresh_token_ttl == 30 * 86_400 and defaults.access_token_ttl == 900
    with pytest.raises(SettingsError, match="OSRS_JWT_ALGORITHM"):
        Settings.from_env({"OSRS_JWT_ALGORITHM": "none"})
