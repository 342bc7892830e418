"""Round-trips for every format codec, and the fidelity checker that judges them.

The event table comes from the seeded generator (the ``seed`` fixture prints its
seed; replay a failure with PLAYGROUND_TEST_SEED=<seed>).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.schema import FIELD_NAMES, avro_schema
from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from dataflow_playground.storage.formats import Range, UnknownFormatError, all_codecs, codec_names, get_codec
from dataflow_playground.storage.formats.fidelity import compare_tables, probe_table
from dataflow_playground.storage.formats.protobuf import ProtobufSchemaError, decode_varint, encode_varint

# What each format is known to lose: "<table>.<column>". Anything else failing, or any
# of these suddenly passing, means a codec (or a library) changed behaviour.
EXPECTED_LOSSES = {
    "csv": {"events.device", "probe.ts_zoned", "probe.text"},
    "jsonl": {"probe.ts_zoned"},
    "pickle": set(),
    "avro": {"probe.ts_zoned"},
    "protobuf": {"probe.ts_zoned"},
    "parquet-snappy": set(),
    "parquet-zstd": set(),
    "orc-zstd": {"probe.ts_zoned"},
    "arrow-ipc": set(),
}
ROWS = 3_000


@pytest.fixture
def events(seed: int) -> pa.Table:
    return generate_table(GeneratorConfig(events=ROWS, seed=seed, users=300, merchants=50))


def test_registry_has_every_format_once() -> None:
    assert codec_names() == list(EXPECTED_LOSSES)
    assert [c.name for c in all_codecs()] == codec_names()
    assert len(set(codec_names())) >= 7


def test_unknown_format_is_a_playground_error() -> None:
    with pytest.raises(UnknownFormatError, match="choose from") as info:
        get_codec("xml")
    assert isinstance(info.value, PlaygroundError)


@pytest.mark.parametrize("name", list(EXPECTED_LOSSES))
def test_roundtrip_loses_exactly_what_is_documented(name: str, events: pa.Table,
                                                    tmp_path: Path) -> None:
    codec = get_codec(name)
    failing = set()
    for label, table in (("events", events), ("probe", probe_table())):
        path = tmp_path / f"{label}{codec.suffix}"
        codec.write(table, path)
        failing |= {f"{label}.{c.column}" for c in compare_tables(table, codec.read_arrow(path))
                    if not c.ok}
    assert failing == EXPECTED_LOSSES[name]


@pytest.mark.parametrize("name", [n for n in EXPECTED_LOSSES if n != "csv"])
def test_python_rows_equal_the_original_rows(name: str, events: pa.Table, tmp_path: Path) -> None:
    codec = get_codec(name)
    path = tmp_path / f"events{codec.suffix}"
    codec.write(events, path)
    assert codec.read_rows(path) == events.to_pylist()


def test_csv_python_rows_are_strings(events: pa.Table, tmp_path: Path) -> None:
    codec = get_codec("csv")
    path = tmp_path / "events.csv"
    codec.write(events, path)
    rows = codec.read_rows(path)
    assert len(rows) == events.num_rows
    first = events.slice(0, 1).to_pylist()[0]
    assert rows[0]["event_id"] == str(first["event_id"])
    assert rows[0]["is_fraud"] in ("true", "false")  # types are gone: everything is text


@pytest.mark.parametrize("name", list(EXPECTED_LOSSES))
def test_selective_reads_match_the_table(name: str, events: pa.Table, tmp_path: Path,
                                         seed: int) -> None:
    codec = get_codec(name)
    path = tmp_path / f"events{codec.suffix}"
    codec.write(events, path)

    assert codec.read_column(path, "amount").to_pylist() == events.column("amount").to_pylist()

    ts = sorted(events.column("ts").to_pylist())
    where = Range("ts", low=ts[ROWS // 3], high=ts[ROWS // 2])
    expected = events.filter(where.mask(events)).column("event_id").to_pylist()
    got = codec.read_filtered(path, where).column("event_id").to_pylist()
    assert sorted(got) == sorted(expected) and expected

    target = (seed % ROWS)
    hit = codec.lookup(path, "event_id", target)
    assert hit is not None and hit["event_id"] == target
    assert hit["amount"] == events.column("amount")[target].as_py()
    assert codec.lookup(path, "event_id", ROWS + 10) is None


def test_parquet_filter_skips_row_groups(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = generate_table(GeneratorConfig(events=50_000, seed=1))
    path = tmp_path / "e.parquet"
    get_codec("parquet-zstd").write(table, path)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 5  # else predicate pushdown has nothing to skip
    # event_id is sorted, so the row groups' min/max statistics exclude all but one.
    stats = [meta.row_group(i).column(0).statistics for i in range(meta.num_row_groups)]
    assert sum(1 for s in stats if s.min <= 12_345 <= s.max) == 1


# --- the fidelity checker itself must be able to say no -----------------------------------


def test_fidelity_flags_sign_of_zero_null_as_empty_and_lost_zone() -> None:
    orig = pa.table({"f": pa.array([-0.0]), "s": pa.array([None], pa.string()),
                     "t": pa.array([0], pa.timestamp("us", tz="Asia/Tokyo"))})
    back = pa.table({"f": pa.array([0.0]), "s": pa.array([""]),
                     "t": pa.array([0], pa.timestamp("us", tz="UTC"))})
    checks = {c.column: c for c in compare_tables(orig, back)}
    assert not any(c.ok for c in checks.values())
    assert "null came back as ''" in checks["s"].detail
    assert "instants kept, zone lost" in checks["t"].detail
    assert all(c.ok for c in compare_tables(orig, orig))


def test_fidelity_flags_missing_column_and_type_change() -> None:
    orig = pa.table({"a": pa.array([1], pa.int64()), "b": pa.array([1.5])})
    back = pa.table({"a": pa.array(["1"])})
    checks = {c.column: c.detail for c in compare_tables(orig, back)}
    assert checks == {"a": "type int64 came back as string", "b": "column missing"}


# --- protobuf framing --------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_roundtrip(n: int) -> None:
    data = encode_varint(n) + b"\x07"
    assert decode_varint(data, 0) == (n, len(data) - 1)


def test_protobuf_truncated_file_and_missing_sidecar(events: pa.Table, tmp_path: Path) -> None:
    codec = get_codec("protobuf")
    path = tmp_path / "e.pb"
    codec.write(events.slice(0, 10), path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ProtobufSchemaError, match="truncated"):
        codec.read_rows(path)
    codec.sidecar(path).unlink()
    with pytest.raises(ProtobufSchemaError, match="sidecar"):
        codec.read_rows(path)


# --- property: lossless codecs keep any ints, floats, strings, bools and nulls -----------

LOSSLESS = ["pickle", "avro", "protobuf", "parquet-snappy", "parquet-zstd", "orc-zstd",
            "arrow-ipc"]
_rows = st.lists(st.tuples(
    st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    st.one_of(st.none(), st.floats(allow_nan=False)),
    st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)),
    st.one_of(st.none(), st.booleans()),
), min_size=1, max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows, name=st.sampled_from(LOSSLESS))
def test_lossless_codecs_roundtrip_any_values(rows: list[tuple[object, ...]], name: str) -> None:
    i, f, s, b = (list(col) for col in zip(*rows, strict=True))
    table = pa.table({"i": pa.array(i, pa.int64()), "f": pa.array(f, pa.float64()),
                      "s": pa.array(s, pa.string()), "b": pa.array(b, pa.bool_())})
    codec = get_codec(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{codec.suffix}"
        codec.write(table, path)
        back = codec.read_arrow(path)
    if name == "pickle":
        # Pickle keeps Python values; Arrow infers a null type for an all-None column.
        back = pa.table({n: back.column(n).cast(table.column(n).type) for n in table.column_names})
    bad = [c for c in compare_tables(table, back) if not c.ok]
    assert not bad, bad


def test_range_mask_and_accepts_agree(events: pa.Table) -> None:
    where = Range("amount", low=20.0, high=50.0)
    by_mask = pc.sum(where.mask(events)).as_py()
    by_row = sum(where.accepts(v) for v in events.column("amount").to_pylist())
    assert by_mask == by_row > 0


def test_avro_events_carry_the_projects_avro_schema(events: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "events.avro"
    get_codec("avro").write(events, path)
    with path.open("rb") as f:
        writer_schema = fastavro.reader(f).writer_schema
    project = avro_schema()
    assert writer_schema["name"] == f"{project['namespace']}.{project['name']}"  # type: ignore[index]
    assert [fl["name"] for fl in writer_schema["fields"]] == list(FIELD_NAMES)  # type: ignore[index]
    ts = next(fl for fl in writer_schema["fields"] if fl["name"] == "ts")  # type: ignore[index]
    assert ts["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert get_codec("avro").read_arrow(path).equals(events)  # back in the project's Arrow schema
