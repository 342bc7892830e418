"""``playground train leakage``: splits and leakage, and the model the REST service scores with.

Register with ``train_app.command("leakage")(command)``. Progress goes to stderr, so
``--json`` prints one JSON object and nothing else on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from dataflow_playground.app.console import console, show_results, stderr_console
from dataflow_playground.core.settings import get_settings

err_console = stderr_console()


def command(
    events: Annotated[int, typer.Option(min=1_000, max=5_000_000,
                                        help="events to generate (at least 1,000)")] = 100_000,
    seed: Annotated[int, typer.Option(min=0, help="generator and model seed")] = 42,
    save_model: Annotated[bool, typer.Option(
        "--save-model/--no-save-model",
        help="write the served model (correct features) to <data_dir>/model/fraud.joblib")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Random vs time split, correct vs leaky windows: offline AUC against a later period."""
    from dataflow_playground.app.train.leakage import (
        LeakageConfig,
        public_doc,
        run_leakage,
        save_served_model,
        write_leakage_results,
    )
    from dataflow_playground.features.model import model_path

    settings = get_settings()
    cfg = LeakageConfig(events=events, seed=seed)
    with err_console.status("leakage lab") as status:
        doc = run_leakage(cfg, lambda msg: status.update(f"leakage lab: {msg}"))
    paths = write_leakage_results(doc, settings.results_dir)
    saved = save_served_model(doc, model_path(settings)) if save_model else None
    if as_json:
        out = public_doc(doc)
        out["model"] = saved
        out["results"] = {k: str(v) for k, v in paths.items()}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        show_results(paths, console)
        if saved:
            console.print(f"model {saved['version']} -> {saved['path']}")
    if saved:
        err_console.print(f"saved model {saved['version']} to {saved['path']}")
