"""``POST /score`` on the real stack: events through Kafka and the features worker into the
online store, then the REST service scores a new payment with exactly the served values."""

from __future__ import annotations

import httpx
import pytest

from dataflow_playground.app.train.leakage import train_model
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.model import model_path, save_model
from dataflow_playground.producers.generator import GeneratorConfig, encode_event, generate_table
from dataflow_playground.producers.to_kafka import make_producer, produce
from tests.helpers import fresh_event_time_ms, poll_get

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_score_is_the_model_on_the_served_features(kafka_stack: Settings) -> None:
    model = train_model(generate_table(GeneratorConfig(events=3_000, seed=21, rate=0.2)), seed=21,
                        max_iter=20)
    save_model(model, model_path(kafka_stack))
    # Ids of our own, and event times after every event the worker has seen (other tests share
    # its topic), so nothing here is late; within the 24 h the schema allows ahead.
    user, merchant = 10**12 + 31, 10**12 + 32
    t0 = fresh_event_time_ms(kafka_stack)
    mine = [{"event_id": 10**12 + 300 + i, "user_id": user, "merchant_id": merchant, "amount": amount,
             "currency": "EUR", "country": "DE", "device": "ios", "ts": t0 + i * 120_000,
             "is_fraud": False} for i, amount in enumerate([25.0, 640.0, 980.0, 1_200.0, 15.5])]
    producer = make_producer(kafka_stack.bootstrap_servers)
    stats = produce(producer, kafka_stack.topic, [(str(user).encode(), encode_event(e)) for e in mine])
    producer.close()
    assert stats.failed == 0, stats.errors

    last = t0 + 4 * 120_000
    assert mine[-1]["ts"] == last
    served: dict[str, object] = {}
    for entity, id_ in (("user", user), ("merchant", merchant)):
        body = poll_get(f"{kafka_stack.rest_url}/features/{entity}/{id_}",
                     lambda r: r.status_code == 200 and r.json()["as_of"] == last + 1,
                     f"the {entity}'s features did not appear").json()
        served.update(body["values"])
    assert served["user_txn_count_1h"] == 5 and served["merchant_txn_count_1h"] == 5

    event = {**mine[-1], "event_id": 10**12 + 399, "amount": 2_000.0, "ts": last + 60_000}
    r = httpx.post(f"{kafka_stack.rest_url}/score", json=event, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["features"] == {n: served[n] for n in model.features}
    assert body["score"] == pytest.approx(model.score(served), rel=1e-12)
    assert body["user"]["as_of"] == body["merchant"]["as_of"] == last + 1
    assert 0 <= body["age_ms"] < 120_000 and body["model_version"] == model.version

    unseen = httpx.post(f"{kafka_stack.rest_url}/score", json={**event, "merchant_id": 10**12 + 33},
                        timeout=10)
    assert unseen.status_code == 404 and f"merchant {10**12 + 33}" in unseen.json()["detail"]
