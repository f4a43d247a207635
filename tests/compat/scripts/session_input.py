"""Runs inside an official client's venv: input() in query mode answered with mode="input"."""

import sys

from session_common import emit, run

from ai.backend.client.session import Session

name = sys.argv[1]
with Session() as api_session:
    compute_sess = api_session.ComputeSession.get_or_create("python", name=name)
    try:
        results = {
            "input": run(
                compute_sess,
                'name = input("Your name? ")\nprint(f"Hello, {name}!")',
                inputs=["Portside"],
            ),
            "password": run(
                compute_sess,
                'import getpass\nprint(len(getpass.getpass("Secret? ")))',
                inputs=["hunter2"],
            ),
        }
    finally:
        compute_sess.destroy()
emit(results)
