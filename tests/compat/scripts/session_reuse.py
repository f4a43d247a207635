"""Runs inside an official client's venv: get_or_create twice with one name, and the query count.

argv: session name.  Prints the two ids, numQueriesExecuted before and after two executions,
and what get_info returned.
"""

import sys

from session_common import emit, run

from ai.backend.client.session import Session

name = sys.argv[1]
results = {}
with Session() as api_session:
    first = api_session.ComputeSession.get_or_create("python", name=name)
    try:
        second = api_session.ComputeSession.get_or_create("python", name=name)
        results["ids"] = [str(first.id), str(second.id)]
        before = first.get_info()
        run(first, "x = 1")
        run(first, "x += 1")
        after = first.get_info()
        results["info_before"] = before
        results["info_after"] = after
    finally:
        first.destroy()
emit(results)
