"""dataflow-playground: the data engineering chapters of *Designing Machine Learning Systems*, measured.

One import root. Its subpackages are the project's top-level folders, one per layer
(each may import only the layers below it; ``make lint`` checks this):

- ``app``: the CLI, the stack launcher, the demo, the labs and the benchmarks;
- ``services``: the REST and gRPC services;
- ``consumers`` / ``features``: one reader per dataflow mode and the Kafka sink; the feature
  definitions, the batch engine and the stream engine;
- ``producers`` / ``storage``: the seeded generator and one writer per dataflow mode; the DuckDB
  store, the file formats and the row/column stores;
- ``core``: settings, the event schema, errors, validation, receipts and the Kafka runtime.

``docs/architecture.md`` walks a newcomer through it.
"""

__version__ = "0.1.0"
