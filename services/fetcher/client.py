"""The hiscores over HTTP: one pooled httpx client, outcomes instead of exceptions."""

from __future__ import annotations

import httpx
import msgspec

from services.fetcher.hiscores import Hiscores, MalformedHiscores, parse_json
from shared.events import FetchOutcome
from shared.modes import GameMode, hiscores_path

USER_AGENT = "osrs-diff/0.1 (progress tracker; +https://github.com/osrs-diff/osrs-diff)"


class HiscoresAnswer(msgspec.Struct, frozen=True):
    """What one request produced: parsed hiscores, or the outcome and why."""

    outcome: FetchOutcome | None  # None when `hiscores` holds a payload
    http_status: int | None = None
    detail: str = ""
    hiscores: Hiscores | None = None
    retry_after: float | None = None


def new_http_client(
    *, max_connections: int = 16, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(10.0, connect=5.0),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
    )


class HiscoresClient:
    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http

    async def lookup(self, display_name: str, mode: GameMode) -> HiscoresAnswer:
        url = self.base_url + hiscores_path(mode)
        try:
            response = await self.http.get(url, params={"player": display_name})
        except httpx.TimeoutException as exc:
            return HiscoresAnswer(FetchOutcome.UNAVAILABLE, None, f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return HiscoresAnswer(FetchOutcome.UNAVAILABLE, None, f"transport error: {exc!r}"[:300])
        return classify(response)


def classify(response: httpx.Response) -> HiscoresAnswer:
    """Map an HTTP answer to an outcome. The body of a 404 is never read: Jagex answers
    unknown, banned and unranked players alike with an HTML 404."""
    status = response.status_code
    if status == 404:
        return HiscoresAnswer(FetchOutcome.NOT_FOUND, status, "not on this hiscores board")
    if status == 429:
        return HiscoresAnswer(
            FetchOutcome.RATE_LIMITED,
            status,
            "rate limited by the hiscores",
            retry_after=_retry_after(response),
        )
    if status != 200:
        return HiscoresAnswer(FetchOutcome.UNAVAILABLE, status, f"HTTP {status} from the hiscores")
    content_type = response.headers.get("content-type", "")
    body = response.content
    if "html" in content_type or body.lstrip()[:1] == b"<":
        # Jagex has answered outages with an HTML page and status 200.
        return HiscoresAnswer(
            FetchOutcome.UNAVAILABLE, status, "HTML page instead of data (outage)"
        )
    try:
        return HiscoresAnswer(None, status, hiscores=parse_json(body))
    except MalformedHiscores as exc:
        return HiscoresAnswer(FetchOutcome.INVALID, status, str(exc)[:500])


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None
