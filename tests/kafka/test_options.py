"""The producer options the shipped configuration gives aiokafka."""

from __future__ import annotations

from pathlib import Path

from streamer.config import load_config
from streamer.kafka.options import producer_options

CONFIG_YAML = Path(__file__).resolve().parents[2] / "config.yaml"


def test_the_shipped_producers_do_not_linger_before_sending_a_round() -> None:
    # Each sink sends a whole round and then awaits its acks: a linger would hold every
    # round's records back that long and add it to every tick-to-publish.
    for config in (load_config(None, env={}), load_config(CONFIG_YAML, env={})):
        assert producer_options(config.kafka, "localhost:9092")["linger_ms"] == 0
