"""Consumers: one reader per dataflow mode and the Kafka -> DuckDB sink.

The stream feature engine, also a Kafka consumer, lives in features/stream.
"""
