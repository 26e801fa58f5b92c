"""Deribit: JSON-RPC 2.0 over websocket (schema, pure protocol, session)."""
