"""Round-trip fidelity: does a table come back with the same types and values?

``probe_table()`` holds the cases that break formats: a timestamp with a zone,
nulls in every column, 64-bit integer extremes, floats that need all 17 digits,
and unicode (accents, emoji with a skin-tone modifier, right-to-left scripts).
``compare_tables`` says, column by column, what survived and what did not.
Nullability flags in the schema are ignored: no format here keeps them all and
they are not data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

PROBE_TZ = "America/Sao_Paulo"


def probe_table() -> pa.Table:
    tz = ZoneInfo(PROBE_TZ)
    return pa.table({
        "ts_zoned": pa.array([
            datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=tz),
            datetime(1969, 12, 31, 21, 59, 59, tzinfo=tz),  # before the epoch
            None,
            datetime(2038, 1, 19, 3, 14, 8, tzinfo=tz),  # past 32-bit seconds
            datetime(2024, 10, 31, 23, 59, 59, 999999, tzinfo=tz),
            datetime(2000, 1, 1, tzinfo=tz),
        ], pa.timestamp("us", tz=PROBE_TZ)),
        "int64": pa.array([2**63 - 1, -(2**63), 0, None, 2**53 + 1, -1], pa.int64()),
        "float64": pa.array([0.1 + 0.2, 1e-300, None, -0.0, 5e-324, 1.7976931348623157e308],
                            pa.float64()),
        "text": pa.array(["", "héllo wörld", "emoji 🙂👍🏽", "RTL: שלום مرحبا", None,
                          'comma, "quote"\nand newline'], pa.string()),
        "flag": pa.array([True, False, None, True, False, True], pa.bool_()),
    })


@dataclass(frozen=True)
class ColumnCheck:
    column: str
    ok: bool
    detail: str  # "ok", or what was lost


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # -0.0 == 0.0 in Python; a sign lost is a value lost.
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b) and type(a) is type(b)


def _value_loss(orig: list[Any], back: list[Any]) -> str | None:
    bad = [i for i, (a, b) in enumerate(zip(orig, back, strict=True)) if not _same(a, b)]
    if not bad:
        return None
    i = bad[0]
    if orig[i] is None:
        return f"{len(bad)} of {len(orig)} values differ (null came back as {back[i]!r})"
    return f"{len(bad)} of {len(orig)} values differ (e.g. {orig[i]!r} came back as {back[i]!r})"


def _instants(col: pa.ChunkedArray) -> list[Any]:
    t = col.type
    utc = col.cast(pa.timestamp("us", tz="UTC")) if t.tz else col.cast(pa.timestamp("us"))
    return [v.replace(tzinfo=None) if v is not None else None for v in utc.to_pylist()]


def check_column(name: str, orig: pa.ChunkedArray, back: pa.ChunkedArray | None) -> ColumnCheck:
    if back is None:
        return ColumnCheck(name, False, "column missing")
    if len(back) != len(orig):
        return ColumnCheck(name, False, f"{len(back)} values came back, not {len(orig)}")
    if back.type != orig.type:
        if pa.types.is_timestamp(orig.type) and pa.types.is_timestamp(back.type):
            kept = _value_loss(_instants(orig), _instants(back)) is None
            return ColumnCheck(name, False, f"type {orig.type} came back as {back.type}"
                               + ("; instants kept, zone lost" if kept else "; instants differ"))
        return ColumnCheck(name, False, f"type {orig.type} came back as {back.type}")
    loss = _value_loss(orig.to_pylist(), back.to_pylist())
    return ColumnCheck(name, loss is None, loss or "ok")


def compare_tables(original: pa.Table, restored: pa.Table) -> list[ColumnCheck]:
    names = set(restored.column_names)
    return [check_column(n, original.column(n), restored.column(n) if n in names else None)
            for n in original.column_names]
