"""OKX v5 public websocket: option summaries joined with tickers (schema, protocol, session)."""
