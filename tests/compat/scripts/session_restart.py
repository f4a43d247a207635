"""Runs inside an official client's venv: restart loses variables but keeps uploaded files.

argv: session name, then the directory holding ``kept.txt`` (written by the test).
"""

import json
import os
import sys

from session_common import emit, run

from ai.backend.client.session import Session

name, workdir = sys.argv[1], sys.argv[2]
os.chdir(workdir)
with Session() as api_session:
    compute_sess = api_session.ComputeSession.get_or_create("python", name=name)
    try:
        compute_sess.upload(["kept.txt"])
        results = {"set": run(compute_sess, "remembered = 42\nprint(remembered)")}
        compute_sess.restart()
        results["after_restart"] = run(compute_sess, "print(remembered)")
        listing = compute_sess.list_files(".")
        results["files_type"] = type(listing["files"]).__name__
        results["file_names"] = [f["filename"] for f in json.loads(listing["files"])]
        results["read_back"] = run(compute_sess, 'print(open("kept.txt").read(), end="")')
    finally:
        compute_sess.destroy()
emit(results)
