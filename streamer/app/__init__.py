"""The app layer: the service's modes, its feeds, file replay, the record and backtest
commands and their closing lines (DESIGN.md layer 4)."""
