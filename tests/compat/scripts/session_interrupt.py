"""Runs inside an official client's venv: interrupt() ends a sleeping cell early.

The first execute call comes back ``continued`` while the cell sleeps; the script then calls
interrupt() and continues the run until it finishes.
"""

import sys

from session_common import emit, run

from ai.backend.client.session import Session

name = sys.argv[1]
with Session() as api_session:
    compute_sess = api_session.ComputeSession.get_or_create("python", name=name)
    interrupted = []

    def interrupt_once(result):
        if result["status"] == "continued" and not interrupted:
            compute_sess.interrupt()
            interrupted.append(True)

    try:
        results = {
            "sleep": run(
                compute_sess,
                'import time\nprint("sleeping", flush=True)\ntime.sleep(30)\nprint("woke up")',
                on_status=interrupt_once,
            ),
            "interrupted": bool(interrupted),
            "after": run(compute_sess, 'print("still alive")'),
        }
    finally:
        compute_sess.destroy()
emit(results)
