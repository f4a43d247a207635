"""All session benchmarks in one run, ending with one markdown table for the README.

The benchmarks run one after another, never overlapping, since each would steal the other's
two cores.  The app proxy and the model-service ingress are measured against the same app
reached without them, not against Kernel Gateway, so they get a table of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import appproxy, creation_rate, http_relay, idle_memory, model_ingress, session_start
from bench.common import (
    RATIO_NOTE,
    Row,
    add_common_arguments,
    environment_note,
    log,
    markdown_table,
    print_table,
)

BENCHMARKS = {
    "session_start": (session_start, "Session start"),
    "creation_rate": (creation_rate, "Creation rate"),
    "idle_memory": (idle_memory, "Idle memory"),
}
#: Through Portside against direct to the app: their own table (bench/http_relay.py).
RELAY_BENCHMARKS = {
    "appproxy": (appproxy, "App proxy"),
    "model_ingress": (model_ingress, "Model-service ingress"),
}


async def run_all(
    args: argparse.Namespace,
) -> tuple[list[Row], list[str], list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    relay_rows: list[Row] = []
    relay_notes: list[str] = []
    for name in args.only or [*BENCHMARKS, *RELAY_BENCHMARKS]:
        relay = name in RELAY_BENCHMARKS
        module, title = RELAY_BENCHMARKS[name] if relay else BENCHMARKS[name]
        log(f"=== {name}")
        start = time.monotonic()
        table, extra = await module.run(args)
        if relay:
            http_relay.print_table(f"{title}: through Portside vs direct", table, extra)
            relay_rows.extend(table)
            relay_notes.extend(extra)
        else:
            print_table(f"{title}: Portside vs Jupyter Kernel Gateway", table, extra)
            rows.extend(table)
            notes.extend(f"{title}: {note}" for note in extra)
        log(f"=== {name} took {time.monotonic() - start:.0f} s")
    return rows, notes, relay_rows, relay_notes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--only",
        action="append",
        choices=[*BENCHMARKS, *RELAY_BENCHMARKS],
        help="run just these (repeatable)",
    )
    for module, _ in [*BENCHMARKS.values(), *RELAY_BENCHMARKS.values()]:
        module.add_arguments(parser)
    args = parser.parse_args()
    rows, notes, relay_rows, relay_notes = asyncio.run(run_all(args))
    if rows:
        print("## Portside vs Jupyter Kernel Gateway")
        print()
        print(markdown_table(rows))
        print()
        print(f"({RATIO_NOTE})")
        print()
        for note in [*notes, environment_note()]:
            print(f"- {note}")
    if relay_rows:
        print()
        print("## Through Portside's app proxy and model ingress vs direct to the app")
        print()
        print(http_relay.markdown_table(relay_rows))
        print()
        print(f"({http_relay.RATIO_NOTE})")
        print()
        for note in [*relay_notes, http_relay.environment_note()]:
            print(f"- {note}")


if __name__ == "__main__":
    main()
