"""Transactional outbox and Kafka relay. Arrives with the outbox issue."""
