"""GraphQL queries (wire-protocol.md section 4.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import BackendAPIError
from ..request import Request
from ..session import BaseSession
from .base import BaseFunction, api_function

__all__ = ("Admin", "run_graphql")


async def run_graphql(
    session: BaseSession, query: str, variables: Mapping[str, Any] | None = None
) -> Any:
    """Runs one GraphQL query; GraphQL ``errors`` become a ``BackendAPIError`` (400)."""
    legacy = session.api_version < (6, "20210815")
    rqst = Request("POST", "/admin/graphql" if legacy else "/admin/gql", session=session)
    rqst.set_json({"query": query, "variables": dict(variables or {})})
    async with rqst.fetch() as resp:
        body = await resp.json()
    if legacy:
        return body
    if body.get("errors"):
        raise BackendAPIError(
            400,
            "Bad request",
            {
                "type": "https://api.backend.ai/probs/graphql-error",
                "title": "GraphQL-generated error",
                "data": body["errors"],
            },
        )
    return body["data"]


class Admin(BaseFunction):
    """Runs GraphQL queries against ``/admin/gql``."""

    @classmethod
    async def _query(cls, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        return await run_graphql(cls._current_session(), query, variables)

    @classmethod
    @api_function
    async def query(cls, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        """Runs one GraphQL query and returns its ``data``; errors raise ``BackendAPIError``."""
        return await cls._query(query, variables)
