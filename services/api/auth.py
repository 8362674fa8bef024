"""/v1/auth: log in, refresh, log out, who am I. Tokens and the middleware that checks them are
in services/api/tokens.py; API keys in services/api/api_keys.py."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotAuthorizedException, ValidationException
from litestar.params import JSONBody
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.api import examples, queries
from services.api.passwords import DUMMY_HASH, hash_password, verify_password
from services.api.schemas import (
    LoggedOut,
    LogoutRequest,
    Me,
    RefreshRequest,
    TokenRequest,
    TokenResponse,
)
from services.api.tokens import (
    AccessTokens,
    Credential,
    Principal,
    digest,
    new_refresh_token,
)
from shared.settings import Settings

__all__ = ["AuthController", "Principal", "ensure_admin"]

log = logging.getLogger("osrs.api.auth")


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


async def _issue_pair(
    conn: AsyncConnection, state: State, user_id: int, role: str, family_id: uuid.UUID
) -> TokenResponse:
    """An access token and the next refresh token of the family, stored in `conn`'s transaction."""
    tokens: AccessTokens = state.tokens
    settings: Settings = state.settings
    access = tokens.issue(user_id, role)
    refresh = new_refresh_token()
    params = {
        "token_hash": digest(refresh),
        "family_id": family_id,
        "user_id": user_id,
        "ttl_s": settings.refresh_token_ttl,
        "access_jti": access.jti,
        "access_expires_at": access.expires_at,
    }
    await conn.execute(queries.INSERT_REFRESH_TOKEN, params)
    return TokenResponse(
        access_token=access.token,
        refresh_token=refresh,
        token_type="bearer",
        expires_in=tokens.ttl_s,
    )


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @post(
        "/token",
        status_code=200,
        summary="Exchange a username and password for an access and a refresh token",
        description=(
            "JSON `{username, password}` or the OAuth2 password form. The access token lives "
            "`expires_in` seconds; the refresh token, good for one POST /v1/auth/refresh, starts "
            "a session."
        ),
        exclude_from_auth=True,
        responses=examples.ok(TokenResponse, examples.TOKEN),
    )
    async def issue_token(self, request: Request, state: State) -> TokenResponse:
        creds = await _credentials(request)
        async with state.pool.connection() as conn:
            row = await (await conn.execute(queries.USER_BY_NAME, (creds.username,))).fetchone()
        stored = row[2] if row else DUMMY_HASH
        valid = await asyncio.to_thread(verify_password, creds.password, stored)
        if not row or not valid or row[4]:
            log.info("login_refused username=%r", creds.username[:32])
            raise NotAuthorizedException("invalid username or password")
        user_id, username, _, role, _ = row
        async with state.pool.connection() as conn, conn.transaction():
            await conn.execute(queries.PRUNE_REFRESH_TOKENS, (user_id,))
            pair = await _issue_pair(conn, state, user_id, role, uuid.uuid4())
        log.info("login username=%s", username)
        return pair

    @post(
        "/refresh",
        status_code=200,
        summary="Exchange a refresh token for a new access and refresh token",
        description=(
            "Each refresh token works once. Presenting one already used revokes its whole "
            "session (every refresh token of the family and the access tokens issued with them): "
            "someone else may hold a copy. Log in again then."
        ),
        exclude_from_auth=True,
        responses=examples.ok(TokenResponse, examples.TOKEN),
    )
    async def refresh(self, data: JSONBody[RefreshRequest], state: State) -> TokenResponse:
        token_hash = digest(data.refresh_token)
        pair = None
        async with state.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(queries.REFRESH_TOKEN_FOR_UPDATE, (token_hash,))
            ).fetchone()
            refusal = _refresh_refusal(row)
            if refusal is None:
                family_id, user_id, *_, role, _ = row
                await conn.execute(queries.MARK_REFRESH_TOKEN_USED, (token_hash,))
                pair = await _issue_pair(conn, state, user_id, role, family_id)
            elif refusal == _REUSED:
                await conn.execute(queries.REVOKE_REFRESH_FAMILY, (row[0],))
        if pair is None:
            if refusal == _REUSED:
                log.warning("refresh_token_reused user_id=%s family=%s", row[1], row[0])
            raise NotAuthorizedException(refusal)
        return pair

    @post(
        "/logout",
        status_code=200,
        summary="Revoke this access token, and the session of a refresh token",
        description=(
            "Needs an access token (an API key is revoked with DELETE /v1/auth/api-keys/{id}). "
            "With `{refresh_token}`, every refresh token of its session is revoked too."
        ),
        responses=examples.ok(LoggedOut, examples.LOGGED_OUT),
    )
    async def logout(
        self,
        request: Request[Principal, Credential, Any],
        state: State,
        data: JSONBody[LogoutRequest | None] = None,
    ) -> LoggedOut:
        credential = request.auth
        if credential.kind != "access_token":
            raise ClientException("log out with an access token; revoke an API key with DELETE")
        family_revoked = False
        async with state.pool.connection() as conn, conn.transaction():
            await conn.execute(
                queries.REVOKE_ACCESS_TOKEN,
                (credential.jti, credential.user_id, credential.expires_at),
            )
            await conn.execute(queries.PRUNE_REVOKED_TOKENS)
            if data is not None and data.refresh_token is not None:
                params = (digest(data.refresh_token), credential.user_id)
                family = await (await conn.execute(queries.REFRESH_FAMILY_OF, params)).fetchone()
                if family is not None:
                    await conn.execute(queries.REVOKE_REFRESH_FAMILY, family)
                    family_revoked = True
        log.info("logout username=%s", request.user.username)
        return LoggedOut(access_token_revoked=True, refresh_family_revoked=family_revoked)

    @get(
        "/me",
        summary="Who this token or API key is, and until when",
        responses=examples.ok(Me, examples.ME),
    )
    async def me(self, request: Request[Principal, Credential, Any]) -> Me:
        return Me(
            username=request.user.username,
            role=request.user.role,
            kind=request.auth.kind,
            expires_at=request.auth.expires_at,
        )


_REUSED = "refresh token already used: its session is revoked, log in again"


def _refresh_refusal(row: tuple | None) -> str | None:
    """Why a refresh token row (REFRESH_TOKEN_FOR_UPDATE) is refused; None: it is good."""
    if row is None:
        return "invalid refresh token"
    _, _, used, revoked, expired, _, disabled = row
    if revoked:
        return "refresh token revoked: log in again"
    if used:
        return _REUSED
    if expired:
        return "refresh token expired: log in again"
    if disabled:
        return "this account is disabled"
    return None
