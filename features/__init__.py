"""Features: one definition compiled to batch SQL and to stream state."""
