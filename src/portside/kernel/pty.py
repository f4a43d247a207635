"""Interactive terminals inside the session: a shell on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import struct
import termios
from collections.abc import Awaitable, Callable

from portside.kernel.batch import prefer_for_oom_kill

Output = Callable[[bytes], Awaitable[None]]


def default_shell() -> list[str]:
    for shell in ("bash", "sh"):
        path = shutil.which(shell)
        if path:
            return [path, "-l"] if shell == "bash" else [path]
    return ["/bin/sh"]


class PtySession:
    """A shell whose terminal output goes to ``output`` until the shell exits."""

    def __init__(self, workdir: str, rows: int, cols: int, command: list[str] | None = None):
        self.workdir = workdir
        self.command = command or default_shell()
        self.pid, self.fd = os.forkpty()
        if self.pid == 0:
            try:
                prefer_for_oom_kill()
                os.chdir(workdir)
                env = dict(os.environ, TERM="xterm-256color")
                os.execvpe(self.command[0], self.command, env)
            finally:
                os._exit(127)
        os.set_blocking(self.fd, False)
        self.resize(rows, cols)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[written:]

    async def pump(self, output: Output) -> int:
        """Forwards terminal output until the shell exits; returns its exit code."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.fd, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the shell closed its side
                    break
                if not data:
                    break
                await output(data)
        finally:
            loop.remove_reader(self.fd)
            os.close(self.fd)
        _, status = await asyncio.to_thread(os.waitpid, self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        try:
            os.killpg(os.getpgid(self.pid), signal.SIGHUP)
        except ProcessLookupError:
            pass
