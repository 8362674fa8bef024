"""/v1/users: admins list, create, change and delete the users of the API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT, HTTP_409_CONFLICT

from services import user_store
from services.api import examples
from services.api.guards import admin_only
from services.api.schemas import Username
from services.user_store import MAX_PASSWORD, MIN_PASSWORD, Role, User

log = logging.getLogger("osrs.api.users")

NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=MIN_PASSWORD,
        max_length=MAX_PASSWORD,
        description=f"at least {MIN_PASSWORD} characters",
    ),
]


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[
        Username,
        msgspec.Meta(
            description=(
                "1-64 printable characters, no space at either end, no '/', not '.' or '..';"
                " unique ignoring case"
            )
        ),
    ]
    password: NewPassword
    role: Role = "user"


class ChangeUser(msgspec.Struct, forbid_unknown_fields=True):
    password: NewPassword | None = None
    role: Role | None = None
    disabled: Annotated[
        bool | None, msgspec.Meta(description="a disabled user is refused from the next request")
    ] = None


class UserPage(msgspec.Struct):
    items: list[User]
    next_cursor: str | None  # the last username of the page; null on the last page


class Conflict(ClientException):
    status_code = HTTP_409_CONFLICT


_STATUS = {
    user_store.InvalidUser: ValidationException,
    user_store.UnknownUser: NotFoundException,
    user_store.UserExists: Conflict,
    user_store.LastAdmin: Conflict,
    user_store.SelfDeletion: Conflict,
}


@contextmanager
def _refusals_as_http() -> Iterator[None]:
    try:
        yield
    except user_store.UserError as exc:
        raise _STATUS[type(exc)](str(exc)) from None


ALICE = {
    "username": "alice",
    "role": "user",
    "disabled": False,
    "created_at": "2026-10-03T09:12:44Z",
}
USER = examples.ResponseExample(summary="alice, who may track players", value=ALICE)
USER_PAGE = examples.ResponseExample(
    summary="The first page of two users, more to come",
    value={
        "items": [
            {**ALICE, "username": "admin", "role": "admin", "created_at": "2026-10-02T08:00:00Z"},
            ALICE,
        ],
        "next_cursor": "alice",
    },
)


class UsersController(Controller):
    path = "/v1/users"
    tags = ["users"]

    @get(
        "/",
        summary="List users, by name, with cursor pagination",
        description=(
            "Admins only. Users in name order, ignoring case. For the next page pass "
            "`next_cursor` as `cursor`; it is null on the last page. No password hash is shown."
        ),
        responses=examples.ok(UserPage, USER_PAGE),
        guards=[admin_only],
    )
    async def list_users(
        self,
        state: State,
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="users per page")] = 50,
        cursor: Annotated[
            str | None, QueryParameter(description="next_cursor of the previous page")
        ] = None,
    ) -> UserPage:
        with _refusals_as_http():
            async with state.pool.connection() as conn:
                users = await user_store.list_users(conn, after=cursor, limit=limit + 1)
        more = len(users) > limit
        items = users[:limit]
        return UserPage(items=items, next_cursor=items[-1].username if more else None)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create a user",
        description=(
            "Admins only. `role` is `user` (reads, tracks and changes players) or `admin` (also "
            "manages users and reads /v1/stats); `user` when not given. 409 when the name exists, "
            "in any case."
        ),
        responses=examples.ok(User, USER, HTTP_201_CREATED),
        guards=[admin_only],
    )
    async def create_user(self, data: JSONBody[NewUser], request: Request, state: State) -> User:
        with _refusals_as_http():
            async with state.pool.connection() as conn:
                user = await user_store.create_user(conn, data.username, data.password, data.role)
        log.info(
            "user_created username=%r role=%s by=%r",
            user.username,
            user.role,
            request.user.username,
        )
        return user

    @patch(
        "/{username:str}",
        summary="Change a user's password, role or disabled flag",
        description=(
            "Admins only. Give any of `password`, `role` and `disabled`. A disabled user is "
            "refused from the next request on. The last enabled admin can be neither disabled "
            "nor demoted (409)."
        ),
        responses=examples.ok(User, USER),
        guards=[admin_only],
    )
    async def change_user(
        self, username: FromPath[str], data: JSONBody[ChangeUser], request: Request, state: State
    ) -> User:
        if data.password is None and data.role is None and data.disabled is None:
            raise ValidationException("give password, role, disabled or several")
        with _refusals_as_http():
            async with state.pool.connection() as conn:
                user = await user_store.change_user(
                    conn, username, password=data.password, role=data.role, disabled=data.disabled
                )
        log.info(
            "user_changed username=%r password=%s role=%s disabled=%s by=%r",
            user.username,
            "changed" if data.password is not None else "kept",
            user.role,
            user.disabled,
            request.user.username,
        )
        return user

    @delete(
        "/{username:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a user",
        description=(
            "Admins only. An admin cannot delete themselves, and the last enabled admin cannot "
            "be deleted (409)."
        ),
        guards=[admin_only],
    )
    async def delete_user(self, username: FromPath[str], request: Request, state: State) -> None:
        with _refusals_as_http():
            async with state.pool.connection() as conn:
                await user_store.delete_user(conn, username, by=request.user.username)
        log.info("user_deleted username=%r by=%r", username, request.user.username)
