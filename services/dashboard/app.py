"""The live dashboard's web app: JSON under ``/api`` and one plain page (``static/``).

- ``/api/components``: every stack component as ``playground status`` shows it; a crashed
  one with its log tail (``/api/components/{name}/log`` gives more lines);
- ``/api/topics``: partitions, begin and end offsets, each consumer group's lag per partition;
  ``/api/topics/{topic}/records?n=``: the last ``n`` records with their headers;
- ``/api/live``: events/s into the topic, through the sink and the stream workers, and
  freshness p99, sampled every second (:class:`~.live.LiveSampler`);
- ``/api/features/{entity}/{id}``: online values and their age beside the batch values (:mod:`.features`);
- ``/api/results``: the newest result of each lab and benchmark in the results folder, its
  chart at ``/results/{name}.png``.

Refusals have the REST service's shape, ``{"detail": {"field", "reason"}}`` for a bad
parameter (422) and ``{"detail": "..."}`` otherwise. Run with ``playground serve dashboard``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal, Protocol

from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from kafka.errors import KafkaError

from dataflow_playground import __version__
from dataflow_playground.core import kafka_admin, kafka_inspect
from dataflow_playground.core.errors import StackError
from dataflow_playground.core.schema import INT64_MAX
from dataflow_playground.core.settings import Settings
from dataflow_playground.services.dashboard import features
from dataflow_playground.services.dashboard.live import LiveSampler
from dataflow_playground.services.dashboard.providers import ComponentView, DashboardProviders
from dataflow_playground.services.rest import errors

STATIC = FilePath(__file__).parent / "static"
MAX_RECORDS = 200  # the message browser's bound on N
MAX_LOG_LINES = 1_000
LOG_TAIL_LINES = 15  # shown with a crashed component
VALUE_CHARS = 2_000  # a record's key, value or header shown up to this many characters
TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"  # Kafka's legal topic names
COMPONENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RESULT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Sampler(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def snapshot(self) -> dict[str, object]: ...


@dataclass
class Sources:
    """Where the app's data comes from: the broker and stores by default, fakes in unit tests."""

    overview: Callable[[str], list[kafka_inspect.TopicOverview]] = kafka_inspect.overview
    topic_names: Callable[[str], list[str]] = kafka_admin.list_topics
    tail: Callable[[str, str, int], list[kafka_inspect.TailRecord]] = kafka_inspect.tail
    lookup: Callable[[Settings, str, int], dict[str, Any]] = features.lookup
    sampler: Callable[[Settings], Sampler] = field(default=LiveSampler)


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= VALUE_CHARS else f"{text[:VALUE_CHARS]}… ({len(raw):,} bytes)"


def component_json(c: ComponentView) -> dict[str, Any]:
    return {"name": c.name, "state": c.state, "running": c.running, "healthy": c.healthy, "pid": c.pid,
            "port": c.port or None, "uptime_s": c.uptime_s, "crashed": c.crashed,
            "log_tail": c.log_tail if c.crashed else None,
            "log_url": f"/api/components/{c.name}/log"}


def latest_results(results_dir: FilePath) -> list[dict[str, Any]]:
    """The newest run of each result: ``results/<name>.json`` (its ``name`` field matching), with
    its title, when it was written, its takeaway and, if there is one, its chart's URL."""
    out = []
    for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("name") != path.stem or not RESULT_NAME.match(path.stem):
            continue
        png = path.with_suffix(".png")
        out.append({"name": path.stem, "title": str(doc.get("title", path.stem)),
                    "written_at": doc.get("written_at"), "takeaway": doc.get("takeaway"),
                    "chart": f"/results/{path.stem}.png" if png.is_file() else None})
    out.sort(key=lambda r: str(r["written_at"] or ""), reverse=True)
    return out


TopicName = Annotated[str, Path(pattern=TOPIC_PATTERN, description="a Kafka topic name")]
ComponentName = Annotated[str, Path(pattern=COMPONENT_PATTERN, description="a stack component")]


def create_app(settings: Settings, providers: DashboardProviders, sources: Sources | None = None) -> FastAPI:
    src = sources or Sources()
    sampler = src.sampler(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()

    app = FastAPI(title="dataflow-playground dashboard", version=__version__, lifespan=lifespan,
                  description="The live view of the running stack: components, topics, rates, "
                              "features and results.")
    errors.install(app)
    bootstrap = settings.bootstrap_servers

    def kafka_call(what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (StackError, KafkaError, OSError) as err:  # the broker is down or unreachable
            raise HTTPException(status_code=503, detail=f"{what}: {err}. Is the stack up? "
                                                        "('playground status')") from err

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/components")
    def components() -> list[dict[str, Any]]:
        return [component_json(c) for c in providers.components()]

    @app.get("/api/components/{name}/log", response_class=PlainTextResponse)
    def component_log(name: ComponentName,
                      lines: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 100) -> str:
        text = providers.log_tail(name, lines)
        if text is None:
            raise HTTPException(status_code=404, detail=f"no component {name!r} in this stack")
        return text

    @app.get("/api/topics")
    def topics() -> dict[str, Any]:
        found = kafka_call("topics", lambda: src.overview(bootstrap))
        return {"bootstrap": bootstrap, "topic": settings.topic, "topics": [
            {"name": t.name, "records": t.records,
             "groups": sorted({g for p in t.partitions for g in p.lag}),
             "partitions": [{"partition": p.partition, "begin": p.begin, "end": p.end, "lag": p.lag}
                            for p in t.partitions]} for t in found]}

    @app.get("/api/topics/{topic}/records")
    def records(topic: TopicName,
                n: Annotated[int, Query(ge=1, le=MAX_RECORDS,
                                        description=f"how many records, 1..{MAX_RECORDS}")] = 20
                ) -> dict[str, Any]:
        if topic not in kafka_call("topics", lambda: src.topic_names(bootstrap)):
            raise HTTPException(status_code=404, detail=f"topic {topic!r} does not exist at {bootstrap}")
        got = kafka_call(f"records of {topic}", lambda: src.tail(bootstrap, topic, n))
        return {"topic": topic, "n": n, "records": [
            {"partition": r.partition, "offset": r.offset, "timestamp_ms": r.timestamp_ms,
             "key": _text(r.key), "value": _text(r.value),
             "headers": [{"key": k, "value": _text(v)} for k, v in r.headers]} for r in got]}

    @app.get("/api/live")
    def live() -> dict[str, object]:
        return sampler.snapshot()

    @app.get("/api/features/{entity}/{entity_id}")
    def feature_lookup(entity: Annotated[Literal["user", "merchant"], Path(description="user or merchant")],
                       entity_id: Annotated[int, Path(ge=0, le=INT64_MAX, description="the entity's id")]
                       ) -> dict[str, Any]:
        return kafka_call("features", lambda: src.lookup(settings, entity, entity_id))

    @app.get("/api/results")
    def results() -> list[dict[str, Any]]:
        return latest_results(settings.results_dir)

    @app.get("/results/{name}.png")
    def result_chart(name: Annotated[str, Path(pattern=RESULT_NAME.pattern)]) -> FileResponse:
        path = settings.results_dir / f"{name}.png"
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"no chart {name}.png in the results")
        return FileResponse(path, media_type="image/png")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
