"""IO in: venue websocket sessions, tick-file replay."""
