"""A rehearsal kernel, and the zygote's functions gathered into pages of their own.

A kernel forked from the zygote writes into the code object of every function it runs: the
specializing interpreter keeps its counters and caches in the bytecode.  So each page holding
such a code object is copied into the kernel, however little of it the kernel uses.  After
the imports, the code objects of the 960 functions that a kernel's start and its first cell
run are scattered over some 600 pages of the zygote, among 19,000 others.

So the agent's first kernel of each runtime's pool is a rehearsal: it records which functions it
runs (``record``, ``recorded``) while it starts, is handed out and runs ``print(1)``, and
the zygote then gives those functions copies of their code side by side
(``gather``): some 200 pages instead.  Kernels forked afterwards copy a quarter fewer pages
and keep that much less private memory (docs/decisions.md has the figures).

A copy is the same code; the old object is kept (as an immortal object it is never freed
anyway) so that the copies do not land in its place.
"""

from __future__ import annotations

import gc
import sys
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

#: The id of each code object this process has run since ``record``, in the order first run.
_codes: dict[int, None] = {}
#: Code objects the zygote replaced, kept so that no copy is allocated where one was.
_replaced: list[types.CodeType] = []


def record() -> None:
    """In the rehearsal kernel: notes each function run from now on, in every thread.

    The ids are the zygote's own addresses of those code objects, since the kernel is its
    fork; the zygote matches them against the code objects it holds (``gather``).
    """

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            _codes[id(frame.f_code)] = None

    threading.setprofile(profile)
    sys.setprofile(profile)


def recorded() -> list[int]:
    return list(_codes)


def gather(code_ids: Iterable[int], make_immortal: Callable[[list[Any]], None]) -> dict[str, int]:
    """In the zygote: gives each function whose code a rehearsal ran a copy of that code, all
    the copies allocated one after another; returns how many functions moved and the pages
    their code spanned before and after.

    A copied function's nested code objects (the code of the functions it defines when it
    runs) are copied too where the rehearsal ran them.  ``make_immortal`` then treats the
    copies as the zygote's other objects.
    """
    wanted = set(code_ids)
    copies: dict[int, types.CodeType] = {}

    def copy(code: types.CodeType) -> types.CodeType:
        done = copies.get(id(code))
        if done is not None:
            return done
        consts = code.co_consts
        if any(type(c) is types.CodeType and id(c) in wanted for c in consts):
            consts = tuple(copy(c) if type(c) is types.CodeType else c for c in consts)
        _replaced.append(code)
        copies[id(code)] = code.replace(co_consts=consts)
        return copies[id(code)]

    # The zygote froze its objects, and the collector lists frozen ones only once thawed.
    gc.unfreeze()
    try:
        functions = [
            f
            for f in gc.get_objects()
            if type(f) is types.FunctionType and id(f.__code__) in wanted
        ]
        pages_before = {id(f.__code__) // 4096 for f in functions}
        for function in functions:
            function.__code__ = copy(function.__code__)
        make_immortal(list(copies.values()))
    finally:
        gc.freeze()
    return {
        "functions": len(functions),
        "pages_before": len(pages_before),
        "pages_after": len({id(f.__code__) // 4096 for f in functions}),
    }
