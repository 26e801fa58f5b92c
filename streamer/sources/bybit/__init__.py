"""Bybit v5 public option websocket, plus the REST instrument list (schema, protocol, session)."""
