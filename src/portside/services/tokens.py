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
