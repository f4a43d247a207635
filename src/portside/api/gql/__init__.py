"""``POST /admin/gql``: GraphQL as the official client speaks it (wire-protocol.md section 4.1).

Errors come back as HTTP 200 with an ``errors`` list, which the client turns into a
``BackendAPIError``; only the legacy ``/admin/graphql`` path answers 400 (section 5).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from graphql import GraphQLError
from pydantic import BaseModel, ConfigDict, Field

from portside.errors import PortsideError

from ..auth import require_principal
from ..context import PLATFORM
from ..errors import problem_response
from ..params import parse
from .context import GQLContext
from .schema import schema

log = logging.getLogger("portside.api.gql")
routes = web.RouteTableDef()


class GQLRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = Field(default=None, alias="operationName")


def _format_error(error: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if isinstance(original, PortsideError):
        formatted["message"] = str(original)
        formatted["extensions"] = original.to_problem()
    elif original is not None:
        log.error("GraphQL resolver failed", exc_info=original)
        formatted["message"] = "internal error while resolving this field"
    return formatted


async def _execute(request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
    principal = require_principal(request)
    body = await parse(request, GQLRequest)
    result = await schema.execute_async(
        body.query,
        variable_values=body.variables or {},
        operation_name=body.operation_name,
        context_value=GQLContext(request.app[PLATFORM], principal),
    )
    return result.data, [_format_error(e) for e in result.errors or []]


@routes.post("/admin/gql")
async def gql(request: web.Request) -> web.Response:
    data, errors = await _execute(request)
    body: dict[str, Any] = {"data": data}
    if errors:
        body["errors"] = errors
    return web.json_response(body)


@routes.post("/admin/graphql")
async def legacy_graphql(request: web.Request) -> web.Response:
    data, errors = await _execute(request)
    if errors:
        return problem_response(
            400,
            {
                "type": "https://api.backend.ai/probs/graphql-error",
                "title": "GraphQL-generated error",
                "data": errors,
            },
        )
    return web.json_response(data)
