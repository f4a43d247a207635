"""Upload and download tokens: what lets a plain HTTP client move one file in or out.

The official client hands the URL and token it gets from ``request-upload`` or
``request-download`` to a bare HTTP session (the TUS uploader, a ranged GET) that cannot sign
requests, so the token alone authorizes the transfer.  A token is a signed JWT naming one
folder, one path and the user who asked, valid for ``ttl`` seconds; any server sharing the
secret honours it, so uploads may hop between API servers behind one address.  What is in
flight (a partial file) lives on the volume, where every server sees it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import jwt

from portside.errors import AuthFailed

DEFAULT_TTL = 6 * 3600.0
TOKEN_TYPE = "vfolder-transfer"


@dataclass(slots=True)
class Transfer:
    kind: Literal["upload", "download"]
    folder_id: uuid.UUID
    folder_name: str
    path: str
    user_id: uuid.UUID
    #: The declared size of an upload; unused for downloads.
    size: int = 0
    #: Names the upload's partial file (never the token, which is a secret).
    upload_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    expires_at: float = 0.0
    #: A directory the path goes under, when the uploader's URL names one (``dst_dir``).
    dst_dir: str = ""
    #: Set once every byte arrived and the file is in place.
    done: bool = False
    #: One PATCH at a time appends to the partial file.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TransferTokens:
    """Signs transfers into tokens and reads them back; keeps each transfer's lock per process."""

    def __init__(
        self,
        secret: Callable[[], str],
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._local: dict[str, Transfer] = {}

    def issue(self, transfer: Transfer) -> str:
        transfer.expires_at = self._clock() + self.ttl
        claims = {
            "typ": TOKEN_TYPE,
            "kind": transfer.kind,
            "folder": str(transfer.folder_id),
            "name": transfer.folder_name,
            "path": transfer.path,
            "user": str(transfer.user_id),
            "size": transfer.size,
            "upload": transfer.upload_id,
            "exp": int(transfer.expires_at),
        }
        token = jwt.encode(claims, self._secret(), algorithm="HS256")
        self._local[token] = transfer
        return token

    def get(self, token: str, kind: Literal["upload", "download"]) -> Transfer:
        """The transfer ``token`` stands for, as issued here or by another server."""
        try:
            claims = jwt.decode(
                token, self._secret(), algorithms=["HS256"], options={"verify_exp": False}
            )
        except jwt.InvalidTokenError:
            claims = {}
        if claims.get("typ") != TOKEN_TYPE or claims.get("kind") != kind:
            raise AuthFailed(f"the {kind} token is not valid; request a new {kind} and retry")
        if claims["exp"] < self._clock():
            self._local.pop(token, None)
            raise AuthFailed(
                f"the {kind} token has expired; request a new {kind} "
                "(request-upload or request-download) and retry"
            )
        transfer = self._local.get(token)
        if transfer is None:
            transfer = Transfer(
                kind,
                uuid.UUID(claims["folder"]),
                claims["name"],
                claims["path"],
                uuid.UUID(claims["user"]),
                claims["size"],
                claims["upload"],
                float(claims["exp"]),
            )
            self._local[token] = transfer
        return transfer

    def finish(self, token: str) -> None:
        self._local.pop(token, None)

    def forget_expired(self) -> None:
        now = self._clock()
        for token in [t for t, tr in self._local.items() if tr.expires_at < now]:
            self._local.pop(token, None)
