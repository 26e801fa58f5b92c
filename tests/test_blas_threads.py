"""Every entry point runs numpy's BLAS single-threaded unless told otherwise (streamer/__init__).

The variable only works if it is set before numpy loads: on 2026-12-03 cli.py set it after
its own imports had loaded numpy, so the CLI ran multi-threaded BLAS all along (a Heston
replay's parameters differed in the 13th digit once it took effect).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

#: Records OPENBLAS_NUM_THREADS at the moment numpy is first imported.
WATCH = """
import os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_NUM_THREADS", "unset"))
sys.meta_path.insert(0, Watch())
import {module}
print(seen[0])
"""


@pytest.mark.parametrize("module", ["streamer.cli", "streamer.app.service", "streamer.client"])
@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("4", "4")])
def test_blas_threads_are_limited_before_numpy_loads(module: str, given: str | None,
                                                     expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    out = subprocess.run([sys.executable, "-c", WATCH.format(module=module)], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
