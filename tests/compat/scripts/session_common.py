"""Shared by the session scripts, inside an official client's venv: an execute loop and output.

Not a scenario of its own; the scripts beside it import it (their directory is on sys.path).
"""

import json
import sys
import time


def run(compute_sess, code="", mode="query", opts=None, inputs=(), on_status=None):
    """Drives one run to ``finished`` the way the examples page does, and records what came.

    ``inputs`` answer ``waiting-input`` in order; ``on_status(result)`` sees every result.
    Returns ``{"statuses", "stdout", "stderr", "media", "exitCode", "options", "elapsed"}``.
    """
    started = time.monotonic()
    inputs = list(inputs)
    opts = dict(opts or {})
    run_id = None
    statuses, stdout, stderr, media, options = [], [], [], [], []
    while True:
        result = compute_sess.execute(run_id, code, mode=mode, opts=opts)
        opts = {}
        run_id = result["runId"]
        statuses.append(result["status"])
        options.append(result.get("options"))
        for rec in result.get("console", []):
            if rec[0] == "stdout":
                stdout.append(rec[1])
            elif rec[0] == "stderr":
                stderr.append(rec[1])
            else:
                media.append(rec)
        if on_status is not None:
            on_status(result)
        if result["status"] == "finished":
            break
        if result["status"] == "waiting-input":
            mode, code = "input", inputs.pop(0)
        else:
            mode, code = "continue", ""
        if time.monotonic() - started > 120:
            raise TimeoutError(f"the run did not finish: {statuses}")
    return {
        "statuses": statuses,
        "stdout": "".join(stdout),
        "stderr": "".join(stderr),
        "media": media,
        "exitCode": result.get("exitCode"),
        "options": options,
        "elapsed": time.monotonic() - started,
    }


def api_error(e):
    """A BackendAPIError as plain JSON."""
    return {"status": e.status, "reason": e.reason, "data": e.data}


def emit(results):
    print(json.dumps(results, default=str))
    sys.stdout.flush()
