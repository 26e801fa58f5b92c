"""Kafka, in one place: every use of aiokafka in the service and the client is here.

- ``options``   the client keyword arguments from ``KafkaConfig`` (TLS/SASL from the env)
- ``errors``    aiokafka's errors mapped to ours (``BrokerError``) at this edge
- ``admin``     the topics: created, checked, watched under a running producer
- ``producer``  a sink's producer (started, restarted, closed) and one batch sent
- ``acks``      the deadline a sent batch is acknowledged within
- ``sender``    the send loop every Kafka sink runs (jittered backoff, reconnects)
- ``reader``    reading a topic from its beginning to its end at start
- ``group``     a consumer-group member (``streamer calibrate``'s ticks)

The surface codec stays in ``streamer.sinks.codec``: it is the wire format of every
sink and the UI stream, not of Kafka alone.
"""
