"""Two API servers on one PostgreSQL database, and one round-robin address in front of them.

Both servers share a data directory, as two processes on one machine do: the local backend's
kernels, folders and the token secret live there, so either server reaches every kernel.
These tests always use PostgreSQL (several servers need it), whatever the pass.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from ..harness import RunningServer, database_url, fresh_postgres_database, missing, start_server
from .roundrobin import RoundRobin, round_robin

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclasses.dataclass(frozen=True)
class TwoServers:
    a: RunningServer
    b: RunningServer
    #: The round-robin address, as a server the example tests can be pointed at.
    balanced: RunningServer
    balancer: RoundRobin


def _postgres_url() -> str:
    base = database_url() or os.environ.get("PORTSIDE_TEST_PG_URL", DEFAULT_PG_URL)
    try:
        return fresh_postgres_database(base, "portside_two_servers")
    except OSError as e:
        missing(f"two API servers need PostgreSQL, which is not reachable: {e}")


@pytest.fixture(scope="package")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoServers]:
    env = {"PORTSIDE_DATABASE_URL": _postgres_url()}
    data_dir = tmp_path_factory.mktemp("two-servers")
    a = start_server(data_dir, extra_env=env)
    try:
        b = start_server(data_dir, extra_env=env)
        try:
            with round_robin([a.api_url, b.api_url]) as (url, balancer):
                yield TwoServers(a, b, dataclasses.replace(a, api_url=url), balancer)
        finally:
            b.stop(keep_kernels=True)
    finally:
        a.stop()


@pytest.fixture(scope="package")
def server(two_servers: TwoServers) -> RunningServer:
    """The seed-example tests' server, here the round-robin address."""
    return two_servers.balanced
