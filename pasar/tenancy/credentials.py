"""API keys, passwords and JWTs: how credentials are made, stored and checked.

API keys carry 256 bits of randomness, so a SHA-256 of the key is a safe, fast lookup hash; passwords are
low-entropy, so they get argon2id. JWTs are HS256 only (a fixed algorithm list: 'none' and algorithm confusion
are refused by PyJWT), and must carry exp, iat, sub and aud.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID, uuid4

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pasar.errors import Unauthorized
from pasar.tenancy.models import ROLE_SCOPES, Principal, Role, Scope

TENANT_KEY_PREFIX: Literal["psr"] = "psr"
OPERATOR_KEY_PREFIX: Literal["pso"] = "pso"
ALGORITHMS = ["HS256"]
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss", "typ"]
VERIFIED_TOKENS_KEPT = 10_000
_password_hasher = PasswordHasher()


@dataclass(frozen=True)
class GeneratedKey:
    secret: str  # shown once
    prefix: str  # stored in clear: finds the row
    key_hash: str  # stored: proves the secret


def generate_key(kind: Literal["psr", "pso"]) -> GeneratedKey:
    prefix = f"{kind}_{secrets.token_hex(6)}"
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    return GeneratedKey(secret=secret, prefix=prefix, key_hash=hash_key(secret))


def split_key(secret: str) -> tuple[str, str]:
    """(prefix, hash) of a presented key; a malformed key is simply unauthorized."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] not in (TENANT_KEY_PREFIX, OPERATOR_KEY_PREFIX) or len(secret) > 200:
        raise Unauthorized("invalid API key")
    return f"{parts[0]}_{parts[1]}", hash_key(secret)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when no user matches, so a missing user costs as much time as a wrong password.
DUMMY_PASSWORD_HASH = _password_hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class TokenIssuer:
    secret: str
    issuer: str
    audience: str
    access_ttl: int
    refresh_ttl: int
    # Access tokens already verified, with their expiry: a client sends the same token with every request, and
    # checking its signature and claims again costs more CPU than some whole requests.
    _verified: dict[str, tuple[float, Principal]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def refresh_audience(self) -> str:
        # A distinct audience: an access token is never accepted as a refresh token, nor the reverse.
        return f"{self.audience}:refresh"

    def access_token(self, principal: Principal) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(principal.subject_id),
            "iat": now,
            "exp": now + self.access_ttl,
            "jti": uuid4().hex,
            "typ": "access",
            "knd": principal.kind,
            "tid": None if principal.tenant_id is None else str(principal.tenant_id),
            "rol": None if principal.role is None else principal.role.value,
            "scp": sorted(scope.value for scope in principal.scopes),
            "akid": None if principal.api_key_id is None else str(principal.api_key_id),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def refresh_token(self, principal: Principal, token_id: UUID) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.refresh_audience,
            "sub": str(principal.subject_id),
            "iat": now,
            "exp": now + self.refresh_ttl,
            "jti": str(token_id),
            "typ": "refresh",
            "tid": str(principal.tenant_id),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def _decode(self, token: str, audience: str, typ: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=ALGORITHMS,
                audience=audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token", code="invalid_token") from exc
        if claims.get("typ") != typ:
            raise Unauthorized("invalid token", code="invalid_token")
        return claims

    def principal_from_access_token(self, token: str) -> Principal:
        verified = self._verified.get(token)
        if verified is not None and time.time() < verified[0]:  # as PyJWT: valid while now < exp
            return verified[1]
        claims = self._decode(token, self.audience, "access")
        try:
            kind = claims["knd"]
            role = None if claims.get("rol") is None else Role(claims["rol"])
            principal = Principal(
                kind=kind,
                subject_id=UUID(claims["sub"]),
                tenant_id=None if claims.get("tid") is None else UUID(claims["tid"]),
                role=role,
                scopes=frozenset(Scope(s) for s in claims.get("scp", [])),
                api_key_id=None if claims.get("akid") is None else UUID(claims["akid"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("invalid token", code="invalid_token") from exc
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (float(claims["exp"]), principal)
        return principal

    def refresh_claims(self, token: str) -> tuple[UUID, UUID, UUID]:
        """(tenant id, user id, token id) of a valid refresh token."""
        claims = self._decode(token, self.refresh_audience, "refresh")
        try:
            return UUID(claims["tid"]), UUID(claims["sub"]), UUID(claims["jti"])
        except (KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("invalid token", code="invalid_token") from exc


def scopes_for(role: Role, requested: frozenset[Scope] | None = None) -> frozenset[Scope]:
    """An API key's scopes: what was asked for, never more than its user's role allows."""
    allowed = ROLE_SCOPES[role]
    return allowed if requested is None else allowed & requested
