"""Failed logins per username and per client address. After too many inside the window, the login
and refresh routes answer 429 before the handler runs: guessing stops, and no scrypt is paid.

The counts live in this process only: N replicas each keep their own (N × the limit in total).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

import msgspec
from litestar.connection import Request
from litestar.exceptions import TooManyRequestsException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import Settings

log = logging.getLogger("osrs.api.ratelimit")

# The routes that check a credential; a 401 from either counts as a failure.
THROTTLED_PATHS = frozenset({"/v1/auth/token", "/v1/auth/refresh"})
MAX_KEYS = 10_000  # per counter; the least recently failed key is forgotten first
MAX_USERNAME_CHARS = 128

Clock = Callable[[], float]


class FailureWindow:
    """Failure times per key inside a sliding window, for at most `max_keys` keys.

    Pure: the caller passes the time. Keys are kept in the order of their last failure, so
    expired keys are always at the front and are dropped as new failures arrive.
    """

    def __init__(self, limit: int, window: float, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, key: str, now: float) -> int:
        """Whole seconds until `key` may try again; 0 when it may now."""
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            return 0
        return max(1, math.ceil(times[0] + self.window - now))

    def add(self, key: str, now: float) -> None:
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(now)
        self._failures.move_to_end(key)
        self._evict(now)

    def discard(self, key: str, at: float) -> None:
        """Take back one failure added at `at` (the attempt did not fail after all)."""
        times = self._failures.get(key)
        if times and at in times:
            times.remove(at)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def _evict(self, now: float) -> None:
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if len(self._failures) <= self.max_keys and times and times[-1] > now - self.window:
                return
            del self._failures[key]


class Attempt(msgspec.Struct, frozen=True):
    username: str | None
    address: str
    at: float


class LoginThrottle:
    """Both counters, the clock and the client address rule; one per app."""

    def __init__(
        self,
        *,
        max_failures_per_username: int,
        max_failures_per_address: int,
        window: float,
        trusted_proxies: Iterable[str] = (),
        clock: Clock = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.by_username = FailureWindow(max_failures_per_username, window, max_keys)
        self.by_address = FailureWindow(max_failures_per_address, window, max_keys)
        self.trusted_proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = time.monotonic) -> LoginThrottle:
        return cls(
            max_failures_per_username=settings.login_max_failures,
            max_failures_per_address=settings.login_max_failures_per_address,
            window=settings.login_window,
            trusted_proxies=settings.trusted_proxies,
            clock=clock,
        )

    def refusal(self, username: str | None, address: str) -> TooManyRequestsException | None:
        """The 429 to answer, or None when this attempt may go ahead."""
        now = self.clock()
        if wait := self.by_address.retry_after(address, now):
            what = "from this address"
        elif username is not None and (wait := self.by_username.retry_after(username, now)):
            what = "for this username"
        else:
            return None
        return TooManyRequestsException(
            f"too many failed logins {what}; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )

    def start(self, username: str | None, address: str) -> Attempt:
        """Count the attempt as failed until it ends otherwise, so that attempts running at the
        same time cannot all slip under the limit."""
        attempt = Attempt(username, address, self.clock())
        self.by_address.add(address, attempt.at)
        if username is not None:
            self.by_username.add(username, attempt.at)
        return attempt

    def finish(self, attempt: Attempt, status: int | None) -> None:
        if status == 401:
            self._log_if_locked(attempt)
            return
        self.by_address.discard(attempt.address, attempt.at)
        if attempt.username is None:
            return
        if status is not None and status < 400:
            self.by_username.clear(attempt.username)
        else:
            self.by_username.discard(attempt.username, attempt.at)

    def client_address(self, scope: Scope) -> str:
        """The ASGI client host; behind a trusted proxy, the last X-Forwarded-For hop that is
        not one of the trusted proxies."""
        client = scope.get("client")
        host = client[0] if client else "unknown"
        if not self._trusted(host):
            return host
        hops = [
            hop.strip()
            for name, value in scope["headers"]
            if name.lower() == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else host

    def _trusted(self, host: str) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def _log_if_locked(self, attempt: Attempt) -> None:
        now = self.clock()
        if wait := self.by_address.retry_after(attempt.address, now):
            log.warning("login_locked address=%s retry_after=%s", attempt.address, wait)
        if attempt.username is not None and (
            wait := self.by_username.retry_after(attempt.username, now)
        ):
            log.warning("login_locked username=%r retry_after=%s", attempt.username[:32], wait)


class LoginThrottleMiddleware:
    """Refuses a locked username or address with 429 before the login or refresh handler runs,
    and counts the 401 answers."""

    def __init__(self, app: ASGIApp, throttle: LoginThrottle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("path_template") not in THROTTLED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        throttle = self.throttle
        address = throttle.client_address(scope)
        if refusal := throttle.refusal(None, address):
            raise refusal  # before reading the body: a locked address costs nothing
        username = await _username(Request(scope, receive))
        if refusal := throttle.refusal(username, address):
            raise refusal
        attempt = throttle.start(username, address)
        status: int | None = None

        async def send_and_see_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see_status)
        finally:
            throttle.finish(attempt, status)


async def _username(request: Request) -> str | None:
    """The username of a login body (JSON or form), normalised as the users table compares it.

    Litestar keeps the body (or the parsed form) in the connection state, so the handler reads
    it again without touching the stream. A body above the size limit raises 413 here.
    """
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type or "multipart/form-data" in content_type:
        value = (await request.form()).get("username")
    else:
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            return None
        value = body.get("username") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_USERNAME_CHARS].lower()
