"""Batch mode: the clean, build and exec steps of a run (runtime-semantics.md s.1.5).

Each step is a shell command run in the working directory; ``"*"`` picks the step's heuristic
(``make`` or a ``setup.py`` install for build, ``python main.py`` for exec), an empty command
skips the step.  Output streams back in chunks as it is produced; a failed build skips exec
with exit code 127.  Unlike upstream, no output is dropped between steps: the caller receives
every chunk and one marker per finished step.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

BATCHSITE = os.path.join(os.path.dirname(__file__), "batchsite")
#: A user's programs are what the out-of-memory killer should take first, not the kernel.
#: Raising one's own score needs no privileges (lowering the kernel's would).
PROGRAM_OOM_SCORE_ADJ = 500


def prefer_for_oom_kill() -> None:
    """Raises this process's OOM score; any process may raise its own."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(PROGRAM_OOM_SCORE_ADJ))
    except OSError:
        pass


STEPS = ("clean", "build", "exec")

Emit = Callable[[dict[str, Any]], Awaitable[None]]


def heuristic(step: str, workdir: str) -> str | None:
    """The command ``"*"`` stands for; None means "nothing to do"."""
    if step == "build":
        if os.path.exists(os.path.join(workdir, "Makefile")):
            return "make"
        if os.path.exists(os.path.join(workdir, "setup.py")):
            # PIP_TARGET points at the session's own site-packages (see the agent's environment).
            return "python -m pip install --no-deps --no-build-isolation --quiet ."
        return None
    if step == "exec":
        if os.path.exists(os.path.join(workdir, "main.py")):
            return "python main.py"
        return "echo 'batch: cannot find the main script (main.py)' >&2; exit 127"
    return None


class BatchRun:
    """One batch run; ``run`` emits output chunks and step markers through ``emit``."""

    def __init__(self, run_id: str, workdir: str, input_socket: str, emit: Emit) -> None:
        self.run_id = run_id
        self.workdir = workdir
        self.input_socket = input_socket
        self.emit = emit
        self.process: asyncio.subprocess.Process | None = None

    def _env(self, step: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [BATCHSITE, env.get("PYTHONPATH")]))
        env["PORTSIDE_INPUT_SOCKET"] = self.input_socket
        if step == "exec":
            env["_BACKEND_BATCH_MODE"] = "1"
        return env

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while chunk := await stream.read(4096):
            text = decoder.decode(chunk)
            if text:
                await self.emit({"event": "console", "kind": name, "data": text})
        tail = decoder.decode(b"", final=True)
        if tail:
            await self.emit({"event": "console", "kind": name, "data": tail})

    async def _run_step(self, step: str, command: str) -> int:
        process = await asyncio.create_subprocess_shell(
            # The shell raises its own score, and everything it starts inherits it.
            f"echo {PROGRAM_OOM_SCORE_ADJ} > /proc/self/oom_score_adj 2>/dev/null; {command}",
            cwd=self.workdir,
            env=self._env(step),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        await asyncio.gather(
            self._pump(process.stdout, "stdout"), self._pump(process.stderr, "stderr")
        )
        code = await process.wait()
        self.process = None
        return code

    async def run(self, commands: dict[str, str | None]) -> int:
        exit_code = 0
        for step in STEPS:
            command = commands.get(step) or ""
            if command == "*":
                command = heuristic(step, self.workdir) or ""
            if step == "exec" and exit_code != 0:
                # The build failed: exec is skipped and the run ends as "command not found".
                return 127
            code = await self._run_step(step, command) if command else 0
            if step != "exec":
                await self.emit({"event": "step", "step": step, "exit_code": code})
                if step == "build":
                    exit_code = code
            else:
                exit_code = code
        return exit_code

    def interrupt(self) -> None:
        if self.process is not None and self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGINT)
