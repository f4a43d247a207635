"""The CLI's formatting helpers, without a server."""

from __future__ import annotations

import aiohttp
import click
import pytest

from ai.backend.client.exceptions import BackendAPIError, BackendClientError
from portside.cli.client.app import parse_bind
from portside.cli.client.output import describe_error, format_value
from portside.cli.client.session import human_slots


def test_api_errors_read_as_title_and_message() -> None:
    problem = {"type": "x", "title": "No such session.", "msg": "there is no session 'a'"}
    assert describe_error(BackendAPIError(404, "Not Found", problem)) == (
        "No such session: there is no session 'a'"
    )
    assert describe_error(BackendAPIError(501, "Not Implemented", {"title": "Nope."})) == (
        "Nope (HTTP 501)"
    )
    graphql = {"title": "GraphQL-generated error", "data": [{"message": "bad field"}]}
    assert describe_error(BackendAPIError(400, "Bad request", graphql)) == (
        "GraphQL-generated error: bad field"
    )
    assert describe_error(BackendAPIError(500, "Oops", "not json")) is not None
    multi_line = BackendClientError("Request failed.\nCheck the server.\n➜ OSError()")
    assert describe_error(multi_line) == "Request failed. Check the server. OSError()"
    assert "cannot reach" in str(describe_error(aiohttp.ClientConnectionError("refused")))
    assert describe_error(KeyError("a bug")) is None  # bugs keep their traceback


def test_cells_are_short_and_plain() -> None:
    assert format_value(None) == "-"
    assert format_value(True) == "yes"
    assert format_value('{"cpu": "1"}') == "cpu=1"
    assert format_value(["a", "b"]) == "a, b"
    assert format_value("2026-11-27T03:07:25.524983+00:00") == "2026-11-27 03:07:25"
    assert human_slots({"cpu": "1", "mem": str(3 * 2**30)}) == {"cpu": "1", "mem": "3 GiB"}


def test_bind_addresses() -> None:
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    with pytest.raises(click.BadParameter):
        parse_bind("localhost:http")
