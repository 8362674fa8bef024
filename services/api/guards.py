"""Who may do what: any authenticated principal reads; users and admins change players; only
admins manage users and read the system's figures. Authentication runs before these. They are
coroutines: Litestar would run a plain function in a thread."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

WRITER_ROLES = frozenset({"admin", "user"})


async def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if _role(connection) != "admin":
        raise PermissionDeniedException("admins only")


async def can_write(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    role = _role(connection)
    if role not in WRITER_ROLES:
        raise PermissionDeniedException(f"the role {role!r} may only read")


def _role(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The principal's role. Guards go on route handlers, not controllers: a controller's guards
    also run on the OPTIONS answer, which authentication skips; without a principal they refuse."""
    user = connection.scope.get("user")
    if user is None:
        raise NotAuthorizedException("authentication required")
    return user.role
