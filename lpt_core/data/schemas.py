"""The canonical tables every reader produces and every later step consumes.

Readers map their source format onto these schemas, so cleaning, splitting, prompting and
evaluation never need to know whether data came from MovieLens, Amazon Reviews or a CSV.
Timestamps are Unix milliseconds (Amazon's unit; MovieLens seconds are multiplied by 1000).
"""

from __future__ import annotations

import polars as pl

INTERACTIONS = pl.Schema(
    {
        "user_id": pl.String,
        "item_id": pl.String,
        "rating": pl.Float32,  # null where the source has none
        "timestamp": pl.Int64,  # Unix milliseconds
        "review": pl.String,  # null where the source has none (MovieLens)
    }
)

ITEMS = pl.Schema(
    {
        "item_id": pl.String,
        "title": pl.String,
        "year": pl.Int32,  # null where unknown
        "description": pl.String,  # null where the source has none
        "categories": pl.List(pl.String),
        "price": pl.String,  # kept as text: sources write "$12.99", "from 5.00", or nothing
        "average_rating": pl.Float32,
    }
)

EXAMPLES = pl.Schema(
    {
        "user_id": pl.String,
        "split": pl.String,  # train | val | test
        "window": pl.Int32,  # 0 for the paper's one example per user; k for the k-th window
        "history_item_ids": pl.List(pl.String),
        "history_ratings": pl.List(pl.Float32),
        "history_reviews": pl.List(pl.String),
        "target_item_id": pl.String,
    }
)

SPLITS = ("train", "val", "test")


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Select the schema's columns in order with its dtypes (strict: a bad cast raises)."""
    return frame.select([pl.col(name).cast(dtype, strict=True) for name, dtype in schema.items()])


def schema_mismatches(frame: pl.DataFrame, schema: pl.Schema) -> list[str]:
    """Each of the schema's columns that `frame` lacks or holds with another dtype, as
    "column: expected <dtype>, found <dtype or missing>". Columns beyond the schema are allowed: a
    later step may add its own (item_catalog adds the item text) beside the canonical ones."""
    return [
        f"{name}: expected {dtype}, found {frame.schema.get(name, 'missing')}"
        for name, dtype in schema.items()
        if frame.schema.get(name) != dtype
    ]


def empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
