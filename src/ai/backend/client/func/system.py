"""Server and API versions (wire-protocol.md section 3)."""

from __future__ import annotations

from typing import Any

from .base import BaseFunction, api_function

__all__ = ("System",)


class System(BaseFunction):
    """Facts about the server this session talks to."""

    @classmethod
    @api_function
    async def get_versions(cls) -> dict[str, Any]:
        """``{"version": <API version>, "manager": <server version>}``."""
        async with cls._request("GET", "/").fetch() as resp:
            body: dict[str, Any] = await resp.json()
            return body

    @classmethod
    @api_function
    async def get_manager_version(cls) -> str:
        async with cls._request("GET", "/").fetch() as resp:
            return str((await resp.json())["manager"])

    @classmethod
    @api_function
    async def get_api_version(cls) -> str:
        async with cls._request("GET", "/").fetch() as resp:
            return str((await resp.json())["version"])
