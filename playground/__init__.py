"""dataflow-playground: the spine (settings, event schema, stack launcher, CLI, results)."""

__version__ = "0.1.0"
