"""Runs inside an official client's venv: upload and download files, bytes compared by the test.

argv: session name, the directory holding ``payload.bin`` (written by the test), and the
download destination.  The kernel also writes ``made.bin`` itself; both come back into dest.
"""

import os
import sys

from session_common import emit, run

from ai.backend.client.session import Session

name, workdir, dest = sys.argv[1], sys.argv[2], sys.argv[3]
os.chdir(workdir)
with Session() as api_session:
    compute_sess = api_session.ComputeSession.get_or_create("python", name=name)
    try:
        compute_sess.upload(["payload.bin"])
        made = run(compute_sess, 'open("made.bin", "wb").write(bytes(range(256)) * 400)')
        downloaded = compute_sess.download(["payload.bin", "made.bin"], dest=dest)
        results = {"made": made, "download": downloaded}
    finally:
        compute_sess.destroy()
emit(results)
