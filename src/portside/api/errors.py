"""Turns every failure into ``application/problem+json`` (wire-protocol.md section 5).

The official client parses error bodies with ``resp.json()``; a plain-text or HTML error page
would surface as an unreadable ``ContentTypeError`` on the user's side, so no error leaves the
server in any other shape.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from portside.errors import (
    InternalServerError,
    InvalidAPIParameters,
    MethodNotAllowed,
    PortsideError,
    RequestTooLarge,
    URLNotFound,
)

log = logging.getLogger("portside.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROBLEM_JSON = "application/problem+json"


def problem_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON)


def error_response(error: PortsideError) -> web.Response:
    return problem_response(error.status, error.to_problem())


def _from_http_exception(exc: web.HTTPException) -> PortsideError:
    if exc.status == 404:
        return URLNotFound()
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 413:
        return RequestTooLarge(exc.text)
    error = InvalidAPIParameters(exc.text or exc.reason)
    error.status = exc.status  # type: ignore[misc]
    return error


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PortsideError as e:
        if e.status >= 500:
            log.error("request failed: %s %s: %s", request.method, request.path, e)
        return error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(_from_http_exception(e))
    except Exception:
        error_id = uuid.uuid4().hex
        log.exception("unexpected error %s in %s %s", error_id, request.method, request.path)
        return error_response(
            InternalServerError(
                f"an unexpected error occurred; the server log has it as {error_id}"
            )
        )
