"""The native modules: everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds; the Deribit decoder
then takes its msgspec fast path, the SVI fit its numpy loop and the implied vols
their numpy inversion (the same results, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "streamer.sources.deribit._fast_path",
    sources=["streamer/sources/deribit/_fast_path.c"],
    depends=["streamer/sources/deribit/_json_scan.h", "streamer/sources/deribit/_ticker_frame.h"],
    extra_compile_args=["-fno-fast-math", "-ffp-contract=off", "-Wall", "-Wextra"],
    optional=True,
), Extension(
    "streamer.core.models._svi_lm",
    sources=["streamer/core/models/_svi_lm.c"],
    depends=["streamer/core/_buffers.h"],
    extra_compile_args=["-fno-fast-math", "-ffp-contract=off", "-Wall", "-Wextra"],
    optional=True,
), Extension(
    "streamer.core._normalised_black",
    sources=["streamer/core/_normalised_black.c"],
    depends=["streamer/core/_buffers.h"],
    extra_compile_args=["-fno-fast-math", "-ffp-contract=off", "-Wall", "-Wextra"],
    optional=True,
)])
