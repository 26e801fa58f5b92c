"""Volatility models: each has parameters, evaluation, and ``calibrate(..., previous=)``."""
