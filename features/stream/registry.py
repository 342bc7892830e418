"""The stream engines: one name each, one module each, one shared core.

Both run :class:`~dataflow_playground.features.stream.runner.StreamRunner`, built by
:func:`~dataflow_playground.features.stream.worker.build_runner`; they differ only in how
records come from Kafka and go back to it. Each module runs as its own process
(``python -m MODULE``) with the arguments of :func:`~dataflow_playground.features.stream.worker.parse_config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import STREAM_ENGINES, StreamEngineName


@dataclass(frozen=True)
class StreamEngine:
    name: StreamEngineName
    module: str
    description: str

    @property
    def path(self) -> str:
        """What a report says the stream side was."""
        return f"{self.description} ({self.module}) consuming Kafka"


ENGINES: dict[StreamEngineName, StreamEngine] = {
    e.name: e for e in (
        StreamEngine("faust", "dataflow_playground.features.stream.faust_engine",
                     "faust-streaming worker process"),
        StreamEngine("kafka-python", "dataflow_playground.features.stream.kafka_python_engine",
                     "kafka-python poll-loop worker process"),
    )
}


class UnknownStreamEngineError(PlaygroundError):
    """A stream engine name that is not registered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown stream engine {name!r}; use one of {', '.join(STREAM_ENGINES)} "
                         "(PLAYGROUND_STREAM_ENGINE or --engine)")


def stream_engine(name: str) -> StreamEngine:
    try:
        return ENGINES[name]  # type: ignore[index]
    except KeyError:
        raise UnknownStreamEngineError(name) from None
