"""The formats and storage-engines lab (book ch. 3), one module per part.

``file_formats`` (file formats), ``layout`` (row- vs column-major memory),
``stores`` (SQLite vs DuckDB, with ``acid``), ``data_models`` (relational, document,
graph) and ``etl_vs_elt``. Each part measures, then writes ``results/<name>.*``.
"""

from dataflow_playground.core.errors import PlaygroundError


class LabError(PlaygroundError):
    """A lab run could not measure what it set out to measure."""
