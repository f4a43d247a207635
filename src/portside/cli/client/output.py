"""What client commands print: tables and key/value records (rich), JSON, status lines, errors.

Results go to stdout, everything about the work (status, progress, notices) to stderr, so
``portside ps --output json | jq`` and ``portside run ... > out.txt`` stay clean.  Tables use
rich's plain ``SIMPLE`` box: readable in a terminal, and one row per line when piped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiohttp
import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ai.backend.client.exceptions import BackendAPIError, BackendClientError, BackendError

F = TypeVar("F", bound=Callable[..., Any])

#: A column or field: the key in the record, and its heading.
Column = tuple[str, str]


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # A pipe gets no width limit: a row stays one line, whatever the terminal's width.
    width = None if stream.isatty() else 1000
    return Console(stderr=stderr, width=width, highlight=False)


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


def output_option(func: F) -> F:
    """``-o/--output table|json`` for a command that prints a result."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Print a table for people or JSON for scripts.",
    )(func)


def decode_json_strings(value: Any) -> Any:
    """Backend.AI sends some objects as JSON-encoded strings; JSON output shows them decoded."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: decode_json_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_json_strings(v) for v in value]
    return value


def print_json(data: Any) -> None:
    click.echo(json.dumps(decode_json_strings(data), indent=2, default=str))


def format_value(value: Any) -> str:
    """One cell: ``-`` for nothing, yes/no, ``k=v`` pairs, lists joined, times to the second."""
    value = decode_json_strings(value)
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return value
    return str(value)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    output: str = "table",
    empty: str = "Nothing to show.",
) -> None:
    """``rows`` as a table of ``columns``, or as a JSON list of the whole rows."""
    if output == "json":
        print_json(list(rows))
        return
    if not rows:
        stderr_console().print(escape(empty))
        return
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    for _, heading in columns:
        # A narrow terminal folds long cells rather than cutting them short.
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*(escape(format_value(row.get(key))) for key, _ in columns))
    stdout_console().print(table)


def print_record(
    record: Mapping[str, Any], fields: Sequence[Column], *, output: str = "table"
) -> None:
    """One object as a two-column field/value table, or as JSON (the whole object)."""
    if output == "json":
        print_json(dict(record))
        return
    table = Table("Field", "Value", box=box.SIMPLE, pad_edge=False, show_edge=False)
    for key, label in fields:
        if key in record:
            table.add_row(label, escape(format_value(record[key])))
    stdout_console().print(table)


class Notices:
    """Status lines on stderr (``∙`` working, ``✓`` done, ``!`` warning), silenced by quiet."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._console = stderr_console()

    def info(self, message: str) -> None:
        if not self.quiet:
            self._console.print(f"[cyan]∙[/] {escape(message)}")

    def done(self, message: str) -> None:
        if not self.quiet:
            self._console.print(f"[green]✓[/] {escape(message)}")

    def warn(self, message: str) -> None:
        self._console.print(f"[yellow]![/] {escape(message)}")


def _one_line(text: str) -> str:
    parts = [line.strip().removeprefix("➜").strip() for line in text.splitlines()]
    return " ".join(part for part in parts if part)


def describe_api_error(error: BackendAPIError) -> str:
    """``<title>: <msg>`` from the server's problem+json (or GraphQL errors)."""
    data = error.data if isinstance(error.data, dict) else {}
    title = str(data.get("title") or error.reason or f"HTTP {error.status}").rstrip(".")
    detail = data.get("msg")
    if not detail and isinstance(data.get("data"), list):
        messages = [str(e.get("message", e)) for e in data["data"] if isinstance(e, dict)]
        detail = "; ".join(messages)
    if not detail or str(detail).rstrip(".") == title:
        return _one_line(f"{title} (HTTP {error.status})")
    return _one_line(f"{title}: {detail}")


def describe_error(error: BaseException) -> str | None:
    """The one line an error is reported as, or None for errors that are bugs (tracebacks)."""
    if isinstance(error, BackendAPIError):
        return describe_api_error(error)
    if isinstance(error, BackendClientError):
        return _one_line(str(error.args[0]) if error.args else repr(error))
    if isinstance(error, BackendError):
        return _one_line(" ".join(str(a) for a in error.args) or type(error).__name__)
    if isinstance(error, aiohttp.ClientError | TimeoutError):
        return _one_line(f"cannot reach the server: {error or type(error).__name__}")
    if isinstance(error, OSError):
        return _one_line(str(error))
    if isinstance(error, ValueError):
        # The SDK's refusals of bad arguments (a name too long, a file outside the base dir).
        return _one_line(str(error))
    return None
