"""Security headers on every response, and CORS: closed unless origins are configured."""

from __future__ import annotations

from litestar.config.cors import CORSConfig
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
        b"x-content-type-options": b"nosniff",
        b"x-frame-options": b"DENY",
        b"referrer-policy": b"no-referrer",
    }
    if settings.hsts:
        always[b"strict-transport-security"] = HSTS.encode()
    json_csp, html_csp = JSON_CSP.encode(), HTML_CSP.encode()

    # A coroutine: Litestar runs a plain function hook in a worker thread, for every message.
    # It runs for every answer, the load shedder's 503s included: one pass over the headers
    # (Litestar's MutableScopeHeaders decodes and scans them once per header set).
    async def add_security_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = message["headers"] = list(message.get("headers") or ())
        present = {bytes(name).lower(): value for name, value in headers}
        for name, value in always.items():
            if name not in present:
                headers.append((name, value))
        if b"content-security-policy" not in present:
            html = bytes(present.get(b"content-type", b"")).startswith(b"text/html")
            headers.append((b"content-security-policy", html_csp if html else json_csp))
        if b"cache-control" not in present and scope["path"].split("/", 2)[1] in NO_STORE_ROOTS:
            headers.append((b"cache-control", b"no-store"))

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
