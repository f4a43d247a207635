"""Runs inside an official client's venv: upload a script, then batch mode ``exec: python <file>``.

argv: session name, then the directory holding ``batch_main.py`` (written by the test).
"""

import os
import sys

from session_common import emit, run

from ai.backend.client.session import Session

name, workdir = sys.argv[1], sys.argv[2]
os.chdir(workdir)
with Session() as api_session:
    compute_sess = api_session.ComputeSession.get_or_create("python", name=name)
    try:
        compute_sess.upload(["batch_main.py"])
        results = {
            "batch": run(
                compute_sess, "", mode="batch", opts={"exec": "python batch_main.py one two"}
            ),
            "failing": run(compute_sess, "", mode="batch", opts={"exec": "python missing.py"}),
            "input": run(
                compute_sess,
                "",
                mode="batch",
                opts={"exec": "python batch_main.py --ask"},
                inputs=["batch-user"],
            ),
        }
    finally:
        compute_sess.destroy()
emit(results)
