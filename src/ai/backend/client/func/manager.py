"""Manager status and announcements (wire-protocol.md section 4.1)."""

from __future__ import annotations

from typing import Any

from .base import BaseFunction, api_function

__all__ = ("Manager",)


class Manager(BaseFunction):
    @classmethod
    @api_function
    async def status(cls) -> dict[str, Any]:
        rqst = cls._request("GET", "/manager/status")
        rqst.set_json({"status": "running"})
        async with rqst.fetch() as resp:
            body: dict[str, Any] = await resp.json()
            return body

    @classmethod
    @api_function
    async def get_announcement(cls) -> dict[str, Any]:
        async with cls._request("GET", "/manager/announcement").fetch() as resp:
            body: dict[str, Any] = await resp.json()
            return body
