"""Storage: the DuckDB store, format codecs and row-store vs column-store engines."""
