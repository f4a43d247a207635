"""Loads the seed's examples (``examples/``) and completes them as the page tells its reader to.

The only changes made are the ones listed in examples/README.md; everything else runs as the
page wrote it.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..harness import REPO

EXAMPLES = REPO / "examples"

#: The reader's ``handle_media``: the page leaves its body open; ours prints what arrived so a
#: test can check it.
HANDLE_MEDIA = """
import json as _json

def handle_media(record):
    media_type = record[0]  # MIME-Type string
    media_data = record[1]  # content
    print("MEDIA " + _json.dumps([media_type, media_data]))
"""


def source(name: str) -> str:
    return (EXAMPLES / name).read_text()


def with_handle_media(code: str) -> str:
    """Defines handle_media before the example (after its imports are irrelevant: it is a def)."""
    return HANDLE_MEDIA + "\n" + code


def with_user_inputs(code: str) -> str:
    """Applies the 'Handling user inputs' replacement to an execute loop's status check."""
    old = (
        '            if result["status"] == "finished":\n'
        "                break\n"
        "            else:\n"
        '                mode = "continued"\n'
        '                code = ""\n'
    )
    snippet = (
        source("10_user_inputs.snippet").strip("\n").removeprefix("...\n").removesuffix("\n...")
    )
    new = "".join("            " + line + "\n" if line else "\n" for line in snippet.splitlines())
    assert old in code, "the example's status check is not where the page puts it"
    return "import getpass\n" + code.replace(old, new)


#: The snippet line of the execution examples (query and async mode).
HELLO_WORLD = "code = 'print(\"hello world\")'"


def with_program(code: str, program: str) -> str:
    """Runs ``program`` instead of the page's ``print("hello world")`` snippet."""
    assert HELLO_WORLD in code, "the example has no hello-world snippet"
    return code.replace(HELLO_WORLD, f"code = {program!r}", 1)


def for_official(code: str) -> str:
    """NOTES.md's translations, where the official client lacks the page's spelling.

    One more than NOTES.md lists: the page continues a run with ``mode = "continued"``, which
    both official clients refuse before sending anything ("Invalid execution mode"); they
    spell it ``"continue"``.  A run answers ``continued`` only when it has been quiet for 2 s,
    so without this an example passes or fails with the machine's load.

    Only for the official clients: Portside's SDK takes the page as written.
    """
    return (
        code.replace("client_token=", "name=")
        .replace(".send_text(", ".send_str(")
        .replace('mode = "continued"', 'mode = "continue"')
    )


def fill(code: str, call: str, replacement: str) -> str:
    """Replaces the page's ``call(...)`` placeholder with a complete call."""
    placeholder = f"{call}(...)"
    assert placeholder in code
    return code.replace(placeholder, replacement)


def add_await(code: str, expression: str) -> str:
    assert expression in code
    return code.replace(expression, "await " + expression)


@dataclass(frozen=True)
class ClientPython:
    """A Python interpreter with some ``ai.backend.client``: ours or an official one."""

    name: str
    python: Path

    def run(
        self,
        code: str,
        env: Mapping[str, str],
        *,
        cwd: Path,
        stdin: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        script = cwd / "example.py"
        script.write_text(code)
        return subprocess.run(
            [str(self.python), str(script)],
            env=full_env,
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_in_terminal(
        self,
        code: str,
        env: Mapping[str, str],
        *,
        cwd: Path,
        answers: Sequence[tuple[str, str]] = (),
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the example with a pseudo-terminal as its controlling terminal and std streams.

        ``getpass.getpass()`` reads from the terminal (``/dev/tty``), not from stdin, with echo
        off: each ``(prompt, answer)`` is typed once ``prompt`` shows on the terminal after the
        previous answer.  ``stdout`` holds everything the terminal showed (stderr included),
        with ``\\r\\n`` turned into ``\\n``.
        """
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        script = cwd / "example.py"
        script.write_text(code)
        # A new session whose controlling terminal is the pty, then the example itself.
        bootstrap = (
            "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
        )
        args = [str(self.python), "-c", bootstrap, str(script)]
        master, slave = os.openpty()
        try:
            process = subprocess.Popen(
                args, env=full_env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave
            )
        finally:
            os.close(slave)
        output = bytearray()
        pending = list(answers)
        searched_from = 0
        deadline = time.monotonic() + timeout
        try:
            while True:
                if pending:
                    prompt, answer = pending[0]
                    found = output.find(prompt.encode(), searched_from)
                    if found >= 0:
                        os.write(master, answer.encode() + b"\n")
                        searched_from = found + len(prompt)
                        pending.pop(0)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(args, timeout, output=bytes(output))
                ready, _, _ = select.select([master], [], [], min(remaining, 0.5))
                if not ready:
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal has exited
                    data = b""
                if not data:
                    break
                output += data
            returncode = process.wait(max(deadline - time.monotonic(), 1))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(master)
        text = output.decode(errors="replace").replace("\r\n", "\n")
        return subprocess.CompletedProcess(args, returncode, stdout=text, stderr="")


OURS = ClientPython("portside", Path(sys.executable))
