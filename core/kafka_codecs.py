"""The Kafka compression codecs every consumer here must read, checked when it starts.

A producer picks the codec of each batch (``compression_type``: none, gzip, snappy, lz4 or
zstd) and the broker keeps it (topic ``compression.type=producer``, Kafka's default), so a
consumer reads whatever any producer chose. Both Kafka clients in the project decode
through optional modules and fail only when the first such batch arrives, mid-stream, with
``UnsupportedCodecError: Libraries for snappy compression codec not found``:

- kafka-python 3.x (the sink, the flow reader, the kafka-python stream engine) imports
  ``snappy`` (PyPI ``python-snappy``), ``lz4`` and ``zstandard``;
- aiokafka (under faust, the default stream engine) decodes snappy, lz4 and zstd through
  ``cramjam``.

Those packages are project dependencies; :func:`require_codecs` turns a broken environment
into an error at start that names what to install, instead of a crash on the first batch.
"""

from __future__ import annotations

from typing import Literal, get_args

from dataflow_playground.core.errors import PlaygroundError

Codec = Literal["none", "gzip", "snappy", "lz4", "zstd"]
CODECS: tuple[Codec, ...] = get_args(Codec)
Client = Literal["kafka-python", "aiokafka"]

# Codec -> the PyPI package that brings its decoder, per client (gzip and none need none).
PACKAGES: dict[Client, dict[Codec, str]] = {
    "kafka-python": {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"},
    "aiokafka": {"snappy": "cramjam", "lz4": "cramjam", "zstd": "cramjam"},
}


class MissingCodecError(PlaygroundError):
    """A Kafka client here cannot decode one of the codecs producers may use."""


def missing_codecs(client: Client) -> dict[Codec, str]:
    """The codecs ``client`` cannot decode in this interpreter, each with the package to install."""
    if client == "kafka-python":
        from kafka import codec as kp

        available = {"gzip": kp.has_gzip(), "snappy": kp.has_snappy(), "lz4": kp.has_lz4(),
                     "zstd": kp.has_zstd()}
    else:
        from aiokafka import codec as ak

        available = {"gzip": ak.has_gzip(), "snappy": ak.has_snappy(), "lz4": ak.has_lz4(),
                     "zstd": ak.has_zstd()}
    return {c: PACKAGES[client].get(c, "?") for c in CODECS if c != "none" and not available[c]}


def require_codecs(client: Client, who: str) -> None:
    """Raise :class:`MissingCodecError` unless ``client`` decodes every codec in :data:`CODECS`."""
    missing = missing_codecs(client)
    if missing:
        packages = sorted(set(missing.values()))
        raise MissingCodecError(
            f"{who} cannot read Kafka batches compressed with {', '.join(missing)}: {client} needs "
            f"{', '.join(packages)}, which is not installed. A producer may use any codec, so "
            f"install it ('pip install {' '.join(packages)}', or reinstall the project: "
            "'pip install -e .').")
