"""The normal distribution function, its quantile and the scaled complementary error
function over arrays: the core's three special functions, in one home.

From the C kernel of :mod:`streamer.core.normalised_black` where it was built (its own
``ndtr``, ``ndtri`` and ``erfcx``, checked against scipy.special in the tests), else from
scipy.special. The reason is the import: scipy.special takes longer to load (0.3 s idle)
than the rest of a replay's modules together, for three functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from streamer.core.native import extension

FloatArray = npt.NDArray[np.float64]
Special = Callable[[npt.ArrayLike], Any]


def _from_kernel(name: str) -> Special | None:
    # a kernel built before these entry points (or none): scipy's
    module = extension("streamer.core._normalised_black", name, "total_vol")
    if module is None:
        return None
    into = cast(Callable[[FloatArray, FloatArray], None], getattr(module, name))

    def apply(x: npt.ArrayLike) -> Any:
        a = np.asarray(x, np.float64)
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        out = np.empty(a.shape)
        into(a, out)
        return out if out.ndim else out[()]  # a scalar in, a numpy scalar out (as scipy)
    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = f"scipy.special.{name} of each element (C kernel)."
    return apply


def _from_scipy(name: str) -> Special:
    import scipy.special

    return cast(Special, getattr(scipy.special, name))


def _special(name: str) -> Special:
    return _from_kernel(name) or _from_scipy(name)


ndtr = _special("ndtr")
ndtri = _special("ndtri")
erfcx = _special("erfcx")
NATIVE = _from_kernel("ndtr") is not None
