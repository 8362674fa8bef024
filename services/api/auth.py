"""Login and JWT bearer auth. Every route needs a valid token except the OpenAPI schema and
the handlers marked `exclude_from_auth=True` (health checks, login)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Request, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, ValidationException
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token
from psycopg_pool import AsyncConnectionPool

from services.api import examples, queries
from services.api.passwords import DUMMY_HASH, hash_password, verify_password
from services.api.schemas import TokenRequest, TokenResponse
from shared.settings import Settings

log = logging.getLogger("osrs.api.auth")

TOKEN_PATH = "/v1/auth/token"
# Litestar searches these patterns anywhere in the path: anchor them, or a player named
# "schema" would skip authentication.
PUBLIC_PATTERNS = [r"^/schema(/|$)"]


class Principal(msgspec.Struct, frozen=True):
    username: str
    role: str


async def _principal_from_token(token: Token, connection: ASGIConnection[Any, Any, Any, Any]):
    return Principal(username=token.sub, role=str(token.extras.get("role", "user")))


def create_auth(settings: Settings) -> OAuth2PasswordBearerAuth[Principal, Token]:
    return OAuth2PasswordBearerAuth[Principal, Token](
        token_secret=settings.signing_secret(),
        token_url=TOKEN_PATH,
        retrieve_user_handler=_principal_from_token,
        default_token_expiration=timedelta(seconds=settings.access_token_ttl),
        exclude=PUBLIC_PATTERNS,
        description="Bearer token from POST /v1/auth/token",
    )


async def ensure_admin(pool: AsyncConnectionPool, settings: Settings) -> None:
    """Create the first admin from OSRS_ADMIN_USERNAME/OSRS_ADMIN_PASSWORD when no user exists."""
    if not (settings.admin_username and settings.admin_password):
        return
    async with pool.connection() as conn:
        (exists,) = await (await conn.execute(queries.ANY_USER)).fetchone()
        if exists:
            return
        password_hash = await asyncio.to_thread(hash_password, settings.admin_password)
        await conn.execute(queries.CREATE_USER, (settings.admin_username, password_hash, "admin"))
    log.info("admin_created username=%s", settings.admin_username)


async def _credentials(request: Request) -> TokenRequest:
    """JSON `{username, password}` or the OAuth2 password form (Swagger's Authorize button)."""
    content_type = request.headers.get("content-type", "")
    try:
        if (
            "application/x-www-form-urlencoded" in content_type
            or "multipart/form-data" in content_type
        ):
            form = await request.form()
            fields = {"username": form.get("username", ""), "password": form.get("password", "")}
            return msgspec.convert(fields, TokenRequest)
        return msgspec.json.decode(await request.body(), type=TokenRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValidationException(f"expected {{username, password}}: {exc}") from None


@post(
    TOKEN_PATH,
    status_code=200,
    summary="Exchange a username and password for an access token",
    exclude_from_auth=True,
    tags=["auth"],
    responses=examples.ok(TokenResponse, examples.TOKEN),
)
async def issue_token(request: Request, state: State) -> TokenResponse:
    creds = await _credentials(request)
    async with state.pool.connection() as conn:
        row = await (await conn.execute(queries.USER_BY_NAME, (creds.username,))).fetchone()
    stored = row[1] if row else DUMMY_HASH
    valid = await asyncio.to_thread(verify_password, creds.password, stored)
    if not row or not valid or row[3]:
        log.info("login_refused username=%r", creds.username[:32])
        raise NotAuthorizedException("invalid username or password")
    username, _, role, _ = row
    auth: OAuth2PasswordBearerAuth = state.auth
    ttl = int(auth.default_token_expiration.total_seconds())
    token = auth.create_token(identifier=username, token_extras={"role": role})
    return TokenResponse(access_token=token, token_type="bearer", expires_in=ttl)
