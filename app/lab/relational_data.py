"""The generator's events, normalised into users, merchants and transactions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataflow_playground.producers.generator import COUNTRIES, GeneratorConfig, generate_table

CATEGORIES = ("grocery", "travel", "electronics", "fashion", "gaming", "fuel", "restaurants")


@dataclass(frozen=True)
class Relational:
    users: pa.Table  # user_id, home_country
    merchants: pa.Table  # merchant_id, category, country
    transactions: pa.Table  # tx_id, user_id, merchant_id, amount, currency, ts, is_fraud


def normalise(events: pa.Table, seed: int = 42) -> Relational:
    """Split the wide events into three tables; attributes of users/merchants move out."""
    rng = np.random.default_rng(seed)
    # A user's home country is the country of their first payment (95% pay at home).
    first = events.group_by("user_id", use_threads=False).aggregate([("country", "first")])
    users = pa.table({"user_id": first.column("user_id"),
                      "home_country": first.column("country_first")}).sort_by("user_id")
    merchant_ids = pc.unique(events.column("merchant_id")).sort()
    n = len(merchant_ids)
    merchants = pa.table({
        "merchant_id": merchant_ids,
        "category": pa.array(np.array(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), n)],
                             pa.string()),
        "country": pa.array(np.array(COUNTRIES, dtype=object)[rng.integers(0, len(COUNTRIES), n)],
                            pa.string()),
    })
    transactions = events.select(["event_id", "user_id", "merchant_id", "amount", "currency",
                                  "ts", "is_fraud"]).rename_columns(
        ["tx_id", "user_id", "merchant_id", "amount", "currency", "ts", "is_fraud"])
    return Relational(users, merchants, transactions)


def relational_dataset(rows: int, seed: int = 42) -> Relational:
    return normalise(generate_table(GeneratorConfig(events=rows, seed=seed)), seed)
