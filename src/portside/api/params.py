"""Reading request parameters the way Backend.AI clients send them (wire-protocol.md section 4).

Some calls send a JSON body on GET, others put everything in the query string of a POST; the
rule that serves both is "a JSON body when there is one, whatever the method, else the query".
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from portside.errors import InvalidAPIParameters

M = TypeVar("M", bound=BaseModel)


async def read_params(request: web.Request) -> dict[str, Any]:
    if request.can_read_body and request.content_type not in ("multipart/form-data",):
        raw = await request.read()
        if raw.strip():
            if request.content_type in (
                "application/json",
                "text/plain",
                "application/octet-stream",
            ):
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    if request.content_type == "application/json":
                        raise InvalidAPIParameters(
                            f"the request body is not valid JSON: {e}"
                        ) from e
                else:
                    if not isinstance(body, dict):
                        raise InvalidAPIParameters("the request body must be a JSON object")
                    return body
            else:
                raise InvalidAPIParameters(
                    f"unsupported content type {request.content_type!r}; send application/json"
                )
    return dict(request.query)


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidAPIParameters(_describe(e), data=json.loads(e.json(include_url=False))) from e


async def parse(request: web.Request, model: type[M]) -> M:
    return validate(model, await read_params(request))
