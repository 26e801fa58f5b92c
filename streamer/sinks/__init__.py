"""IO out: where surface updates go (Kafka, stdout, memory for tests)."""
