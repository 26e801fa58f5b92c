"""The native modules: everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds; the Deribit decoder
then takes its msgspec fast path, the SVI fit its numpy loop, the implied vols their
numpy inversion, the SVI smile metrics their numpy solver, the SVI fit errors their
numpy linear algebra, the SVI butterfly margins their numpy grid, the spread statistics
their numpy rows, the variance index its numpy sums, the SVI calendar gaps and
jump-wings their numpy and Python steps, the dynamics' ATM points np.interp and the JSON
surface decoder its bytes.replace (the same results, slower).
"""

from setuptools import Extension, setup


def _native(name: str, source: str, depends: list[str]) -> Extension:
    # IEEE arithmetic as the numpy fallbacks do it (no fast-math, no fused multiply-add)
    return Extension(name, sources=[source], depends=depends,
                     extra_compile_args=["-fno-fast-math", "-ffp-contract=off", "-Wall",
                                         "-Wextra"],
                     optional=True)


#: the headers every core kernel includes (a change to one rebuilds them all)
_CORE = ["streamer/core/_buffers.h", "streamer/core/_numpy_order.h"]

setup(ext_modules=[
    _native("streamer.sources.deribit._fast_path", "streamer/sources/deribit/_fast_path.c",
            ["streamer/sources/deribit/_json_scan.h",
             "streamer/sources/deribit/_ticker_frame.h"]),
    _native("streamer.core.models._svi_lm", "streamer/core/models/_svi_lm.c",
            [*_CORE, "streamer/core/models/_svi_rows.h"]),
    _native("streamer.core._normalised_black", "streamer/core/_normalised_black.c", _CORE),
    _native("streamer.sinks._null_floats", "streamer/sinks/_null_floats.c", []),
    _native("streamer.core._svi_smile", "streamer/core/_svi_smile.c", _CORE),
    _native("streamer.core._fit_errors", "streamer/core/_fit_errors.c", _CORE),
    _native("streamer.core.models._svi_butterfly", "streamer/core/models/_svi_butterfly.c",
            _CORE),
    _native("streamer.pipeline._spread_stats", "streamer/pipeline/_spread_stats.c", _CORE),
    _native("streamer.core._variance_index", "streamer/core/_variance_index.c", _CORE),
    _native("streamer.core._svi_slices", "streamer/core/_svi_slices.c", _CORE),
    _native("streamer.core._atm_tenors", "streamer/core/_atm_tenors.c", _CORE),
])
