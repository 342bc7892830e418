"""The formats and storage-engines lab (book ch. 3), one module per part.

``formats`` (file formats), ``layout`` (row- vs column-major memory),
``engines`` (SQLite vs DuckDB, ACID), ``models`` (relational, document, graph)
and ``etl`` (ETL vs ELT). Each part measures, then writes ``results/<name>.*``.
"""

from playground.errors import PlaygroundError


class LabError(PlaygroundError):
    """A lab run could not measure what it set out to measure."""
