"""Errors the SDK raises, shaped like the official client's so callers can catch the same names."""

from __future__ import annotations

import json
from typing import Any

__all__ = (
    "APIVersionWarning",
    "BackendAPIError",
    "BackendAPIVersionError",
    "BackendClientError",
    "BackendError",
)


class BackendError(Exception):
    """The base of every error this SDK raises."""

    def __str__(self) -> str:
        return repr(self)


class BackendAPIError(BackendError):
    """The server answered with an error status; ``data`` is its problem+json body."""

    def __init__(self, status: int, reason: str, data: Any) -> None:
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = {
                    "type": "https://api.backend.ai/probs/generic-error",
                    "title": "Generic Error (could not parse error string)",
                    "content": data,
                }
        super().__init__(status, reason, data)

    @property
    def status(self) -> int:
        status: int = self.args[0]
        return status

    @property
    def reason(self) -> str:
        reason: str = self.args[1]
        return reason

    @property
    def data(self) -> Any:
        return self.args[2]

    @property
    def title(self) -> str:
        data = self.data if isinstance(self.data, dict) else {}
        return str(data.get("title", self.reason))

    @property
    def message(self) -> str:
        """The server's own explanation: ``msg`` when it gave one, else ``title``."""
        data = self.data if isinstance(self.data, dict) else {}
        return str(data.get("msg") or data.get("title") or self.reason)


class BackendAPIVersionError(BackendError):
    """The server speaks an API version this call needs but does not have."""


class BackendClientError(BackendError):
    """Something failed on this side: the connection, a timeout, an unreadable answer."""


class APIVersionWarning(UserWarning):
    """The server's API version differs from this client's in a way that may matter."""
