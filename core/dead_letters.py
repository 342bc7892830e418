"""What every dead letter says about itself: the header names, their format, the reason's bound.

A record a consumer cannot use is republished, key and value untouched, to that consumer's own
dead-letter topic (``Settings.sink_dead_letter_topic``, ``Settings.features_dead_letter_topic``),
so each topic holds exactly one copy per bad record and a reader knows who refused it without
parsing anything. Every copy carries the same three UTF-8 headers, built only here:

- ``reason``: why it was refused, ``"<field>: <message>"``, at most :data:`MAX_REASON_BYTES`
  bytes; a longer one is cut at a character boundary and ends with :data:`TRUNCATED_MARKER`.
  The bound is there because a validator's message may quote the offending input, and a
  header is no place for an arbitrarily large copy of the payload (the value already is one).
- ``stage``: which consumer refused it (:data:`STAGES`).
- ``source``: where the record was read, ``kafka:<topic>:<partition>:<offset>``. Kafka topic
  names cannot contain ``:``, so the four parts split unambiguously.

README.md ("Wire format") documents the same for writers in other languages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast, get_args

from dataflow_playground.core.errors import PlaygroundError

REASON_HEADER = "reason"
STAGE_HEADER = "stage"
SOURCE_HEADER = "source"
HEADER_NAMES = (REASON_HEADER, STAGE_HEADER, SOURCE_HEADER)

MAX_REASON_BYTES = 500
TRUNCATED_MARKER = "...[truncated]"

Stage = Literal["sink", "features-worker"]
STAGES: tuple[Stage, ...] = get_args(Stage)
SINK_STAGE: Stage = "sink"
FEATURES_STAGE: Stage = "features-worker"


def source_id(topic: str, partition: int, offset: int) -> str:
    """``kafka:<topic>:<partition>:<offset>``: the record's place in Kafka, also the store's key."""
    return f"kafka:{topic}:{partition}:{offset}"


def bounded_reason(reason: str) -> bytes:
    """``reason`` as UTF-8, cut to :data:`MAX_REASON_BYTES` bytes with the marker if longer."""
    raw = reason.encode()
    if len(raw) <= MAX_REASON_BYTES:
        return raw
    marker = TRUNCATED_MARKER.encode()
    # errors="ignore" drops a multi-byte character the cut split in half.
    head = raw[:MAX_REASON_BYTES - len(marker)].decode(errors="ignore").encode()
    return head + marker


class DeadLetterHeaderError(PlaygroundError):
    """A message on a dead-letter topic lacks one of the documented headers."""


@dataclass(frozen=True)
class DeadLetterInfo:
    """The three headers of one dead letter, decoded."""

    reason: str
    stage: Stage
    source: str

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers in the documented order; the reason bounded."""
        return [(REASON_HEADER, bounded_reason(self.reason)), (STAGE_HEADER, self.stage.encode()),
                (SOURCE_HEADER, self.source.encode())]

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]] | None) -> DeadLetterInfo:
        """Read a consumed dead letter's headers back; a missing or unknown one is an error."""
        found = dict(headers or ())
        missing = [name for name in HEADER_NAMES if name not in found]
        if missing:
            raise DeadLetterHeaderError(
                f"dead letter without header(s) {', '.join(missing)} (has {sorted(found)}); every "
                f"dead letter must carry {', '.join(HEADER_NAMES)} (core/dead_letters.py)")
        stage = found[STAGE_HEADER].decode()
        if stage not in STAGES:
            raise DeadLetterHeaderError(f"dead letter with unknown stage {stage!r}; expected one of "
                                        f"{', '.join(STAGES)}")
        return cls(reason=found[REASON_HEADER].decode(), stage=cast(Stage, stage),
                   source=found[SOURCE_HEADER].decode())


def dead_letter_headers(reason: str, stage: Stage, source: str) -> list[tuple[str, bytes]]:
    """The headers for one dead letter (what the sink and the stream runner attach)."""
    return DeadLetterInfo(reason, stage, source).headers()
