"""The REST service against its own OpenAPI document, with schemathesis (the ASGI app in process).

Every operation gets a bounded, derandomized search (positive and negative cases; the
examples, coverage and fuzzing phases) and every built-in response check: no 5xx, only
documented statuses, content types and bodies that match their schemas, schema-valid
requests accepted, schema-violating ones refused. So the document states what the
service does: what it takes, what it refuses, and what it answers.

Two things are pinned so that "schema-valid" is one exact set: the clock (the bound on
``ts`` moves with it, and the schema and the validator read the same ``clock_ms``), and
the online store (one entity in it, so a feature lookup is 200 or 404, never 503), and the
fraud model (a small one trained here, so a score is never refused for want of a model).
The batch endpoint takes the good records of a batch and refuses the bad ones one by one
(200, each listed or counted in ``rejected``), as documented; a schema-violating item is
therefore refused in the reply, not by a 4xx, and the negative check says exactly that.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.specs.openapi.checks import negative_data_rejection

from dataflow_playground.app.train.leakage import train_model
from dataflow_playground.core import schema as event_schema
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.online_store import OnlineStoreWriter, online_store_path
from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from dataflow_playground.services.ingest import Ingest
from dataflow_playground.services.rest import features as features_route
from dataflow_playground.services.rest.app import create_app
from dataflow_playground.services.rest.events import get_ingest
from dataflow_playground.services.rest.score import get_model

MAX_EXAMPLES = 30  # per operation and phase; the whole run stays within seconds
# What counts as refusing a schema-violating request: schemathesis' default list plus 413
# (the service's answer to a batch over `maxItems`).
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}


# The one clock of this module: the schema states ts <= NOW_MS + 24 h, and the validator checks
# exactly that while the tests run (``pinned``).
NOW_MS = event_schema.clock_ms()
APP = create_app()
with pytest.MonkeyPatch.context() as mp:
    mp.setattr(event_schema, "clock_ms", lambda: NOW_MS)
    schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=SchemathesisConfig.from_dict(CONFIG))
MODEL = train_model(generate_table(GeneratorConfig(events=2_000, seed=3, rate=0.2)), seed=3, max_iter=5)


@pytest.fixture(autouse=True)
def pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(event_schema, "clock_ms", lambda: NOW_MS)
    settings_ = Settings(data_dir=tmp_path)
    store = OnlineStoreWriter(online_store_path(settings_))
    store.write([("user", 7, 1_000, {"user_txn_count_1h": 1})], {})
    store.close()
    monkeypatch.setattr(features_route, "get_settings", lambda: settings_)
    ingest = Ingest(tmp_path / "ingest", source="rest")
    APP.dependency_overrides[get_ingest] = lambda: ingest
    APP.dependency_overrides[get_model] = lambda: MODEL
    yield
    APP.dependency_overrides.clear()
    ingest.close()


def refused_whole_or_record_by_record(ctx: Any, response: Any, case: Any) -> bool | None:
    """``negative_data_rejection``, except that a batch may refuse its bad records in a 200 reply."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        if case.operation.path == "/events/batch" and response.status_code == 200 \
                and response.json()["rejected"] > 0:
            return None
        raise


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
def test_the_service_does_what_its_openapi_says(case: Any) -> None:
    case.call_and_validate(excluded_checks=[negative_data_rejection],
                           additional_checks=[refused_whole_or_record_by_record])
