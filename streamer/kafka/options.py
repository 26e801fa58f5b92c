"""aiokafka's keyword arguments from ``KafkaConfig``: every producer, consumer and admin
client connects the same way (TLS/SASL as configured, secrets only from the environment).
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from streamer.config import KafkaConfig

GROUP_FETCH_WAIT_MS = 20


def producer_options(config: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """aiokafka producer keyword arguments from the config; secrets only from the env."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "client_id": config.client_id,
        "acks": "all" if config.acks == "all" else int(config.acks),
        "enable_idempotence": config.idempotence, "linger_ms": config.linger_ms,
        "compression_type": None if config.compression == "none" else config.compression,
        "request_timeout_ms": config.request_timeout_ms,
        "retry_backoff_ms": config.retry_backoff_ms,
        "security_protocol": config.security_protocol,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=config.ssl_cafile)
    if config.sasl_mechanism is not None:
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = os.environ.get(config.sasl_username_env, "")
        options["sasl_plain_password"] = os.environ.get(config.sasl_password_env, "")
    return options


def consumer_options(config: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """aiokafka consumer keyword arguments: connection and security as the producer's."""
    producer = producer_options(config, bootstrap)
    keys = ("bootstrap_servers", "client_id", "request_timeout_ms", "retry_backoff_ms",
            "security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
            "sasl_plain_password")
    return {k: producer[k] for k in keys if k in producer}


def group_options(config: KafkaConfig, bootstrap: str, group_id: str) -> dict[str, Any]:
    """A consumer group member's options: a dead member's partitions move once its
    session times out and the survivors have rejoined, within the configured times."""
    return {**consumer_options(config, bootstrap), "group_id": group_id,
            "auto_offset_reset": "earliest", "enable_auto_commit": True,
            # Ticks are wanted as they come: the broker's default wait for more data
            # (500 ms a fetch) would be the split pipeline's latency floor.
            "fetch_max_wait_ms": GROUP_FETCH_WAIT_MS,
            "session_timeout_ms": config.session_timeout_ms,
            "heartbeat_interval_ms": config.heartbeat_interval_ms,
            "rebalance_timeout_ms": config.rebalance_timeout_ms}
