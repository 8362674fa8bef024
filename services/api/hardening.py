"""Security headers on every response, and CORS: closed unless origins are configured."""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.types import BeforeMessageSendHookHandler, Message, Scope

from shared.settings import Settings

# The API answers JSON: it loads nothing and may be framed by nobody.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
# The /schema pages run inline scripts and load Swagger, ReDoc and Elements from a CDN: a CSP
# listing sources would break them whenever a UI or its CDN changes, so they only refuse framing.
HTML_CSP = "frame-ancestors 'none'"
HSTS = "max-age=31536000"
NO_STORE_ROOTS = frozenset({"v1", "health"})
CORS_METHODS = ["GET", "POST", "PATCH", "DELETE"]  # the methods the API routes use
CORS_HEADERS = ["Authorization", "Content-Type"]


def security_headers(settings: Settings) -> BeforeMessageSendHookHandler:
    """An app-wide `before_send` hook: it sees every response the app sends, unlike route
    middleware, which never runs for a 404, a 405 or a CORS preflight."""
    always = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    if settings.hsts:
        always["Strict-Transport-Security"] = HSTS

    # A coroutine: Litestar runs a plain function hook in a worker thread, for every message.
    async def add_security_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        message.setdefault("headers", [])
        headers = MutableScopeHeaders.from_message(message)
        for name, value in always.items():
            headers.setdefault(name, value)
        html = headers.get("content-type", "").startswith("text/html")
        headers.setdefault("Content-Security-Policy", HTML_CSP if html else JSON_CSP)
        if scope["path"].split("/", 2)[1] in NO_STORE_ROOTS:
            headers.setdefault("Cache-Control", "no-store")

    return add_security_headers


def cors_config(settings: Settings) -> CORSConfig | None:
    """None (no CORS headers at all) unless OSRS_CORS_ORIGINS lists origins."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_methods=list(CORS_METHODS),
        allow_headers=list(CORS_HEADERS),
        expose_headers=["Retry-After"],
        allow_credentials=False,  # bearer tokens, no cookies
    )
