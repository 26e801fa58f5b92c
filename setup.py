"""The one native module: everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and the Deribit
decoder takes its msgspec fast path (the same results, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "streamer.sources.deribit._fast_path",
    sources=["streamer/sources/deribit/_fast_path.c"],
    depends=["streamer/sources/deribit/_json_scan.h", "streamer/sources/deribit/_ticker_frame.h"],
    extra_compile_args=["-fno-fast-math", "-ffp-contract=off", "-Wall", "-Wextra"],
    optional=True,
)])
