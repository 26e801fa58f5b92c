"""Volatility models: one module per model, each its numerics and its model object.

:mod:`~streamer.core.models.protocol` says what a model object offers (evaluate,
serialise, calibrate, capabilities as attributes); :mod:`~streamer.core.models.registry`
turns a configured name into one.
"""
