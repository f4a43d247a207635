"""Registered container images, through GraphQL (the ``images`` query)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..pagination import field_names
from .admin import run_graphql
from .base import BaseFunction, api_function

__all__ = ("DEFAULT_LIST_FIELDS", "Image")

DEFAULT_LIST_FIELDS = ("name", "registry", "architecture", "tag", "digest", "size_bytes", "aliases")


class Image(BaseFunction):
    """The images a session may be created from."""

    @classmethod
    @api_function
    async def list(
        cls,
        operation: bool = False,
        fields: str | Sequence[str] = DEFAULT_LIST_FIELDS,
    ) -> Sequence[dict[str, Any]]:
        """``operation=True`` also lists the images kept for the system's own use."""
        query = (
            "query($is_operation: Boolean) {"
            " images(is_operation: $is_operation) { " + " ".join(field_names(fields)) + " } }"
        )
        data = await run_graphql(cls._current_session(), query, {"is_operation": operation})
        result: Sequence[dict[str, Any]] = data["images"]
        return result
