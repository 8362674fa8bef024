"""Typed settings, read once from the environment (names as in ARCHITECTURE.md)."""

from __future__ import annotations

import functools
import ipaddress
import os
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

import msgspec

DEFAULT_HISCORES_URL = "https://secure.runescape.com"
JWT_ALGORITHMS = ("HS256", "RS256", "EdDSA")
MIN_SECRET_BYTES = 32
LOG_FORMATS = ("auto", "json", "text")
CLOSE_RESERVE_S = 5.0  # of the shutdown grace: to ack, close connections and exit
# Where each worker serves /metrics and /ready unless OSRS_METRICS_PORT says otherwise.
DEFAULT_METRICS_PORTS = {"fetcher": 9101, "projector": 9102, "scheduler": 9103}


class SettingsError(ValueError):
    """A setting is missing or malformed."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/osrs"
    hiscores_url: str = DEFAULT_HISCORES_URL
    jwt_secret: str | None = None
    jwt_private_key_file: str | None = None
    jwt_public_key_file: str | None = None
    jwt_algorithm: str | None = None  # None: HS256, or the one the private key is for
    jwt_issuer: str = "osrs-diff"
    jwt_audience: str = "osrs-diff-api"
    admin_username: str | None = None
    admin_password: str | None = None
    fetch_interval: int = 3600
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dev: bool = False
    refresh_cooldown: int = 60
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 86_400
    log_level: str = "INFO"
    fetch_rate: float = 4.0
    fetch_concurrency: int = 8
    hiscores_timeout: float = 10.0
    progress_retention_days: int = 30  # how long OSRS_PROGRESS keeps progress events
    # API hardening (services/api/ratelimit.py, services/api/hardening.py)
    login_max_failures: int = 5  # per username
    login_max_failures_per_address: int = 20
    login_window: int = 300
    trusted_proxies: tuple[str, ...] = ()  # IPs or CIDRs whose X-Forwarded-For counts
    max_body_bytes: int = 64 * 1024
    cors_origins: tuple[str, ...] = ()  # none: no CORS headers at all
    hsts: bool = False  # the API is served over HTTPS only
    # API overload (services/api/shedding.py): requests beyond these get 503 + Retry-After at once
    api_max_inflight: int = 32  # requests being served per API process
    api_max_queued: int = 128  # requests waiting for one of those slots
    api_queue_timeout_s: float = 1.0  # the longest a request waits for a slot
    api_pool_timeout_s: float = 2.0  # the longest a request waits for a Postgres connection
    api_statement_timeout_s: float = 5.0  # the longest one API query may run
    # Operations (shared/telemetry.py, shared/logs.py, shared/service.py)
    log_format: str = "auto"  # auto: JSON lines unless stderr is a terminal
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: the worker's default port; 0: no metrics server
    shutdown_grace_s: float = 20.0  # from SIGTERM to exit, in-flight work included
    instance: str = ""  # this replica's stable name (a pod name): a restarted scheduler
    # replica takes its own lease back at once instead of waiting for it to run out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = _DEFAULTS
        return cls(
            nats_url=env.get("NATS_URL") or d.nats_url,
            database_url=env.get("DATABASE_URL") or d.database_url,
            hiscores_url=(env.get("OSRS_HISCORES_URL") or d.hiscores_url).rstrip("/"),
            jwt_secret=env.get("OSRS_JWT_SECRET") or None,
            jwt_private_key_file=env.get("OSRS_JWT_PRIVATE_KEY_FILE") or None,
            jwt_public_key_file=env.get("OSRS_JWT_PUBLIC_KEY_FILE") or None,
            jwt_algorithm=_jwt_algorithm(env),
            jwt_issuer=env.get("OSRS_JWT_ISSUER") or d.jwt_issuer,
            jwt_audience=env.get("OSRS_JWT_AUDIENCE") or d.jwt_audience,
            admin_username=env.get("OSRS_ADMIN_USERNAME") or None,
            admin_password=env.get("OSRS_ADMIN_PASSWORD") or None,
            fetch_interval=_int(env, "OSRS_FETCH_INTERVAL", d.fetch_interval, minimum=1),
            api_host=env.get("API_HOST") or d.api_host,
            api_port=_int(env, "API_PORT", d.api_port, minimum=0),
            dev=_flag(env, "OSRS_DEV"),
            refresh_cooldown=_int(env, "OSRS_REFRESH_COOLDOWN", d.refresh_cooldown, minimum=1),
            access_token_ttl=_int(env, "OSRS_ACCESS_TOKEN_TTL", d.access_token_ttl, minimum=1),
            refresh_token_ttl=_int(env, "OSRS_REFRESH_TOKEN_TTL", d.refresh_token_ttl, minimum=60),
            progress_retention_days=_int(
                env, "OSRS_PROGRESS_RETENTION_DAYS", d.progress_retention_days, minimum=1
            ),
            log_level=(env.get("OSRS_LOG_LEVEL") or d.log_level).upper(),
            fetch_rate=_float(env, "OSRS_FETCH_RATE", d.fetch_rate),
            fetch_concurrency=_int(env, "OSRS_FETCH_CONCURRENCY", d.fetch_concurrency, minimum=1),
            hiscores_timeout=_float(env, "OSRS_HISCORES_TIMEOUT", d.hiscores_timeout),
            login_max_failures=_int(
                env, "OSRS_LOGIN_MAX_FAILURES", d.login_max_failures, minimum=1
            ),
            login_max_failures_per_address=_int(
                env,
                "OSRS_LOGIN_MAX_FAILURES_PER_ADDRESS",
                d.login_max_failures_per_address,
                minimum=1,
            ),
            login_window=_int(env, "OSRS_LOGIN_WINDOW", d.login_window, minimum=1),
            trusted_proxies=_networks(env, "OSRS_TRUSTED_PROXIES"),
            max_body_bytes=_int(env, "OSRS_MAX_BODY_BYTES", d.max_body_bytes, minimum=1024),
            cors_origins=_origins(env, "OSRS_CORS_ORIGINS"),
            hsts=_flag(env, "OSRS_HSTS"),
            api_max_inflight=_int(env, "OSRS_API_MAX_INFLIGHT", d.api_max_inflight, minimum=1),
            api_max_queued=_int(env, "OSRS_API_MAX_QUEUED", d.api_max_queued, minimum=0),
            api_queue_timeout_s=_float(env, "OSRS_API_QUEUE_TIMEOUT_S", d.api_queue_timeout_s),
            api_pool_timeout_s=_float(env, "OSRS_API_POOL_TIMEOUT_S", d.api_pool_timeout_s),
            api_statement_timeout_s=_float(
                env, "OSRS_API_STATEMENT_TIMEOUT_S", d.api_statement_timeout_s
            ),
            log_format=_choice(env, "OSRS_LOG_FORMAT", LOG_FORMATS, d.log_format),
            metrics_host=env.get("OSRS_METRICS_HOST") or d.metrics_host,
            metrics_port=_port(env, "OSRS_METRICS_PORT"),
            shutdown_grace_s=_float(env, "OSRS_SHUTDOWN_GRACE_S", d.shutdown_grace_s),
            instance=env.get("OSRS_INSTANCE", "").strip(),
        )

    def work_grace_s(self) -> float:
        """How long a stopping service lets the work in hand finish: the grace period less what
        closing takes, so that the process is gone inside OSRS_SHUTDOWN_GRACE_S."""
        return max(1.0, self.shutdown_grace_s - CLOSE_RESERVE_S)

    def metrics_port_for(self, service: str) -> int:
        """The port of a worker's metrics server: OSRS_METRICS_PORT, else the worker's default
        (fetcher 9101, projector 9102, scheduler 9103); 0 means none."""
        if self.metrics_port is not None:
            return self.metrics_port
        return DEFAULT_METRICS_PORTS.get(service, 0)

    def signing_secret(self) -> str:
        """The HS256 secret: OSRS_JWT_SECRET of at least 32 bytes; in dev mode a random one when
        unset. The API runs without it only with key files (services.api.tokens)."""
        if self.jwt_secret:
            if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise SettingsError(
                    f"OSRS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (try: python3 -c "
                    "'import secrets; print(secrets.token_urlsafe(48))')"
                )
            return self.jwt_secret
        if self.dev:
            return _dev_secret()
        raise SettingsError(
            f"no JWT signing key: set OSRS_JWT_SECRET (at least {MIN_SECRET_BYTES} bytes), or "
            "OSRS_JWT_PRIVATE_KEY_FILE (an Ed25519 or RSA key in PEM), or OSRS_DEV=1 for a "
            "random secret"
        )


_DEFAULTS = Settings()


@functools.cache
def _dev_secret() -> str:
    return secrets.token_urlsafe(32)


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()


def _flag(env: Mapping[str, str], name: str) -> bool:
    return (env.get(name) or "").strip().lower() in {"1", "true", "yes", "on"}


def _jwt_algorithm(env: Mapping[str, str]) -> str | None:
    raw = (env.get("OSRS_JWT_ALGORITHM") or "").strip()
    if not raw:
        return None
    for algorithm in JWT_ALGORITHMS:
        if raw.lower() == algorithm.lower():
            return algorithm
    raise SettingsError(f"OSRS_JWT_ALGORITHM must be one of {', '.join(JWT_ALGORITHMS)}")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _port(env: Mapping[str, str], name: str) -> int | None:
    if not env.get(name):
        return None
    port = _int(env, name, 0, minimum=0)
    if port > 65535:
        raise SettingsError(f"{name} must be a TCP port (0 to 65535), got {port}")
    return port


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be above 0, got {value}")
    return value


def _items(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in (env.get(name) or "").split(",") if item.strip()]


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """IP addresses or CIDR blocks, comma-separated."""
    items = _items(env, name)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(f"{name}: {item!r} is not an IP address or CIDR block") from None
    return tuple(items)


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Exact browser origins (scheme://host[:port]), comma-separated; no wildcards, no paths."""
    origins = []
    for item in _items(env, name):
        origin = item.rstrip("/").lower()  # browsers send scheme and host in lower case
        parts = urlsplit(origin)
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            parts = parts._replace(netloc="")
        if (
            parts.scheme not in {"http", "https"}
            or not parts.hostname
            or "*" in origin
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise SettingsError(f"{name}: {item!r} is not an origin like https://example.com")
        origins.append(origin)
    return tuple(origins)
