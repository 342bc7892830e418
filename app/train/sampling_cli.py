"""``playground train sampling``: the sampling lab's command (register ``command`` with typer).

Progress goes to stderr. With ``--json`` stdout holds one JSON object and nothing else, with
the keys ``JSON_KEYS``: ``events``, ``seeds``, ``sample_size``, ``data_seed``, ``top_country``,
``truth`` and ``target_truth`` (statistic -> value), ``reservoir`` (``source``: ``memory`` or
``kafka``, records ``consumed``, ``passes``), ``methods`` (method -> ``label``, ``against``,
``mean_fraud_count``, and per statistic ``truth``, ``mean``, ``bias``, ``std``, ``rmse``,
``relative_bias``), ``inclusion`` (the weighted samples' target and drawn inclusion
probabilities), ``takeaway`` and ``results`` (the paths written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dataflow_playground.app.console import console, show_results, stderr_console

err_console = stderr_console()

JSON_KEYS = ("events", "seeds", "sample_size", "data_seed", "top_country", "truth", "target_truth",
             "reservoir", "methods", "inclusion", "takeaway", "results")


def command(
    events: Annotated[int, typer.Option("--events", "-n", min=1, max=20_000_000,
                                        help="seeded events to generate (the population)")] = 200_000,
    seeds: Annotated[int, typer.Option(min=1, max=1_000, help="samples drawn per method (bias and spread "
                                                   "are over these)")] = 50,
    sample_size: Annotated[int, typer.Option("--sample-size", "-k", min=1,
                                             help="events per sample (at most --events)")] = 2_000,
    data_seed: Annotated[int, typer.Option(min=0, help="generator seed (same seed, same events)")] = 42,
    bootstrap: Annotated[str | None, typer.Option(
        help="a Kafka broker (host:port): the reservoir then reads the events from a topic in "
             "one pass; without it, from the in-memory stream")] = None,
    topic: Annotated[str | None, typer.Option(
        help="topic the events are produced to and read from (new or empty; kept). Default: "
             "a throwaway topic. Alone, it uses the configured broker")] = None,
    results_dir: Annotated[Path | None, typer.Option(
        help="where sampling.{json,md,png} go (default: PLAYGROUND_RESULTS_DIR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as one JSON object "
                                                         "on stdout")] = False,
) -> None:
    """Sampling (book ch. 4): random, stratified, weighted, reservoir, importance, convenience, quota."""
    from dataflow_playground.app.train.sampling import (
        SamplingConfig,
        SamplingError,
        run_sampling,
        write_sampling_results,
    )
    from dataflow_playground.core.settings import get_settings

    if sample_size > events:
        raise typer.BadParameter(
            f"the sample ({sample_size:,}) is larger than the data ({events:,} events): a sample "
            "without replacement cannot hold more events than exist. Lower --sample-size or "
            "raise --events.", param_hint="'--sample-size'")
    if topic is not None and bootstrap is None:
        bootstrap = get_settings().bootstrap_servers
    try:
        cfg = SamplingConfig(events=events, seeds=seeds, sample_size=sample_size,
                             data_seed=data_seed, bootstrap=bootstrap, topic=topic)
    except SamplingError as err:
        raise typer.BadParameter(str(err)) from err
    where = f"Kafka at {bootstrap}" if bootstrap else "the in-memory stream"
    with err_console.status(f"sampling {sample_size:,} of {events:,} events x {seeds} seeds "
                            f"(reservoir over {where})") as status:
        doc = run_sampling(cfg, step=lambda m: status.update(f"sampling: {m}"))
    paths = write_sampling_results(doc, results_dir or get_settings().results_dir, cfg)
    if as_json:
        slim: dict[str, Any] = {k: doc[k] for k in JSON_KEYS if k in doc}
        slim["takeaway"] = json.loads(paths["json"].read_text())["takeaway"]
        slim["results"] = {k: str(v) for k, v in paths.items()}
        sys.stdout.write(json.dumps(slim, indent=2) + "\n")
    else:
        show_results(paths, console)
