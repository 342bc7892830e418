"""``playground train serving``: prediction skew and scoring latency (register ``command`` with typer).

Progress goes to stderr. With ``--json`` stdout holds one JSON object and nothing else:
``skew`` (per run, ``in_order`` and ``out_of_order``: ``mean_abs_diff``, ``over_0_01``,
``share_over_0_01``, ``events``, ...), ``latency`` (``p50_ms``, ``p95_ms``, ``p99_ms``,
``max_ms``, ``rate``, ``requests``, ``errors``, ...), ``model``, ``takeaway`` and ``results``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dataflow_playground.app.console import console, show_results, stderr_console
from dataflow_playground.core.settings import STREAM_ENGINES

err_console = stderr_console()


def duration_ms(text: str) -> int:
    """'30s', '500ms', '2m', '1h' or a bare number of milliseconds; at least 0."""
    raw = text.strip().lower()
    try:
        for suffix, factor in (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)):
            if raw.endswith(suffix):
                value = int(float(raw[: -len(suffix)]) * factor)
                break
        else:
            value = int(raw)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 30s, 500ms, 2m)") from None
    if value < 0:
        raise typer.BadParameter(f"{text!r} is negative")
    return value


def command(
    events: Annotated[int, typer.Option("--events", "-n", min=100, max=1_000_000,
                                        help="events per parity run (in order, then out of order)")
                      ] = 5_000,
    seed: Annotated[int, typer.Option(min=0, help="generator seed (and the model's, if trained)")] = 42,
    out_of_order: Annotated[float, typer.Option(min=0.0, max=1.0,
                                                help="fraction of events delivered late in the "
                                                     "out-of-order run")] = 0.05,
    max_lateness: Annotated[str, typer.Option(help="how late at most in the out-of-order run, "
                                                   "e.g. 30s")] = "30s",
    rate: Annotated[float, typer.Option(min=1.0, max=5_000.0,
                                        help="POST /score requests per second (paced)")] = 100.0,
    seconds: Annotated[float, typer.Option(min=0.5, max=300.0,
                                           help="how long to send POST /score")] = 10.0,
    pool: Annotated[int, typer.Option(min=10, max=100_000,
                                      help="events produced to the stack's topic to score")] = 2_000,
    max_in_flight: Annotated[int, typer.Option(min=1, max=1_024,
                                               help="at most this many requests open at once")] = 64,
    engine: Annotated[str, typer.Option(help=f"stream engine ({', '.join(STREAM_ENGINES)})")] = "faust",
    results_dir: Annotated[Path | None, typer.Option(
        help="where serving.{json,md,png} go (default: PLAYGROUND_RESULTS_DIR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Batch vs stream scores of the fraud model (prediction skew), and POST /score latency."""
    from dataflow_playground.app.train.serving import (
        ServingConfig,
        ServingError,
        json_summary,
        run_serving,
        takeaway,
        write_serving_results,
    )
    from dataflow_playground.core.errors import PlaygroundError
    from dataflow_playground.core.settings import get_settings

    if engine not in STREAM_ENGINES:
        raise typer.BadParameter(f"unknown engine {engine!r}; use one of {', '.join(STREAM_ENGINES)}",
                                 param_hint="'--engine'")
    lateness_ms = duration_ms(max_lateness)
    try:
        cfg = ServingConfig(events=events, seed=seed, out_of_order=out_of_order,
                            max_lateness_ms=lateness_ms, rate=rate, seconds=seconds, pool_events=pool,
                            max_in_flight=max_in_flight, engine=engine)
    except ServingError as err:
        raise typer.BadParameter(str(err)) from err
    settings = get_settings()
    try:
        doc = run_serving(settings, cfg, err_console)
    except PlaygroundError as err:
        err_console.print(f"[red]serving lab failed: {err}")
        raise typer.Exit(1) from err
    paths = write_serving_results(doc, results_dir or settings.results_dir)
    if as_json:
        out = json_summary(doc)
        out["takeaway"] = takeaway(doc)
        out["results"] = {k: str(v) for k, v in paths.items()}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        show_results(paths, console)
