"""Loads the seed's examples (``examples/``) and completes them as the page tells its reader to.

The only changes made are the ones listed in examples/README.md; everything else runs as the
page wrote it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
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


OURS = ClientPython("portside", Path(sys.executable))
