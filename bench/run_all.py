"""All session benchmarks in one run, ending with one markdown table for the README.

The benchmarks run one after another, never overlapping, since each would steal the other's
two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import creation_rate, idle_memory, session_start
from bench.common import (
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


async def run_all(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for name in args.only or list(BENCHMARKS):
        module, title = BENCHMARKS[name]
        log(f"=== {name}")
        start = time.monotonic()
        table, extra = await module.run(args)
        print_table(f"{title}: Portside vs Jupyter Kernel Gateway", table, extra)
        log(f"=== {name} took {time.monotonic() - start:.0f} s")
        rows.extend(table)
        notes.extend(f"{title}: {note}" for note in extra)
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--only", action="append", choices=list(BENCHMARKS), help="run just these (repeatable)"
    )
    for module, _ in BENCHMARKS.values():
        module.add_arguments(parser)
    args = parser.parse_args()
    rows, notes = asyncio.run(run_all(args))
    print("## Portside vs Jupyter Kernel Gateway")
    print()
    print(markdown_table(rows))
    print()
    print("Ratio: how many times better Portside is than Kernel Gateway.")
    print()
    for note in [*notes, environment_note()]:
        print(f"- {note}")


if __name__ == "__main__":
    main()
