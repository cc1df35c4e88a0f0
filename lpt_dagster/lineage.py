"""The tables a step reads or writes, as MLflow datasets (lineage: name, digest, schema, size; no
copy of the data).

A table gets the same name and digest (lpt_core.tracking.frame_digest of its content) in every
run that logs it, so searching MLflow for one digest finds the step that wrote the table and
every step that read it, and a registered version's lineage tags name the same digests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import polars as pl

from lpt_core.tracking import RunHandle, frame_digest

EXAMPLES_ASSET = "user_examples"
CATALOG_ASSET = "item_catalog"


@dataclass(frozen=True)
class TrackedTable:
    """A table as logged to an MLflow run: `name` is its dataset name (and the key of its digest
    in a registered version's lineage), `source` the asset it came from, `context` its role in
    the step ("train", "catalog", "profiles", ...)."""

    name: str
    frame: pl.DataFrame
    source: str
    context: str


def example_splits(user_examples: pl.DataFrame, splits: Iterable[str], source: str = EXAMPLES_ASSET) -> list[TrackedTable]:
    """The rows of each split (a split named twice counts once), as `examples_<split>`."""
    return [
        TrackedTable(f"examples_{split}", user_examples.filter(pl.col("split") == split), source, split)
        for split in dict.fromkeys(splits)
    ]


def catalog_table(item_catalog: pl.DataFrame, source: str = CATALOG_ASSET) -> TrackedTable:
    return TrackedTable(CATALOG_ASSET, item_catalog, source, "catalog")


def profile_tables(tables: Mapping[str, pl.DataFrame]) -> list[TrackedTable]:
    """Profile tables by asset name; an empty one (no sampled profiles asked for, no variant
    trained) has no rows that a step could have read, so it is left out."""
    return [TrackedTable(name, frame, name, "profiles") for name, frame in tables.items() if not frame.is_empty()]


def log_tables(run: RunHandle, tables: Iterable[TrackedTable]) -> dict[str, str]:
    """Log each table as a dataset of `run`; returns each one's digest by name."""
    digests = {}
    for table in tables:
        digests[table.name] = frame_digest(table.frame)
        run.log_dataset(table.frame, table.name, table.source, table.context, digest=digests[table.name])
    return digests
