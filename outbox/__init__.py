"""Transactional outbox: events written in the producer's transaction, relayed to Kafka."""
