"""The native modules: everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds; the Deribit decoder
then takes its msgspec fast path and the SVI fit its numpy loop (the same results,
slower).
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
    extra_compile_args=["-fno-fast-math", "-ffp-contract=off", "-Wall", "-Wextra"],
    optional=True,
)])
