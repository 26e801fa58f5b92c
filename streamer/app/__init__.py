"""The app layer: the service's modes, its feeds, file replay, the record and backtest
commands, progress and closing lines, metrics (DESIGN.md layer 4)."""
