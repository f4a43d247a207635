"""Runs inside an official client's venv: sessions that mount a folder the CLI filled.

argv: folder name, name of a file in it.  Prints what a session with ``mounts=[folder]`` read,
what a second session with the folder at an alias wrote, and what a read-only mount said
(with ``mount_options``, or a folder ``<name>-ro`` created read-only, which the test deletes).
"""

import inspect
import sys

from session_common import emit, run

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

folder, filename = sys.argv[1], sys.argv[2]
results = {}
with Session() as api_session:
    reader = api_session.ComputeSession.get_or_create("python", mounts=[folder])
    try:
        code = (
            "import hashlib\n"
            f"print(hashlib.sha256(open('/home/work/{folder}/{filename}', 'rb').read())"
            ".hexdigest())"
        )
        results["read"] = run(reader, code)
    finally:
        reader.destroy()
    writer = api_session.ComputeSession.get_or_create(
        "python", mounts=[folder], mount_map={folder: "data"}
    )
    try:
        results["write"] = run(writer, "open('/home/work/data/from-session.txt', 'w').write('hi')")
    finally:
        writer.destroy()
    # 23.9.10's get_or_create has no mount_options: a folder created read-only serves there.
    if "mount_options" in inspect.signature(api_session.ComputeSession.get_or_create).parameters:
        # 26.9.6 takes its pydantic model (it calls model_dump on each value).
        from ai.backend.common.dto.manager.session.types import MountOption

        mount, options = folder, {"mount_options": {folder: MountOption(permission="ro")}}
    else:
        mount, options = folder + "-ro", {}
        api_session.VFolder.create(mount, "local", permission="ro")
    read_only = api_session.ComputeSession.get_or_create("python", mounts=[mount], **options)
    try:
        results["read_only"] = run(read_only, f"open('/home/work/{mount}/x', 'w')")
    finally:
        read_only.destroy()
    try:
        api_session.ComputeSession.get_or_create("python", mounts=["no-such-folder-here"])
    except BackendAPIError as e:
        results["unknown"] = {"status": e.status, "data": e.data}
emit(results)
