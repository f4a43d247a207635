"""Resolving the data folders a new session asks to mount."""

from __future__ import annotations

from typing import Any

from portside.agent.base import MountSpec
from portside.db.repositories.identity import Principal
from portside.errors import ObjectNotFound


class MountResolver:
    """Maps folder names to mounts; this server has no data folders yet, so any name is unknown."""

    async def resolve(
        self,
        principal: Principal,
        *,
        group: str,
        domain: str,
        names: list[str],
        mount_map: dict[str, str],
        mount_options: dict[str, dict[str, Any]],
        owner_access_key: str | None = None,
    ) -> list[MountSpec]:
        if names:
            raise ObjectNotFound(
                "no such data folder: " + ", ".join(names), object_name="virtual folder"
            )
        return []
