"""What a kernel forked from the zygote copies of the zygote's memory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from portside.kernel.zygote import _make_immortal, immortal_objects_supported

#: A zygote's worth of objects (some 12 MiB: tuples, lists, strings), made immortal or not,
#: then a forked child that uses each of them once, as a kernel uses the zygote's objects.
#: Prints the page faults the child took while doing so.
CHILD_FAULTS = """
import gc, os, resource, sys
from portside.kernel.zygote import _make_immortal

data = [("item-%d" % i, [i, str(i) * 3]) for i in range(50_000)]
if sys.argv[1] == "immortal":
    _make_immortal([data])
gc.freeze()
pid = os.fork()
if pid == 0:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    total = 0
    for name, pair in data:
        total += len(name) + len(pair[1])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    os.write(1, b"%d" % (after - before))
    os._exit(0)
os.waitpid(pid, 0)
"""


def child_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD_FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_a_forked_kernel_uses_the_zygotes_objects_without_copying_their_pages() -> None:
    mortal = child_faults("mortal")
    immortal = child_faults("immortal")
    # Using the 50,000 entries writes every page they are on when they are mortal.
    assert mortal > 2000
    if immortal_objects_supported():
        assert immortal < mortal / 10, (immortal, mortal)
    else:
        # Elsewhere the zygote leaves its objects as they are, and kernels copy what they use.
        assert immortal > mortal / 2, (immortal, mortal)


def parts(value: object) -> Iterator[object]:
    """The value and, for a tuple, everything in it."""
    yield value
    if isinstance(value, tuple):
        for item in value:
            yield from parts(item)


def test_the_constants_of_the_zygotes_functions_are_made_immortal_too() -> None:
    # Every run of a function counts references to the constants it loads; a kernel running a
    # zygote's function would otherwise copy the pages its constants are on.  The collector
    # does not show what a code object holds, so these are only found through the code.
    namespace: dict[str, Any] = {}
    exec("def cell():\n    return 2.5, 'not a name', (3.5, 'nested too')\n", namespace)
    cell = namespace["cell"]
    constants = list(parts(cell()))
    assert len(constants) == 6
    _make_immortal([cell])
    counts = [sys.getrefcount(c) for c in constants]
    if immortal_objects_supported():
        assert all(count >= 2**32 - 1 for count in counts), counts
    else:
        assert all(count < 100 for count in counts), counts
