"""Runs inside an official client's venv: after destroy(), get_info() raises BackendAPIError 404.

Polls get_info() until it fails (deadline 15 s) and reports the error and how long it took.
"""

import sys
import time

from session_common import api_error, emit

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

name = sys.argv[1]
results = {}
with Session() as api_session:
    compute_sess = api_session.ComputeSession.get_or_create("python", name=name)
    results["id"] = str(compute_sess.id)
    results["info_before"] = compute_sess.get_info()
    results["destroy"] = compute_sess.destroy()
    started = time.monotonic()
    while True:
        try:
            info = compute_sess.get_info()
        except BackendAPIError as e:
            results["error"] = api_error(e)
            break
        if time.monotonic() - started > 15:
            results["error"] = None
            results["last_info"] = info
            break
        time.sleep(0.1)
    results["waited"] = time.monotonic() - started
emit(results)
