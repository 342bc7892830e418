"""``playground train ...``: the training-data lab (book ch. 4), one command per part."""

from __future__ import annotations

import typer

from dataflow_playground.app.train import leakage_cli, sampling_cli, serving_cli

train_app = typer.Typer(
    help="Training data: sampling methods compared, splits and leakage, the model served.",
    no_args_is_help=True)
train_app.command("sampling")(sampling_cli.command)
train_app.command("leakage")(leakage_cli.command)
train_app.command("serving")(serving_cli.command)
