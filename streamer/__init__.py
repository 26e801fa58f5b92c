"""streamer: a streaming implied-volatility surface service for crypto options."""

import os

__version__ = "0.1.0"

# Calibration does many tiny matrix products: BLAS worker threads only contend with the
# event loop for the cores (measured 20x slower at random on 2 cores). Set here, before any
# of our modules loads numpy, so every entry point (the CLI, a benchmark, a test, a
# program that imports the service) gets it; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
