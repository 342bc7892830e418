"""Consumers: one reader per dataflow mode, the Kafka sinks, the stream processors."""
