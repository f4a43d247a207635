"""Shared pieces of the virtual-folder tests: folders that disappear when a test ends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_USER, RunningServer
from .conftest import config_for


def delete_folder(api: Session, name: str, timeout: float = 60) -> None:
    """Deletes a folder, waiting while sessions that mount it are still terminating."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.VFolder(name).delete()
            return
        except BackendAPIError as e:
            if e.status == 404:
                return
            if e.status != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(name="user_api")
def user_api_fixture(server: RunningServer) -> Iterator[Session]:
    """A sync API session signing with the development user's keypair."""
    with Session(config=config_for(server, DEV_USER)) as session:
        yield session


@pytest.fixture(name="folder")
def folder_fixture(api: Session) -> Iterator[Callable[..., str]]:
    """Creates folders with unique names (``prefix-xxxxxx``) and deletes them afterwards."""
    created: list[tuple[Session, str]] = []

    def create(prefix: str = "vf", *, owner: Session | None = None, **kwargs: Any) -> str:
        client = owner or api
        name = kwargs.pop("name", None) or f"{prefix}-{uuid.uuid4().hex[:8]}"
        client.VFolder.create(name, "local", **kwargs)
        created.append((client, name))
        return name

    yield create
    for client, name in reversed(created):
        delete_folder(client, name)
