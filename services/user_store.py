"""The users of the API, kept in Postgres: their rules and every change to them, shared by the
admin endpoints (/v1/users) and `osrs-diff users`. Password hashes never leave this module."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Literal, get_args

import msgspec
from psycopg import AsyncConnection, errors

from services.api.passwords import hash_password

Role = Literal["admin", "user"]
ROLES: tuple[str, ...] = get_args(Role)
MAX_USERNAME = 64
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# The login's rule (services.api.schemas.Username): a name with one of these cannot exist.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Every change that could take the last enabled admin away holds this lock (pg_advisory_xact_lock
# id) while it counts the admins: two admins demoting each other at once cannot both succeed.
_ADMINS_LOCK = 0x05C5D1AD


class User(msgspec.Struct, frozen=True):
    """A user as shown to admins: never the password hash."""

    username: str
    role: Role
    disabled: bool
    created_at: datetime


class UserError(Exception):
    """A change to the users was refused; the message says why."""


class InvalidUser(UserError):
    """A name, password or role that breaks the rules."""


class UnknownUser(UserError):
    pass


class UserExists(UserError):
    pass


class LastAdmin(UserError):
    pass


class SelfDeletion(UserError):
    pass


def check_new_username(name: str) -> str:
    """A name for a new user: 1-64 printable characters, no space at either end, no '/'."""
    _check_username(name)
    if not name.isprintable():
        raise InvalidUser("a username may hold only printable characters")
    if name != name.strip():
        raise InvalidUser("a username may not start or end with a space")
    # The name is a segment of /v1/users/{username}: these could never be addressed there.
    if "/" in name or name in (".", ".."):
        raise InvalidUser("a username may not hold '/' nor be '.' or '..'")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidUser(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidUser(f"a password has at most {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidUser(f"role must be one of {', '.join(ROLES)}")
    return role


def _check_username(name: str) -> None:
    """Any name a user could have; one that could not is refused before it reaches Postgres
    (which refuses NUL in text)."""
    if not 1 <= len(name) <= MAX_USERNAME:
        raise InvalidUser(f"a username has 1 to {MAX_USERNAME} characters")
    if _CONTROL.search(name):
        raise InvalidUser("a username may not hold control characters")


_COLUMNS = "username, role, disabled, created_at"

CREATE_USER = f"""
INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s) RETURNING {_COLUMNS}
"""

LIST_USERS = f"""
SELECT {_COLUMNS} FROM users
WHERE %(after)s::text IS NULL OR lower(username) > lower(%(after)s)
ORDER BY lower(username)
LIMIT %(limit)s
"""

USER_FOR_UPDATE = f"SELECT id, {_COLUMNS} FROM users WHERE lower(username) = lower(%s) FOR UPDATE"

LOCK_ADMINS = "SELECT pg_advisory_xact_lock(%s)"

ENABLED_ADMINS = "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled"

UPDATE_USER = f"""
UPDATE users SET
    password_hash = coalesce(%(password_hash)s, password_hash),
    role = coalesce(%(role)s, role),
    disabled = coalesce(%(disabled)s, disabled)
WHERE id = %(id)s
RETURNING {_COLUMNS}
"""

DELETE_USER = "DELETE FROM users WHERE id = %s"

# A new password ends every session: the refresh families, and the access tokens issued with
# them (API keys are separate credentials and stay).
END_SESSIONS = """
WITH ended AS (
    UPDATE refresh_tokens SET revoked_at = now()
    WHERE user_id = %(id)s AND revoked_at IS NULL AND expires_at > now()
    RETURNING access_jti, access_expires_at
)
INSERT INTO revoked_tokens (jti, user_id, expires_at)
SELECT access_jti, %(id)s, access_expires_at FROM ended WHERE access_expires_at > now()
ON CONFLICT (jti) DO NOTHING
"""


async def create_user(conn: AsyncConnection, username: str, password: str, role: str) -> User:
    check_new_username(username)
    check_password(password)
    check_role(role)
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        async with conn.transaction():
            cursor = await conn.execute(CREATE_USER, (username, password_hash, role))
            row = await cursor.fetchone()
    except errors.UniqueViolation:
        raise UserExists(f"a user named {username!r} exists already (names ignore case)") from None
    return User(*row)


async def list_users(
    conn: AsyncConnection, *, after: str | None = None, limit: int | None = None
) -> list[User]:
    """Users in name order (ignoring case), after the name `after`; every one without a limit."""
    if after is not None:
        _check_username(after)
    rows = await (await conn.execute(LIST_USERS, {"after": after, "limit": limit})).fetchall()
    return [User(*row) for row in rows]


async def change_user(
    conn: AsyncConnection,
    username: str,
    *,
    password: str | None = None,
    role: str | None = None,
    disabled: bool | None = None,
) -> User:
    """Set any of the password, role and disabled flag; a new password ends the user's
    sessions. The last enabled admin can be neither disabled nor demoted."""
    _check_username(username)
    password_hash = None
    if password is not None:
        password_hash = await asyncio.to_thread(hash_password, check_password(password))
    if role is not None:
        check_role(role)
    async with conn.transaction():
        target = await _locked(conn, username)
        if disabled or role == "user":
            await _keep_an_admin(conn, target, "disable" if disabled else "demote")
        params = {
            "id": target[0],
            "password_hash": password_hash,
            "role": role,
            "disabled": disabled,
        }
        row = await (await conn.execute(UPDATE_USER, params)).fetchone()
        if password_hash is not None:
            await conn.execute(END_SESSIONS, params)
    return User(*row)


async def delete_user(conn: AsyncConnection, username: str, *, by: str) -> None:
    """Delete a user, unless it is `by`, the admin asking, or the last enabled admin."""
    _check_username(username)
    async with conn.transaction():
        target = await _locked(conn, username)
        if target[1].lower() == by.lower():
            raise SelfDeletion("you cannot delete yourself: ask another admin")
        await _keep_an_admin(conn, target, "delete")
        await conn.execute(DELETE_USER, (target[0],))


async def _locked(conn: AsyncConnection, username: str) -> tuple:
    """(id, username, role, disabled, created_at) of a user, locked for the transaction, once
    no other change that could remove an admin is running."""
    await conn.execute(LOCK_ADMINS, (_ADMINS_LOCK,))
    row = await (await conn.execute(USER_FOR_UPDATE, (username,))).fetchone()
    if row is None:
        raise UnknownUser(f"no user named {username!r}")
    return row


async def _keep_an_admin(conn: AsyncConnection, target: tuple, verb: str) -> None:
    _, name, role, disabled, _ = target
    if role != "admin" or disabled:
        return
    (admins,) = await (await conn.execute(ENABLED_ADMINS)).fetchone()
    if admins <= 1:
        raise LastAdmin(
            f"cannot {verb} {name!r}: the last enabled admin (make another admin first)"
        )
