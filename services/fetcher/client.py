"""The hiscores over HTTP: one pooled httpx client, paced by the rate limiter and the circuit
breaker, retried with backoff, answering with outcomes instead of exceptions."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import quote_plus

import httpx
import msgspec
from prometheus_client import Histogram

from services.fetcher.hiscores import (
    Hiscores,
    MalformedHiscores,
    NotHiscoresData,
    parse_csv,
    parse_json,
)
from services.fetcher.resilience import CircuitBreaker, RateLimiter, RetryPolicy
from shared.events import FetchOutcome
from shared.modes import GameMode, hiscores_path

log = logging.getLogger("osrs.fetcher")

USER_AGENT = "osrs-diff/0.1 (progress tracker; +https://github.com/osrs-diff/osrs-diff)"
MAX_RETRY_AFTER_S = 3600.0  # a longer (or infinite) Retry-After is taken as an hour
TRANSIENT = frozenset({FetchOutcome.UNAVAILABLE, FetchOutcome.RATE_LIMITED})

HISCORES_SECONDS = Histogram(
    "osrs_hiscores_request_duration_seconds",
    "One request to the hiscores, until its body is read and parsed; outcome `data` or why not",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


class HiscoresAnswer(msgspec.Struct, frozen=True):
    """What one request produced: parsed hiscores, or the outcome and why."""

    outcome: FetchOutcome | None  # None when `hiscores` holds a payload
    http_status: int | None = None
    detail: str = ""
    hiscores: Hiscores | None = None
    retry_after: float | None = None
    outage: bool = False  # an outage page instead of data: trips the breaker at once
    garbled: bool = False  # a body that is not data at all: the other format may still work

    @property
    def transient(self) -> bool:
        return self.outcome in TRANSIENT


def new_http_client(
    *,
    max_connections: int = 16,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json, text/plain"},
        follow_redirects=False,
    )


class HiscoresClient:
    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        limiter: RateLimiter | None = None,
        breaker: CircuitBreaker | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.limiter = limiter or RateLimiter(rate=1000.0, concurrency=64)
        self.breaker = breaker or CircuitBreaker()
        self.policy = policy or RetryPolicy()

    async def lookup(self, display_name: str, mode: GameMode) -> HiscoresAnswer:
        """JSON first; a 404 asked twice; the CSV when the JSON body is garbled."""
        answer = await self._attempts(display_name, mode, "json")
        if answer.outcome is FetchOutcome.NOT_FOUND:
            # Spurious 404s have been reported during outages: confirm before believing it.
            await asyncio.sleep(self.policy.confirm_404_s)
            answer = await self._attempts(display_name, mode, "json")
        if answer.garbled:
            csv = await self._attempts(display_name, mode, "csv")
            if csv.hiscores is not None:
                return msgspec.structs.replace(csv, detail=f"from the CSV; JSON: {answer.detail}")
        return answer

    async def _attempts(self, display_name: str, mode: GameMode, fmt: str) -> HiscoresAnswer:
        for attempt in range(1, self.policy.attempts + 1):
            async with self.limiter:
                # The breaker is asked last, right before the request: a request that waited for
                # the limiter must not go out into an outage tripped meanwhile.
                probe = await self.breaker.acquire()
                try:
                    answer = await self._request(display_name, mode, fmt)
                except BaseException:
                    await self.breaker.abandon(probe)
                    raise
            await self.breaker.record(ok=not answer.transient, outage=answer.outage, probe=probe)
            if not answer.transient or attempt == self.policy.attempts:
                return answer
            delay = answer.retry_after
            if delay is None:
                delay = self.policy.backoff(attempt)
            elif delay > self.policy.max_retry_after_s:
                return answer  # too long to hold the command: it is redelivered later
            log.info(
                "retry name=%r attempt=%d in=%.2fs because=%s",
                display_name,
                attempt,
                delay,
                answer.detail,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _request(self, display_name: str, mode: GameMode, fmt: str) -> HiscoresAnswer:
        # The query string built here, as `params=` would (quote_plus): httpx's merging of
        # params into the URL was a tenth of a fetch's CPU.
        url = f"{self.base_url}{hiscores_path(mode, fmt)}?player={quote_plus(display_name)}"
        started = time.perf_counter()
        try:
            response = await self.http.get(url)
        except httpx.TimeoutException as exc:
            detail = f"timeout: {type(exc).__name__}"
            answer = HiscoresAnswer(FetchOutcome.UNAVAILABLE, None, detail)
        except httpx.HTTPError as exc:
            detail = f"transport error: {exc!r}"[:300]
            answer = HiscoresAnswer(FetchOutcome.UNAVAILABLE, None, detail)
        else:
            answer = classify(response, fmt)
        outcome = "data" if answer.outcome is None else answer.outcome.value
        HISCORES_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        return answer


def classify(response: httpx.Response, fmt: str = "json") -> HiscoresAnswer:
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
    body = response.content
    if body.lstrip()[:1] == b"<":
        # Jagex has answered outages with an HTML page and status 200.
        return HiscoresAnswer(
            FetchOutcome.UNAVAILABLE, status, "HTML page instead of data (outage)", outage=True
        )
    try:
        hiscores = parse_json(body) if fmt == "json" else parse_csv(body)
    except NotHiscoresData as exc:
        content_type = response.headers.get("content-type", "?")
        detail = f"{fmt} body is not data ({content_type}): {exc}"[:500]
        return HiscoresAnswer(FetchOutcome.UNAVAILABLE, status, detail, garbled=True)
    except MalformedHiscores as exc:
        return HiscoresAnswer(FetchOutcome.INVALID, status, str(exc)[:500])
    return HiscoresAnswer(None, status, hiscores=hiscores)


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        seconds = float(raw) if raw else None
    except ValueError:
        return None
    if seconds is None or seconds != seconds:  # absent, or NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
