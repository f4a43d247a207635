"""Signed, expiring tokens (HS256 JWTs via PyJWT) for the app proxy and model services.

Every token carries a ``typ`` claim, so a token made for one purpose (say, opening an app)
is never accepted for another (say, a browser permit).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt

from portside.config import Config

ALGORITHM = "HS256"


class TokenError(Exception):
    """A token is missing, malformed, forged, expired or meant for something else."""


def load_secret(config: Config) -> str:
    if config.secret_key:
        return config.secret_key
    path: Path = config.data_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(48)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(value)
        return value


def issue(secret: str, typ: str, claims: dict[str, Any], expires_at: float) -> str:
    payload = {**claims, "typ": typ, "iat": int(time.time()), "exp": int(expires_at)}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str, typ: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=[ALGORITHM])
    except jwt.ExpiredSignatureError as e:
        raise TokenError("the token has expired") from e
    except jwt.InvalidTokenError as e:
        raise TokenError(f"the token is not valid: {e}") from e
    if claims.get("typ") != typ:
        raise TokenError("the token was issued for something else")
    return claims


class Verified:
    """Tokens of one ``typ`` that verified, kept until they expire.

    A browser or a model client sends the same token with every request; checking its
    signature each time was a tenth of what relaying a request cost.  Only tokens that
    verified are kept, so a forged one is checked (and refused) every time.
    """

    def __init__(self, typ: str, limit: int = 1024) -> None:
        self.typ = typ
        self.limit = limit
        self._claims: dict[tuple[str, str], dict[str, Any]] = {}

    def verify(self, secret: str, token: str) -> dict[str, Any]:
        key = (secret, token)
        claims = self._claims.get(key)
        if claims is not None and time.time() < claims["exp"]:
            return claims
        self._claims.pop(key, None)
        claims = verify(secret, token, self.typ)
        if len(self._claims) >= self.limit:
            self._claims.clear()
        self._claims[key] = claims
        return claims
