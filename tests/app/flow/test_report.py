"""The delivery check and the latency figures: the numbers every mode reports."""

from __future__ import annotations

import numpy as np
import pytest

from dataflow_playground.app.flow.report import delivery, first_arrivals, flow_result, latency, throughput
from dataflow_playground.core import receipts
from dataflow_playground.features.parity import REL_TOL


def test_delivery_counts_lost_duplicated_and_unexpected() -> None:
    d = delivery(np.arange(10), np.array([0, 1, 1, 2, 3, 4, 5, 6, 7, 42, 42]))
    assert (d.sent, d.received, d.lost, d.duplicated, d.unexpected) == (10, 8, 2, 2, 1)


def test_delivery_clean() -> None:
    d = delivery(np.arange(1000), np.random.default_rng(1).permutation(1000))
    assert d.lost == 0 and d.duplicated == 0 and d.received == 1000


def test_latency_percentiles_use_numpy() -> None:
    r = receipts.rows(np.arange(100), np.zeros(100, dtype=np.int64), 0)
    r["recv_us"] = np.arange(100) * 1000  # 0..99 ms
    lat = latency(r)
    assert lat.p50_ms == pytest.approx(49.5, rel=REL_TOL)
    assert lat.p99_ms == pytest.approx(round(float(np.percentile(np.arange(100), 99)), 3), rel=REL_TOL)


def test_first_arrivals_keep_the_earliest_copy() -> None:
    r = receipts.rows([1, 2, 1], [0, 0, 0], 0)
    r["recv_us"] = [10, 20, 5]
    f = first_arrivals(r)
    assert sorted(f["event_id"].tolist()) == [1, 2]
    assert dict(zip(f["event_id"].tolist(), f["recv_us"].tolist(), strict=True))[1] == 5


def test_throughput_from_first_send_to_last_arrival() -> None:
    r = receipts.rows(np.arange(1000), 0, 0)
    r["recv_us"] = np.linspace(0, 500_000, 1000).astype(np.int64)
    assert abs(throughput(r, first_sent_us=0) - 2000.0) < 1e-6


def test_flow_result_flags_a_bad_run() -> None:
    r = receipts.rows([0, 1, 1], 0, 1000)
    res = flow_result("x", np.arange(3), r, cpu_s=0.1)
    assert not res.ok and res.lost == 1 and res.duplicated == 1


def test_receipt_log_roundtrip_ignores_torn_rows(tmp_path) -> None:
    log = receipts.ReceiptLog(tmp_path / "a.rcpt")
    log.append(receipts.rows([1, 2, 3], 10, 20))
    log.close()
    with (tmp_path / "a.rcpt").open("ab") as f:
        f.write(b"\x01\x02\x03")  # a half-written row from a killed writer
    receipts.write_atomic(tmp_path / "b.rcpt", receipts.rows([4], 1, 2))
    assert receipts.count(tmp_path) == 4
    got = receipts.read(receipts.receipt_files(tmp_path))
    assert sorted(got["event_id"].tolist()) == [1, 2, 3, 4]
