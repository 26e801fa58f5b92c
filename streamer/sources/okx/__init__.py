"""OKX v5 public websocket: option summaries joined with tickers.

Modules: schema, instruments (names, families, requests), protocol (decoder), session.
"""
