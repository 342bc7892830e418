"""REST ingestion under concurrent clients; the service SIGKILLed once and started again.

Clients post batches to ``POST /events/batch``. A batch is *acknowledged* when the reply
says every record was accepted; a connection error or a 5xx leaves it *unacknowledged*
(it may or may not have been stored: the reply was lost with the process). Clients do not
retry, so an unacknowledged batch is counted, never sent twice. The service writes a
receipt per accepted event before it replies (``core.receipts``); those are what is stored.
Pass: every acknowledged event has exactly one receipt.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

import httpx
import orjson

from dataflow_playground.app import stack
from dataflow_playground.app.chaos.accounting import Outcome
from dataflow_playground.app.chaos.env import ChaosEnv
from dataflow_playground.core import receipts
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, generate_events

NAME = "rest-kill"
CONDITION = "every acknowledged event stored exactly once"
BATCH = 25


@dataclass
class ClientFigures:
    sent: list[int] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    unacknowledged: list[int] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def _client(url: str, pool: list[dict[str, object]], ids: count[int], lock: threading.Lock,
            until: float, fig: ClientFigures) -> None:
    with httpx.Client(timeout=5.0) as client:
        i = 0
        while time.monotonic() < until:
            with lock:
                batch_ids = [next(ids) for _ in range(BATCH)]
            body = [{**pool[(i + j) % len(pool)], "event_id": e} for j, e in enumerate(batch_ids)]
            i += BATCH
            fig.sent.extend(batch_ids)
            try:
                resp = client.post(url, content=orjson.dumps(body),
                                   headers={"content-type": "application/json"})
                ok = resp.status_code == 200 and resp.json().get("accepted") == len(body)
                if not ok:
                    fig.errors[f"HTTP {resp.status_code}"] += 1
            except httpx.HTTPError as err:
                ok = False
                fig.errors[type(err).__name__] += 1
            if ok:
                fig.acknowledged.extend(batch_ids)
                fig.ack_times.append(time.monotonic())
            else:
                fig.unacknowledged.extend(batch_ids)
                time.sleep(0.05)  # the service is down: do not spin


def run(base: Settings, quick: bool, say: Callable[[str], None], seed: int = 17) -> Outcome:
    duration, clients = (10.0, 4) if quick else (60.0, 8)
    out = Outcome(scenario=NAME, condition=CONDITION)
    pool = generate_events(GeneratorConfig(events=2_000, seed=seed))
    with ChaosEnv(base, NAME) as env:
        s = env.settings
        say("starting the REST service")
        env.start(stack.REST)
        figs = [ClientFigures() for _ in range(clients)]
        ids, lock = count(1), threading.Lock()
        until = time.monotonic() + duration
        threads = [threading.Thread(target=_client, daemon=True,
                                    args=(f"{s.rest_url}/events/batch", pool, ids, lock, until, f))
                   for f in figs]
        for t in threads:
            t.start()
        time.sleep(duration / 2)
        env.kill(stack.REST)
        t_kill = time.monotonic()  # after the process is gone: no reply in flight counts as recovery
        say(f"REST service SIGKILLed under {clients} clients")
        start_s = env.start(stack.REST)
        for t in threads:
            t.join(timeout=duration + 30)
        after = [t for f in figs for t in f.ack_times if t > t_kill]
        if after:
            out.recovery_s.append(round(min(after) - t_kill, 2))
        rows = receipts.read(receipts.receipt_files(s.data_dir / "ingest"))
    stored = Counter(rows["event_id"].tolist())
    acked = {e for f in figs for e in f.acknowledged}
    unacked = {e for f in figs for e in f.unacknowledged}
    out.sent = sum(len(f.sent) for f in figs)
    out.acknowledged, out.unacknowledged = len(acked), len(unacked)
    out.received = len(rows)
    out.stored = len(stored)
    out.duplicates = len(rows) - len(stored)
    out.duplicated = sum(1 for e in acked if stored[e] > 1)
    out.lost = sum(1 for e in acked if e not in stored)
    kept_unacked = sum(1 for e in unacked if e in stored)
    errors: Counter[str] = Counter()
    for f in figs:
        errors.update(f.errors)
    out.extra.update({"clients": clients, "duration_s": duration, "service_start_s": round(start_s, 2),
                      "unacknowledged_but_stored": kept_unacked, "client_errors": dict(errors)})
    out.condition_met = out.lost == 0 and out.duplicated == 0 and bool(out.recovery_s)
    out.notes.append(f"{out.unacknowledged:,} events unacknowledged (in flight at the kill or sent "
                     f"while down), {kept_unacked:,} of them stored anyway: a retrying client would "
                     "have doubled those")
    out.notes.append("stored counted from the service's receipt files")
    return out
