"""Deribit's DVOL notifications: decoded to decimal vol, routed to the engine, published.

The frame is the example of Deribit's API documentation for the
``deribit_volatility_index.{index_name}`` channel (docs.deribit.com, "Subscriptions").
"""

from __future__ import annotations

import json

import pytest

from streamer.sources.deribit.protocol import DeribitDecoder, volatility_index_channel
from streamer.types import VenueVolIndex

DOC_FRAME = (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":'
             b'"deribit_volatility_index.btc_usd","data":{"volatility":129.36,'
             b'"timestamp":1619777946007,"index_name":"btc_usd"}}}')


def _frame(volatility: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {
        "channel": "deribit_volatility_index.eth_usd",
        "data": {"volatility": volatility, "timestamp": 1, "index_name": "eth_usd"}}}).encode()


def test_the_documented_frame_decodes_to_decimal_vol() -> None:
    decoded = DeribitDecoder().decode(DOC_FRAME, 42)
    assert decoded.rejects == []
    assert decoded.vol_indices == [VenueVolIndex(
        venue="deribit", underlying="BTC", index_name="btc_usd", vol=1.2936,
        exchange_ts_ms=1619777946007, received_ts_ns=42)]
    assert volatility_index_channel("BTC") == "deribit_volatility_index.btc_usd"


@pytest.mark.parametrize(("value", "reason"), [
    (-5.0, "bad_volatility_index"), (0.0, "bad_volatility_index"), ("high", "malformed")])
def test_bad_values_are_rejected_with_a_reason(value: object, reason: str) -> None:
    decoded = DeribitDecoder().decode(_frame(value), 1)
    assert decoded.vol_indices == []
    assert decoded.rejects == [reason]
