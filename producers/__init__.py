"""Producers: the seeded event generator and one writer per dataflow mode."""
