"""The settings the running stack was started with, remembered in its run folder.

``up`` writes them to ``<run_dir>/stack.json``; later commands (``status``, ``down``,
``topics``, ``logs``, ``produce``) read them back for every setting their own environment
does not set, so ``PLAYGROUND_REST_PORT=8100 playground up`` followed by a bare
``playground status`` checks port 8100, not the default. ``down`` forgets them.
"""

from __future__ import annotations

import json
from pathlib import Path

from dataflow_playground.core.settings import Settings

# What tells a command where the stack's processes listen and what they read.
REMEMBERED = ("kafka_port", "kafka_controller_port", "brokers", "kafka_2_port", "kafka_2_controller_port",
              "kafka_3_port", "kafka_3_controller_port", "rest_port", "rpc_port", "dashboard_port",
              "bootstrap_servers_override",
              "topic", "sink_dead_letter_topic", "features_dead_letter_topic", "partitions",
              "stream_engine", "duckdb_path", "producer_rate")


def state_file(settings: Settings) -> Path:
    return settings.run_dir / "stack.json"


def remember(settings: Settings) -> Path:
    """Write the settings of the stack ``up`` started (the remembered subset)."""
    path = state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    dumped = settings.model_dump(mode="json")
    path.write_text(json.dumps({k: dumped[k] for k in REMEMBERED if k in dumped}, indent=2))
    return path


def forget(settings: Settings) -> None:
    state_file(settings).unlink(missing_ok=True)


def effective(settings: Settings) -> Settings:
    """``settings`` with the remembered values for every field its environment left unset."""
    path = state_file(settings)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return settings
    if not isinstance(saved, dict):
        return settings
    update = {k: v for k, v in saved.items()
              if k in REMEMBERED and k in Settings.model_fields and k not in settings.model_fields_set}
    if not update:
        return settings
    # Validated again (ports distinct, ranges), so a hand-edited file cannot smuggle nonsense in.
    return Settings.model_validate({**settings.model_dump(exclude_unset=True), **update})
