"""streamer: a streaming implied-volatility surface service for crypto options."""

__version__ = "0.1.0"
