"""The tables a step reads or writes, as MLflow datasets (lineage: name, digest, schema, size; no
copy of the data).

A table gets the same name and digest (lpt_core.tracking.frame_digest of its content) in every
run that logs it, so searching MLflow for one digest finds the step that wrote the table and
every step that read it, and a registered version's lineage tags name the same digests. Every
step logs every table it reads (role "input") and those it writes (role "output"), as a tag of
the run's dataset input (MLflow keeps one source per name and digest: the first logged);
tests/test_pipeline.py checks the tables read against the steps' declared inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import polars as pl

from lpt_core.data.schemas import SPLITS
from lpt_core.tracking import DatasetRole, RunHandle, frame_digest

EXAMPLES_ASSET = "user_examples"
CATALOG_ASSET = "item_catalog"


@dataclass(frozen=True)
class TrackedTable:
    """A table as logged to an MLflow run: `name` is its dataset name (and the key of its digest
    in a registered version's lineage), `source` the asset or file it came from, `context` its use
    in the step ("train", "catalog", "profiles", ...), `role` whether the step read or wrote it."""

    name: str
    frame: pl.DataFrame
    source: str
    context: str
    role: DatasetRole = "input"


def read_tables(**tables: pl.DataFrame) -> list[TrackedTable]:
    """Tables a step reads whole, each named after its asset."""
    return [TrackedTable(name, frame, name, "input") for name, frame in tables.items()]


def written(tables: Iterable[TrackedTable]) -> list[TrackedTable]:
    """The same tables, as written by the step."""
    return [replace(table, role="output") for table in tables]


def example_splits(
    user_examples: pl.DataFrame, splits: Iterable[str] = SPLITS, source: str = EXAMPLES_ASSET
) -> list[TrackedTable]:
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
        run.log_dataset(
            table.frame, table.name, table.source, table.context, digest=digests[table.name], role=table.role
        )
    return digests
