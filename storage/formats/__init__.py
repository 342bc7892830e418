"""Format codecs behind one interface (``base.FormatCodec``), one module per format.

``get_codec("parquet-zstd")`` or ``all_codecs()`` is all a caller needs.
"""

from __future__ import annotations

from collections.abc import Callable

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.storage.formats.arrow_ipc import ArrowIpcCodec
from dataflow_playground.storage.formats.avro import AvroCodec
from dataflow_playground.storage.formats.base import FormatCodec, Range, Row
from dataflow_playground.storage.formats.orc import OrcCodec
from dataflow_playground.storage.formats.parquet import ParquetCodec
from dataflow_playground.storage.formats.pickle_rows import PickleCodec
from dataflow_playground.storage.formats.protobuf import ProtobufCodec
from dataflow_playground.storage.formats.text_csv import CsvCodec
from dataflow_playground.storage.formats.text_json import JsonLinesCodec

__all__ = ["FormatCodec", "Range", "Row", "UnknownFormatError", "all_codecs", "codec_names",
           "get_codec"]

# Text first, then row-major binary, then columnar: the order tables and charts use.
_FACTORIES: dict[str, Callable[[], FormatCodec]] = {
    "csv": CsvCodec,
    "jsonl": JsonLinesCodec,
    "pickle": PickleCodec,
    "avro": AvroCodec,
    "protobuf": ProtobufCodec,
    "parquet-snappy": lambda: ParquetCodec("snappy"),
    "parquet-zstd": lambda: ParquetCodec("zstd"),
    "orc-zstd": OrcCodec,
    "arrow-ipc": ArrowIpcCodec,
}


class UnknownFormatError(PlaygroundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown format {name!r}; choose from {', '.join(_FACTORIES)}")


def codec_names() -> list[str]:
    return list(_FACTORIES)


def get_codec(name: str) -> FormatCodec:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise UnknownFormatError(name) from None


def all_codecs() -> list[FormatCodec]:
    return [factory() for factory in _FACTORIES.values()]
