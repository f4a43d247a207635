"""Runs inside an official client's venv: query mode, a success and an uncaught exception."""

import sys

from session_common import emit, run

from ai.backend.client.session import Session

name = sys.argv[1]
with Session() as api_session:
    compute_sess = api_session.ComputeSession.get_or_create("python", name=name)
    try:
        results = {
            "hello": run(compute_sess, 'print("hello world")'),
            "error": run(compute_sess, "1/0"),
            "state": run(compute_sess, "y = 21"),
            "state_kept": run(compute_sess, "print(y * 2)"),
        }
    finally:
        compute_sess.destroy()
emit(results)
