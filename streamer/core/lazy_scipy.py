"""scipy's optimiser and splines, imported on first use.

``scipy.optimize`` and ``scipy.interpolate`` take longer to import (0.3 s idle, 0.9 s
on a loaded 2-core VM) than the rest of a ``streamer`` process together, and only
SSVI (``least_squares``) and the models that are costly to evaluate (Heston, through
``CubicSpline``) use them: an SVI or SABR service, a replay and every CLI command
would otherwise pay for them at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from scipy.interpolate import CubicSpline
    from scipy.optimize import OptimizeResult

FloatArray = npt.NDArray[np.float64]


def least_squares(*args: Any, **kwargs: Any) -> OptimizeResult:
    """``scipy.optimize.least_squares``."""
    from scipy.optimize import least_squares as solve

    return solve(*args, **kwargs)


def cubic_spline(x: FloatArray, y: FloatArray) -> CubicSpline:
    """``scipy.interpolate.CubicSpline(x, y)``."""
    from scipy.interpolate import CubicSpline

    return CubicSpline(x, y)
