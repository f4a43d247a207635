"""The zygote gathers the code a rehearsal ran into pages of its own."""

from __future__ import annotations

import json
import subprocess
import sys

#: 4,000 functions, each defining a nested one when it runs, of which every tenth is run while
#: recording, as a rehearsal kernel runs a few of the zygote's many functions; then gathered
#: in the same process (standing in for the zygote, whose addresses a forked kernel shares).
#: Prints what a test checks.
GATHER = """
import json, sys, types
from portside.kernel import rehearsal
from portside.kernel.zygote import _make_immortal, immortal_objects_supported

ns = {}
for i in range(4000):
    exec(f"def f{i}(x):\\n def inner(y):\\n  return x + y + {i}\\n return inner(1)\\n", ns)
used = [ns[f"f{i}"] for i in range(0, 4000, 10)]
unused = [ns[f"f{i}"].__code__ for i in range(1, 4000, 10)]
originals = [f.__code__ for f in used]
nested = [next(c for c in code.co_consts if type(c) is types.CodeType) for code in originals]
rehearsal.record()
results = [f(1) for f in used]
sys.setprofile(None)
gathered = rehearsal.gather(rehearsal.recorded(), _make_immortal)
copies = [f.__code__ for f in used]
copied_nested = [next(c for c in code.co_consts if type(c) is types.CodeType) for code in copies]
print(json.dumps({
    "gathered": gathered,
    "same_results": [f(1) for f in used] == results,
    "all_copied": all(c is not o and c.co_code == o.co_code for c, o in zip(copies, originals)),
    "nested_copied": all(c is not o for c, o in zip(copied_nested, nested)),
    "unused_untouched": all(ns[f"f{i}"].__code__ is unused[i // 10] for i in range(1, 4000, 10)),
    "immortal": all(sys.getrefcount(c) >= 2**32 - 1 for c in copies),
    "immortal_supported": immortal_objects_supported(),
}))
"""


def test_the_functions_a_rehearsal_ran_get_copies_of_their_code_side_by_side() -> None:
    out = subprocess.run([sys.executable, "-c", GATHER], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    gathered = result["gathered"]
    assert gathered["functions"] == 400
    # Every tenth of the code objects compiled one after another lies on a page of its own;
    # the copies share pages.
    assert gathered["pages_after"] * 3 < gathered["pages_before"], gathered
    assert result["same_results"]
    assert result["all_copied"]
    # The code of the functions a copied function defines as it runs is copied with it.
    assert result["nested_copied"]
    assert result["unused_untouched"]
    assert result["immortal"] == result["immortal_supported"]
