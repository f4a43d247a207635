"""What a kernel forked from the zygote copies of the zygote's memory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from portside.kernel.zygote import (
    _empty_type_cache,
    _make_immortal,
    immortal_objects_supported,
)


def in_forked_child(work: str) -> str:
    """Script lines that fork, run ``work`` (indented code) in the child and print the page
    faults it took: what a kernel forked from the zygote copies while doing that."""
    return (
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        + work.strip("\n")
        + "\n"
        "    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        '    os.write(1, b"%d" % (after - before))\n'
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )


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
""" + in_forked_child(
    """
    total = 0
    for name, pair in data:
        total += len(name) + len(pair[1])
"""
)


def child_faults(mode: str, script: str = CHILD_FAULTS) -> int:
    """The page faults ``script``'s forked child reports, the parent run with ``mode``."""
    out = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True
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


#: A class with 2,000 subclasses, all looked up (so each has a version tag), settled or not,
#: then a forked child that reads the base's annotations and looks something up in each
#: subclass, as pyzmq does with ``typing.Generic``.  Prints the child's page faults.
CHILD_CLASS_FAULTS = """
import gc, os, resource, sys
from portside.kernel.zygote import _make_immortal, _settle_classes

class Base:
    pass

subclasses = [type("Sub%d" % i, (Base,), {"value": i}) for i in range(2_000)]
for cls in subclasses:
    getattr(cls, "missing", None)
if sys.argv[1] == "settled":
    _settle_classes()
# As in the zygote: using a class then writes nothing of its own.
_make_immortal([Base, subclasses])
gc.freeze()
""" + in_forked_child(
    """
    getattr(Base, "__annotations__", {})
    for cls in subclasses:
        getattr(cls, "missing", None)
"""
)


def test_reading_a_base_class_annotations_in_a_kernel_rewrites_no_subclass() -> None:
    # Reading the annotations of a class that has none stores an empty dict in it, which
    # invalidates the version tag of every subclass: each is written again on its next lookup.
    runs = {mode: child_faults(mode, CHILD_CLASS_FAULTS) for mode in ("unsettled", "settled")}
    assert runs["unsettled"] > 100, runs
    assert runs["settled"] < runs["unsettled"] / 4, runs


def test_the_methods_of_static_classes_are_made_immortal() -> None:
    # The collector does not list CPython's static classes, so only settling reaches their
    # dicts; a kernel looking ``list.append`` up would otherwise write its count.
    code = (
        "import sys; from portside.kernel.zygote import _settle_classes; _settle_classes(); "
        "print(sys.getrefcount(list.__dict__['append']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if immortal_objects_supported():
        assert int(out.stdout) >= 2**32 - 1
    else:
        assert int(out.stdout) < 2**32 - 1


def test_an_emptied_type_cache_holds_no_name() -> None:
    # A name made at run time and looked up on a class is held by the interpreter's cache of
    # class attributes; a kernel that reused the entry would free it, in a shared page.
    class Looked:
        pass

    name = "".join(["made_at_", "run_time"])
    held = sys.getrefcount(name)
    getattr(Looked, name, None)
    # Cached twice: looked up on the class's metaclass first, then on the class.
    assert sys.getrefcount(name) > held
    _empty_type_cache()
    assert sys.getrefcount(name) == held


#: Frees every other one of 4,000 chunks, then takes the free ones: a later allocation comes
#: from beyond every chunk there was.  Prints the number taken and whether that held.
CHILD_HEAP = """
from portside.kernel.linux import free, malloc
from portside.kernel.zygote import _take_free_heap_chunks

chunks = [malloc(200) for _ in range(4_000)]
for address in chunks[::2]:
    free(address)
taken = _take_free_heap_chunks()
after = malloc(200)
print(taken, after > max(chunks))
"""


def test_the_zygote_takes_its_free_heap_chunks_so_kernels_allocate_beyond_them() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD_HEAP], capture_output=True, text=True, check=True
    )
    taken, beyond = out.stdout.split()
    assert int(taken) >= 2_000
    assert beyond == "True"


#: 300 modules with 300 globals each (each module's keys on pages of their own), versioned
#: or not, then a forked child that runs new code reading a global of each, as a kernel runs
#: the rehearsal's fresh copies.  Prints the child's page faults.
CHILD_GLOBALS_FAULTS = """
import gc, os, resource, sys, types
from portside.kernel.zygote import _make_immortal, _version_module_globals

modules = []
for i in range(300):
    module = types.ModuleType("portside_test_module_%d" % i)
    module.__dict__.update(("name_%d" % n, n) for n in range(300))
    sys.modules[module.__name__] = module
    modules.append(module)
if sys.argv[1] == "versioned":
    _version_module_globals()
_make_immortal([modules])
gc.freeze()
source = compile("def read():\\n    return name_7\\n", "<test>", "exec")
code = next(c for c in source.co_consts if isinstance(c, types.CodeType))
readers = [types.FunctionType(code.replace(), m.__dict__) for m in modules]
""" + in_forked_child(
    """
    for read in readers:
        for _ in range(4):
            read()
"""
)


def test_a_kernel_reading_module_globals_stamps_no_shared_dict() -> None:
    runs = {mode: child_faults(mode, CHILD_GLOBALS_FAULTS) for mode in ("unversioned", "versioned")}
    # Each unversioned module's keys are stamped in the child: a copied page each.
    assert runs["unversioned"] > 200, runs
    assert runs["versioned"] < runs["unversioned"] / 3, runs
