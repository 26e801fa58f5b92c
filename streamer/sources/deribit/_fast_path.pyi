from streamer.sources.base import InstrumentCache
from streamer.sources.decoded import InstrumentInfo
from streamer.types import Quote

class TickerQuoter:
    """A ticker notification's bytes to its Quote or reject reason; None declines."""

    def __init__(self, quote_type: type[Quote], instruments: InstrumentCache[InstrumentInfo],
                 venue: str, max_known: int = 100_000) -> None: ...
    def __call__(self, frame: bytes, received_ts_ns: int, /) -> Quote | str | None: ...
