from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer


def config_for(server: RunningServer, keys: tuple[str, str] = DEV_ADMIN) -> APIConfig:
    return APIConfig(endpoint=server.api_url, access_key=keys[0], secret_key=keys[1])


@pytest.fixture
def api(server: RunningServer) -> Iterator[Session]:
    """A sync API session signing with the development admin keypair."""
    with Session(config=config_for(server)) as session:
        yield session


@pytest.fixture
def new_session(api: Session) -> Iterator[Callable[..., Any]]:
    """Creates compute sessions that are destroyed when the test ends."""
    created: list[Any] = []

    def create(image: str = "python", **kwargs: Any) -> Any:
        kwargs.setdefault("name", f"t-{uuid.uuid4().hex[:10]}")
        compute = api.ComputeSession.get_or_create(image, **kwargs)
        created.append(compute)
        return compute

    yield create
    for compute in created:
        try:
            compute.destroy(forced=True)
        except BackendAPIError as e:
            if e.status != 404:
                raise


def run(
    compute: Any,
    code: str,
    *,
    mode: str = "query",
    opts: dict[str, Any] | None = None,
    inputs: list[str] | None = None,
) -> tuple[str, str, list[Any], int | None]:
    """Runs code to completion: stdout, stderr, other console records, exit code."""
    stdout, stderr, media = "", "", []
    pending_inputs = list(inputs or [])
    result = compute.execute(None, code, mode=mode, opts=opts)
    while True:
        for kind, data in result["console"]:
            if kind == "stdout":
                stdout += data
            elif kind == "stderr":
                stderr += data
            else:
                media.append([kind, data])
        if result["status"] == "finished":
            return stdout, stderr, media, result["exitCode"]
        if result["status"] == "waiting-input":
            result = compute.execute(result["runId"], pending_inputs.pop(0), mode="input")
        else:
            result = compute.execute(result["runId"], "", mode="continue")
