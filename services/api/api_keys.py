"""/v1/auth/api-keys: long-lived keys for bots, shown once, stored as their sha256 digest. A key
acts as its owner with its own role, never above the owner's role of now."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from services.api import examples, queries
from services.api.schemas import ApiKey, ApiKeyList, CreatedApiKey, NewApiKey
from services.api.tokens import Credential, Principal, digest, new_api_key, role_rank

log = logging.getLogger("osrs.api.auth")

PREFIX_LENGTH = 12  # "osrs_" and 7 characters of the 43 random ones


class ApiKeysController(Controller):
    path = "/v1/auth/api-keys"
    tags = ["auth"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create an API key for a bot",
        description=(
            "Needs a login's access token. `role` is at most the caller's own (the caller's when "
            "not given). The key is in the answer this once; send it as `X-API-Key: osrs_...` or "
            "`Authorization: Bearer osrs_...`."
        ),
        responses=examples.ok(CreatedApiKey, examples.CREATED_API_KEY, HTTP_201_CREATED),
    )
    async def create_api_key(
        self, data: JSONBody[NewApiKey], request: Request[Principal, Credential, Any], state: State
    ) -> CreatedApiKey:
        if request.auth.kind != "access_token":
            raise PermissionDeniedException("API keys are created with a login's access token")
        role = data.role or request.user.role
        if role_rank(role) > role_rank(request.user.role):
            raise PermissionDeniedException(f"a {request.user.role} cannot create a {role} key")
        key = new_api_key()
        params = {
            "user_id": request.auth.user_id,
            "name": data.name,
            "role": role,
            "key_hash": digest(key),
            "prefix": key[:PREFIX_LENGTH],
        }
        async with state.pool.connection() as conn:
            row = await (await conn.execute(queries.CREATE_API_KEY, params)).fetchone()
        log.info("api_key_created id=%s username=%s role=%s", row[0], request.user.username, role)
        return CreatedApiKey(*row, key=key)

    @get(
        "/",
        summary="List API keys, without their secret",
        description="The caller's keys, revoked ones included; `?all=true` (admins): everyone's.",
        responses=examples.ok(ApiKeyList, examples.API_KEYS),
    )
    async def list_api_keys(
        self,
        request: Request[Principal, Credential, Any],
        state: State,
        all_keys: Annotated[
            bool, QueryParameter(name="all", description="every user's keys (admins only)")
        ] = False,
    ) -> ApiKeyList:
        if all_keys and request.user.role != "admin":
            raise PermissionDeniedException("only admins list every user's keys")
        params = {"user_id": None if all_keys else request.auth.user_id}
        async with state.pool.connection() as conn:
            rows = await (await conn.execute(queries.LIST_API_KEYS, params)).fetchall()
        return ApiKeyList(items=[ApiKey(*row) for row in rows])

    @delete(
        "/{key_id:int}",
        status_code=200,
        summary="Revoke an API key",
        description="Its owner or an admin; it is refused from the next request.",
        responses=examples.ok(ApiKey, examples.REVOKED_API_KEY),
    )
    async def revoke_api_key(
        self,
        key_id: Annotated[int, PathParameter(ge=1, le=2**63 - 1)],
        request: Request[Principal, Credential, Any],
        state: State,
    ) -> ApiKey:
        owner = None if request.user.role == "admin" else request.auth.user_id
        async with state.pool.connection() as conn:
            params = {"id": key_id, "user_id": owner}
            row = await (await conn.execute(queries.REVOKE_API_KEY, params)).fetchone()
        if row is None:
            raise NotFoundException(f"no API key {key_id}")
        log.info("api_key_revoked id=%s by=%s", key_id, request.user.username)
        return ApiKey(*row)
