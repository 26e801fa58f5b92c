"""Binance European options market streams (schema, protocol, session)."""
