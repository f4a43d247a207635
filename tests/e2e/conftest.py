from __future__ import annotations

import pytest

from ..compat.conftest import CLIENTS
from ..harness import missing
from .examples import OURS, ClientPython


@pytest.fixture(params=["portside", *sorted(CLIENTS)], ids=lambda v: f"sdk-{v}")
def client(request: pytest.FixtureRequest) -> ClientPython:
    """Our SDK, then each official client: every example must run with all of them."""
    if request.param == "portside":
        return OURS
    python = CLIENTS[request.param]
    if not python.exists():
        reason = (
            f"the official client {request.param} is not installed: run scripts/setup-compat.sh"
        )
        missing(reason)
    return ClientPython(request.param, python)
