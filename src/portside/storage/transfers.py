"""Upload and download tokens: what lets a plain HTTP client move one file in or out.

The official client hands the URL and token it gets from ``request-upload`` or
``request-download`` to a bare HTTP session (the TUS uploader, a ranged GET) that cannot sign
requests, so the token alone authorizes the transfer.  Tokens are random, bound to one folder,
one path and the user who asked, and expire after ``ttl`` seconds without use.  They live in
memory: a restart of the server ends transfers in progress, and the client asks again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from portside.errors import AuthFailed

DEFAULT_TTL = 1800.0


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
    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._live: dict[str, Transfer] = {}

    def issue(self, transfer: Transfer) -> str:
        token = secrets.token_urlsafe(32)
        transfer.expires_at = self._clock() + self.ttl
        self._live[token] = transfer
        return token

    def get(self, token: str, kind: str) -> Transfer:
        """The live transfer ``token`` stands for; its expiry starts again from now."""
        transfer = self._live.get(token)
        if transfer is None or transfer.kind != kind or transfer.expires_at < self._clock():
            raise AuthFailed(
                f"the {kind} token is unknown or has expired; request a new {kind} "
                "(request-upload or request-download) and retry"
            )
        transfer.expires_at = self._clock() + self.ttl
        return transfer

    def finish(self, token: str) -> None:
        self._live.pop(token, None)

    def expired(self) -> list[Transfer]:
        """Forgets the transfers whose time is up and returns them (to discard partial files)."""
        now = self._clock()
        gone = [t for t, tr in self._live.items() if tr.expires_at < now]
        return [self._live.pop(t) for t in gone]
