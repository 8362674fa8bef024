"""Access tokens, refresh tokens and API keys, and the middleware that authenticates every request
that is not public (the OpenAPI schema and the handlers marked `exclude_from_auth=True`).

An access token is a short-lived JWT signed with the one configured algorithm: HS256 with
OSRS_JWT_SECRET, or EdDSA / RS256 with the key in OSRS_JWT_PRIVATE_KEY_FILE. Refresh tokens and
API keys are opaque random strings, stored only as their sha256 digest."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from copy import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import jwt
import msgspec
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Headers
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme
from psycopg_pool import AsyncConnectionPool

from services.api import queries
from shared.settings import Settings, SettingsError

log = logging.getLogger("osrs.api.auth")

TOKEN_PATH = "/v1/auth/token"
# Litestar searches these patterns anywhere in the path: anchor them, or a player named
# "schema" would skip authentication.
PUBLIC_PATTERNS = [r"^/schema(/|$)"]
LEEWAY_S = 10
CLAIMS = ["iss", "aud", "sub", "exp", "iat", "nbf", "jti", "role"]
API_KEY_PREFIX = "osrs_"
API_KEY_HEADER = "X-API-Key"
ROLES = ("user", "admin")  # least privileged first
VERIFIED_CACHE = 4096  # access tokens remembered as verified, per process
_MAX_CREDENTIAL = 4096  # far above any token or key this API issues


class Principal(msgspec.Struct, frozen=True):
    """`request.user`: who is asking, with the role this request may use."""

    username: str
    role: str


class Credential(msgspec.Struct, frozen=True):
    """`request.auth`: how the request authenticated."""

    kind: Literal["access_token", "api_key"]
    user_id: int
    jti: uuid.UUID | None = None  # access tokens only
    expires_at: datetime | None = None  # access tokens only
    api_key_id: int | None = None


def role_rank(role: str) -> int:
    """A role's place in ROLES; an unknown role ranks below every known one."""
    return ROLES.index(role) if role in ROLES else -1


def lesser_role(a: str, b: str) -> str:
    """A token or key never gives more than its owner's role of now."""
    return min(a, b, key=role_rank)


class InvalidToken(Exception):
    """An access token that must be refused; the message says why, without the token."""


class IssuedToken(msgspec.Struct, frozen=True):
    token: str
    jti: uuid.UUID
    expires_at: datetime


class VerifiedToken(msgspec.Struct, frozen=True):
    user_id: int
    role: str  # the role it was issued with
    jti: uuid.UUID
    expires_at: datetime


class _Claims(msgspec.Struct):
    sub: Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,17}$")]  # the user's id
    role: str
    jti: uuid.UUID
    exp: int | float


class AccessTokens:
    """Signs and verifies access tokens with the one algorithm and key configured."""

    def __init__(
        self,
        *,
        algorithm: str,
        signing_key: Any,
        verifying_key: Any,
        issuer: str,
        audience: str,
        ttl_s: int,
    ) -> None:
        self.algorithm = algorithm
        self._signing_key = signing_key
        self._verifying_key = verifying_key
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        # token -> (what it verified as, its exp): a client sends the same token with every
        # request, and its signature and claims cannot change; only expiry is checked again.
        self._verified: dict[str, tuple[VerifiedToken, int | float]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessTokens:
        """Raises SettingsError when no usable signing key is configured."""
        if settings.jwt_private_key_file or settings.jwt_public_key_file:
            algorithm, signing_key, verifying_key = _key_pair(settings)
        elif settings.jwt_algorithm not in (None, "HS256"):
            raise SettingsError(
                f"OSRS_JWT_ALGORITHM={settings.jwt_algorithm} needs OSRS_JWT_PRIVATE_KEY_FILE"
            )
        else:
            algorithm = "HS256"
            signing_key = verifying_key = settings.signing_secret().encode()
        return cls(
            algorithm=algorithm,
            signing_key=signing_key,
            verifying_key=verifying_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_s=settings.access_token_ttl,
        )

    def issue(self, user_id: int, role: str) -> IssuedToken:
        now = int(time.time())
        jti = uuid.uuid4()
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
            "jti": str(jti),
            "role": role,
        }
        token = jwt.encode(claims, self._signing_key, algorithm=self.algorithm)
        return IssuedToken(token, jti, datetime.fromtimestamp(now + self.ttl_s, UTC))

    def verify(self, token: str) -> VerifiedToken:
        """Raises InvalidToken."""
        cached = self._verified.get(token)
        if cached is not None:
            verified, exp = cached
            if exp > time.time() - LEEWAY_S:  # PyJWT's rule: expired once exp <= now - leeway
                return verified
            del self._verified[token]
            raise InvalidToken("the token has expired")
        verified, exp = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        self._verified[token] = (verified, exp)
        return verified

    def _decode(self, token: str) -> tuple[VerifiedToken, int | float]:
        try:
            decoded = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],  # pinned: no "none", no HS256 with a public key
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": CLAIMS},
            )
            claims = msgspec.convert(decoded, _Claims)
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except (jwt.InvalidTokenError, msgspec.ValidationError, ValueError, TypeError):
            raise InvalidToken("invalid token") from None
        verified = VerifiedToken(
            user_id=int(claims.sub),
            role=claims.role,
            jti=claims.jti,
            expires_at=datetime.fromtimestamp(claims.exp, UTC),
        )
        return verified, claims.exp


def _key_pair(settings: Settings) -> tuple[str, Any, Any]:
    """(algorithm, private key, public key) from the key files; the algorithm follows the key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if not settings.jwt_private_key_file:
        raise SettingsError(
            "OSRS_JWT_PUBLIC_KEY_FILE needs OSRS_JWT_PRIVATE_KEY_FILE: the API signs its tokens"
        )
    raw = _read_key_file(settings.jwt_private_key_file, "OSRS_JWT_PRIVATE_KEY_FILE")
    try:
        private = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SettingsError(
            "OSRS_JWT_PRIVATE_KEY_FILE must hold an unencrypted Ed25519 or RSA private key in PEM"
        ) from None
    if isinstance(private, ed25519.Ed25519PrivateKey):
        algorithm = "EdDSA"
    elif isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < 2048:
            raise SettingsError("OSRS_JWT_PRIVATE_KEY_FILE: an RSA key needs at least 2048 bits")
        algorithm = "RS256"
    else:
        raise SettingsError("OSRS_JWT_PRIVATE_KEY_FILE must hold an Ed25519 or RSA private key")
    if settings.jwt_algorithm not in (None, algorithm):
        raise SettingsError(
            f"OSRS_JWT_ALGORITHM is {settings.jwt_algorithm} but OSRS_JWT_PRIVATE_KEY_FILE holds "
            f"a key for {algorithm}"
        )
    public = private.public_key()
    if settings.jwt_public_key_file:
        raw = _read_key_file(settings.jwt_public_key_file, "OSRS_JWT_PUBLIC_KEY_FILE")
        try:
            given = serialization.load_pem_public_key(raw)
        except (ValueError, UnsupportedAlgorithm):
            raise SettingsError("OSRS_JWT_PUBLIC_KEY_FILE must hold a public key in PEM") from None
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if given.public_bytes(*spki) != public.public_bytes(*spki):
            raise SettingsError(
                "OSRS_JWT_PUBLIC_KEY_FILE is not the public half of OSRS_JWT_PRIVATE_KEY_FILE"
            )
    return algorithm, private, public


def _read_key_file(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path} ({exc.strerror})") from None


def digest(secret: str) -> bytes:
    """What is stored of a refresh token or API key: its sha256."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _refused(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail, headers={"WWW-Authenticate": "Bearer"})


def presented_credential(headers: Headers) -> str:
    """The bearer token or API key of a request: `Authorization: Bearer ...` or `X-API-Key`."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, secret = authorization.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise _refused("expected Authorization: Bearer <token or API key>")
    else:
        secret = headers.get(API_KEY_HEADER.lower())
        if secret is None:
            raise _refused(
                f"missing credentials: Authorization: Bearer <token> or {API_KEY_HEADER}"
            )
        if not secret.startswith(API_KEY_PREFIX):
            raise _refused("invalid API key")
    if len(secret) > _MAX_CREDENTIAL:
        raise _refused("invalid token")
    return secret


class TokenAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    """Checks the credential, then in one query that its user exists and is enabled and that an
    access token was not revoked: a disabled user or a logout takes effect at the next request."""

    def __init__(
        self, app: Any, *, tokens: AccessTokens, pool: AsyncConnectionPool, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.tokens = tokens
        self.pool = pool

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        # A psycopg.OperationalError (no connection in time, Postgres away) goes on to the
        # app's handler: 503 with Retry-After (services/api/shedding.py).
        secret = presented_credential(connection.headers)
        if secret.startswith(API_KEY_PREFIX):
            return await self._by_api_key(secret)
        return await self._by_access_token(secret)

    async def _by_access_token(self, token: str) -> AuthenticationResult:
        try:
            verified = self.tokens.verify(token)
        except InvalidToken as exc:
            raise _refused(str(exc)) from None
        async with self.pool.connection() as conn:
            params = {"user_id": verified.user_id, "jti": verified.jti}
            row = await (await conn.execute(queries.ACCESS_TOKEN_HOLDER, params)).fetchone()
        if row is None:
            raise _refused("unknown user")
        username, role, disabled, revoked = row
        if disabled:
            raise _refused("this account is disabled")
        if revoked:
            raise _refused("this token has been revoked")
        principal = Principal(username=username, role=lesser_role(verified.role, role))
        auth = Credential(
            kind="access_token",
            user_id=verified.user_id,
            jti=verified.jti,
            expires_at=verified.expires_at,
        )
        return AuthenticationResult(user=principal, auth=auth)

    async def _by_api_key(self, key: str) -> AuthenticationResult:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(queries.API_KEY_HOLDER, (digest(key),))).fetchone()
        if row is None:
            raise _refused("invalid or revoked API key")
        key_id, user_id, key_role, username, user_role, disabled = row
        if disabled:
            raise _refused("this account is disabled")
        principal = Principal(username=username, role=lesser_role(key_role, user_role))
        auth = Credential(kind="api_key", user_id=user_id, api_key_id=key_id)
        return AuthenticationResult(user=principal, auth=auth)


class TokenAuth:
    """Installs the middleware and documents both ways in for the OpenAPI schema: the OAuth2
    password flow (Swagger's Authorize button) and the X-API-Key header."""

    def __init__(self, tokens: AccessTokens, pool: AsyncConnectionPool) -> None:
        self.tokens = tokens
        self.pool = pool

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(
            0,
            DefineMiddleware(
                TokenAuthenticationMiddleware,
                tokens=self.tokens,
                pool=self.pool,
                exclude=PUBLIC_PATTERNS,
            ),
        )
        if app_config.openapi_config:
            config = copy(app_config.openapi_config)
            others = config.components
            others = others if isinstance(others, list) else [others] if others else []
            config.components = [_COMPONENTS, *others]
            config.security = [*(config.security or []), {"BearerToken": []}, {"APIKey": []}]
            app_config.openapi_config = config
        return app_config


_COMPONENTS = Components(
    security_schemes={
        "BearerToken": SecurityScheme(
            type="oauth2",
            flows=OAuthFlows(password=OAuthFlow(token_url=TOKEN_PATH, scopes={})),
            description=(
                f"An access token from POST {TOKEN_PATH}, or an API key, as "
                "`Authorization: Bearer ...`"
            ),
        ),
        "APIKey": SecurityScheme(
            type="apiKey",
            name=API_KEY_HEADER,
            security_scheme_in="header",
            description="An API key from POST /v1/auth/api-keys",
        ),
    }
)
