"""Data quality checks on the canonical tables, each outcome computed by Great Expectations.

GX 1.x has no polars backend, so every check hands GX a pandas copy of only the columns it needs.
Rules GX cannot state directly (users disjoint across splits, a target inside its own history,
history lengths, k-core counts) are first derived in polars as one column per row or per entity,
then asserted by a GX expectation on that column, so every outcome carries GX's unexpected counts
and a few offending values. Dtypes are compared polars-side: GX only sees the pandas dtypes.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from lpt_core.data.schemas import EXAMPLES, INTERACTIONS, ITEMS, SPLITS

# Offending values kept per expectation: enough to find the bad rows, small enough for a UI.
EXAMPLES_SHOWN = 5

# The checks each table gets, known before any data exists (Dagster declares checks up front).
# "raw_interactions" is check_interactions without k_core; "interactions" is with it.
_INTERACTION_CHECKS = (
    "interactions_schema",
    "interactions_not_empty",
    "interactions_keys_not_null",
    "interactions_rating_range",
)
CHECK_NAMES: dict[str, tuple[str, ...]] = {
    "raw_interactions": _INTERACTION_CHECKS,
    "interactions": (*_INTERACTION_CHECKS, "interactions_k_core"),
    "items": ("items_schema", "items_not_empty", "items_item_id_unique", "items_title_present"),
    "examples": (
        "examples_schema",
        "examples_every_split_present",
        "examples_split_values",
        "examples_users_disjoint",
        "examples_targets_in_catalog",
        "examples_history_length",
        "examples_target_not_in_history",
    ),
}

# One GX validation at a time per process: GX does not document its context as thread-safe.
_validation_lock = threading.Lock()


@dataclass(frozen=True)
class CheckOutcome:
    """The verdict of one check, shaped for a Dagster asset check result."""

    name: str
    passed: bool
    description: str
    details: dict


@dataclass(frozen=True)
class _Expectation:
    """A GX expectation named by class, built only once GX is imported (lazily)."""

    kind: str
    kwargs: dict[str, Any]


def _expect(kind: str, **kwargs: Any) -> _Expectation:
    return _Expectation(kind, kwargs)


@functools.cache
def _gx_batch_definition() -> Any:
    """One ephemeral GX context per process, built on first use.

    Importing GX takes seconds, so the import waits until a check runs (a Dagster definitions load
    that only imports this module stays fast); the context itself is then reused by every check.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("lpt_quality")
    return source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole_frame")


def _validate(
    frame: pl.DataFrame, expectations: Sequence[_Expectation], id_columns: Sequence[str] = ()
) -> tuple[bool, list[dict]]:
    """Run the expectations on `frame`; return overall success and one JSON-able summary each.

    `id_columns` name the columns GX reports beside each offending value (else: row numbers).
    """
    batch_definition = _gx_batch_definition()
    import great_expectations as gx

    suite = gx.ExpectationSuite(
        name="lpt_quality",
        expectations=[getattr(gx.expectations, e.kind)(**e.kwargs) for e in expectations],
    )
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": EXAMPLES_SHOWN,
    }
    if id_columns:
        result_format["unexpected_index_column_names"] = list(id_columns)
    with _validation_lock:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
        result = batch.validate(suite, result_format=result_format)
    return bool(result.success), [_summarise(r.to_json_dict()) for r in result.results]


_REPORTED_RESULT_KEYS = (
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "partial_unexpected_list",
    "partial_unexpected_counts",
    "partial_unexpected_index_list",
    "observed_value",
    "details",
)


def _summarise(result: dict) -> dict:
    config = result["expectation_config"]
    summary: dict[str, Any] = {
        "expectation": config["type"],
        "success": result["success"],
        "kwargs": {k: v for k, v in config["kwargs"].items() if k != "batch_id"},
    }
    summary.update({k: v for k, v in result["result"].items() if k in _REPORTED_RESULT_KEYS})
    if result["exception_info"].get("raised_exception"):
        summary["exception"] = result["exception_info"]["exception_message"]
    return _json_safe(summary)


def _json_safe(value: Any) -> Any:
    """GX reports missing values as NaN, which is not JSON: make them null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _unexpected_total(results: list[dict]) -> int:
    return sum(r.get("unexpected_count") or 0 for r in results)


def _gx_outcome(
    name: str,
    frame: pl.DataFrame,
    expectations: Sequence[_Expectation],
    ok: str,
    failed: str,
    id_columns: Sequence[str] = (),
) -> CheckOutcome:
    """Validate and phrase the verdict; `failed` may use {unexpected} and {rows}."""
    passed, results = _validate(frame, expectations, id_columns)
    unexpected = _unexpected_total(results)
    if passed:
        description = ok
    else:
        description = failed.format(unexpected=f"{unexpected:,}", rows=f"{frame.height:,}")
    details = {"rows": frame.height, "unexpected_count": unexpected, "expectations": results}
    return CheckOutcome(name, passed, description, details)


def _missing_columns(name: str, frame: pl.DataFrame, columns: Sequence[str]) -> CheckOutcome | None:
    """A failed outcome when the frame lacks a column this check reads."""
    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return None
    description = f"Cannot run: missing column(s) {', '.join(missing)}."
    return CheckOutcome(name, False, description, {"missing_columns": missing})


def _schema_check(
    name: str, frame: pl.DataFrame, schema: pl.Schema, schema_name: str
) -> CheckOutcome:
    """Column names and order through GX; dtypes compared in polars (GX sees only pandas dtypes)."""
    columns_match, results = _validate(
        frame.head(0), [_expect("ExpectTableColumnsToMatchOrderedList", column_list=list(schema))]
    )
    dtype_mismatches = {
        column: {"expected": str(dtype), "found": str(frame.schema[column])}
        for column, dtype in schema.items()
        if column in frame.schema and frame.schema[column] != dtype
    }
    missing = [c for c in schema if c not in frame.columns]
    extra = [c for c in frame.columns if c not in schema]
    passed = columns_match and not dtype_mismatches
    if passed:
        description = (
            f"Columns and dtypes match the {schema_name} schema (dtypes compared in polars)."
        )
    else:
        problems = [
            f"missing {missing}" if missing else "",
            f"unexpected {extra}" if extra else "",
            "columns out of order" if not (missing or extra or columns_match) else "",
            f"dtype mismatches in {sorted(dtype_mismatches)}" if dtype_mismatches else "",
        ]
        found = "; ".join(p for p in problems if p)
        description = f"Differs from the {schema_name} schema: {found}."
    details = {
        "missing_columns": missing,
        "unexpected_columns": extra,
        "dtype_mismatches": dtype_mismatches,
        "expectations": results,
    }
    return CheckOutcome(name, passed, description, details)


def check_interactions(interactions: pl.DataFrame, k_core: int | None) -> list[CheckOutcome]:
    """Schema, required keys, rating range, and (when `k_core` is given) the k-core property."""
    outcomes = [
        _schema_check("interactions_schema", interactions, INTERACTIONS, "INTERACTIONS"),
        _not_empty("interactions_not_empty", interactions, "interactions"),
        _interaction_keys_not_null(interactions),
        _ratings_in_range(interactions),
    ]
    if k_core is not None:
        outcomes.append(_k_core_holds(interactions, k_core))
    return outcomes


def _not_empty(name: str, frame: pl.DataFrame, rows_are: str) -> CheckOutcome:
    """Fails on a table with no rows: every other check passes on one, and a run on nothing is
    not a success."""
    return _gx_outcome(
        name,
        frame.select(pl.len().alias("rows")),  # GX reads the row count, not the table
        [_expect("ExpectColumnValuesToBeBetween", column="rows", min_value=1)],
        ok=f"The table holds {frame.height:,} {rows_are}.",
        failed=f"The table holds no {rows_are}: look at the upstream counts of where the rows went.",
    )


def _interaction_keys_not_null(interactions: pl.DataFrame) -> CheckOutcome:
    name, keys = "interactions_keys_not_null", ("user_id", "item_id", "timestamp")
    if skipped := _missing_columns(name, interactions, keys):
        return skipped
    return _gx_outcome(
        name,
        interactions.select(keys),
        [_expect("ExpectColumnValuesToNotBeNull", column=k) for k in keys],
        ok="Every interaction has a user_id, item_id and timestamp.",
        failed="{unexpected} null user_id/item_id/timestamp value(s) among {rows} interactions.",
    )


def _ratings_in_range(interactions: pl.DataFrame) -> CheckOutcome:
    name = "interactions_rating_range"
    if skipped := _missing_columns(name, interactions, ("user_id", "item_id", "rating")):
        return skipped
    return _gx_outcome(
        name,
        interactions.select("user_id", "item_id", "rating"),
        [_expect("ExpectColumnValuesToBeBetween", column="rating", min_value=0, max_value=5)],
        ok="Every non-null rating lies in [0, 5].",
        failed="{unexpected} rating(s) outside [0, 5] among {rows} interactions.",
        id_columns=("user_id", "item_id"),
    )


def _k_core_holds(interactions: pl.DataFrame, k_core: int) -> CheckOutcome:
    name = "interactions_k_core"
    if skipped := _missing_columns(name, interactions, ("user_id", "item_id")):
        return skipped
    # One row per user and per item with its interaction count, so GX names each offender.
    counts = pl.concat(
        [
            # Null ids are the null check's finding, not a k-core one.
            interactions.drop_nulls(column)
            .group_by(column)
            .agg(pl.len().cast(pl.Int64).alias("interactions"))
            .select(pl.lit(entity).alias("entity"), pl.col(column).alias("id"), "interactions")
            for entity, column in (("user", "user_id"), ("item", "item_id"))
        ]
    ).sort("interactions", "entity", "id")  # the sparsest first: those are the examples shown
    return _gx_outcome(
        name,
        counts,
        [_expect("ExpectColumnValuesToBeBetween", column="interactions", min_value=k_core)],
        ok=f"Every user and item has at least {k_core} interactions ({k_core}-core).",
        failed=f"{{unexpected}} of {{rows}} users/items have fewer than {k_core} interactions.",
        id_columns=("entity", "id"),
    )


def check_items(items: pl.DataFrame) -> list[CheckOutcome]:
    """Schema, a unique non-null item_id, and a non-null, non-blank title."""
    return [
        _schema_check("items_schema", items, ITEMS, "ITEMS"),
        _not_empty("items_not_empty", items, "items"),
        _item_ids_unique(items),
        _titles_present(items),
    ]


def _item_ids_unique(items: pl.DataFrame) -> CheckOutcome:
    name = "items_item_id_unique"
    if skipped := _missing_columns(name, items, ("item_id",)):
        return skipped
    return _gx_outcome(
        name,
        items.select("item_id"),
        [
            _expect("ExpectColumnValuesToNotBeNull", column="item_id"),
            _expect("ExpectColumnValuesToBeUnique", column="item_id"),
        ],
        ok="Every item has an item_id and no item_id repeats.",
        failed="{unexpected} null or repeated item_id value(s) among {rows} items.",
    )


def _titles_present(items: pl.DataFrame) -> CheckOutcome:
    name = "items_title_present"
    if skipped := _missing_columns(name, items, ("item_id", "title")):
        return skipped
    return _gx_outcome(
        name,
        items.select("item_id", "title"),
        [
            _expect("ExpectColumnValuesToNotBeNull", column="title"),
            _expect("ExpectColumnValuesToMatchRegex", column="title", regex=r"\S"),
        ],
        ok="Every item has a non-blank title.",
        failed="{unexpected} null or blank title(s) among {rows} items.",
        id_columns=("item_id",),
    )


def check_examples(
    examples: pl.DataFrame, catalog_item_ids: Sequence[str], history_len: int
) -> list[CheckOutcome]:
    """Schema, examples in every split, split names, users disjoint across splits, targets in the
    catalogue, history lengths equal to `history_len`, and no target inside its own history."""
    return [
        _schema_check("examples_schema", examples, EXAMPLES, "EXAMPLES"),
        _every_split_present(examples),
        _split_values_known(examples),
        _users_disjoint_across_splits(examples),
        _targets_in_catalog(examples, catalog_item_ids),
        _history_lengths(examples, history_len),
        _target_not_in_history(examples),
    ]


def _every_split_present(examples: pl.DataFrame) -> CheckOutcome:
    name = "examples_every_split_present"
    if skipped := _missing_columns(name, examples, ("split",)):
        return skipped
    # One row per split with its example count, so an empty split is named.
    counts = pl.DataFrame({"split": list(SPLITS)}).join(
        examples.group_by("split").agg(pl.len().cast(pl.Int64).alias("examples")), on="split", how="left"
    ).with_columns(pl.col("examples").fill_null(0))
    return _gx_outcome(
        name,
        counts,
        [_expect("ExpectColumnValuesToBeBetween", column="examples", min_value=1)],
        ok=f"Every split ({', '.join(SPLITS)}) has examples.",
        failed="{unexpected} of the {rows} splits have no examples.",
        id_columns=("split",),
    )


def _split_values_known(examples: pl.DataFrame) -> CheckOutcome:
    name = "examples_split_values"
    if skipped := _missing_columns(name, examples, ("user_id", "split")):
        return skipped
    return _gx_outcome(
        name,
        examples.select("user_id", "split"),
        [
            _expect("ExpectColumnValuesToNotBeNull", column="split"),
            _expect("ExpectColumnValuesToBeInSet", column="split", value_set=list(SPLITS)),
        ],
        ok=f"Every example's split is one of {', '.join(SPLITS)}.",
        failed=f"{{unexpected}} of {{rows}} examples have a split outside {', '.join(SPLITS)}.",
        id_columns=("user_id",),
    )


def _users_disjoint_across_splits(examples: pl.DataFrame) -> CheckOutcome:
    name = "examples_users_disjoint"
    if skipped := _missing_columns(name, examples, ("user_id", "split")):
        return skipped
    per_user = examples.group_by("user_id").agg(
        pl.col("split").n_unique().cast(pl.Int64).alias("splits_of_user"),
        pl.col("split").unique().sort().str.join(",").alias("splits"),
    ).sort("user_id")
    return _gx_outcome(
        name,
        per_user,
        [_expect("ExpectColumnValuesToBeBetween", column="splits_of_user", max_value=1)],
        ok="Every user's examples lie in a single split.",
        failed="{unexpected} of {rows} users appear in more than one split.",
        id_columns=("user_id", "splits"),
    )


def _targets_in_catalog(examples: pl.DataFrame, catalog_item_ids: Sequence[str]) -> CheckOutcome:
    name = "examples_targets_in_catalog"
    if skipped := _missing_columns(name, examples, ("user_id", "target_item_id")):
        return skipped
    # Membership is derived in polars: a catalogue-sized value_set inside a GX config is slow
    # and would be copied into every result. A null target counts as outside the catalogue.
    catalog = pl.Series("catalog", list(catalog_item_ids), dtype=pl.String)
    derived = examples.select(
        "user_id",
        "target_item_id",
        pl.col("target_item_id").is_in(catalog).fill_null(False).alias("target_in_catalog"),
    )
    return _gx_outcome(
        name,
        derived,
        [_expect("ExpectColumnValuesToBeInSet", column="target_in_catalog", value_set=[True])],
        ok=f"Every target item is in the catalogue of {len(catalog):,} items.",
        failed="{unexpected} of {rows} example targets are missing from the catalogue.",
        id_columns=("user_id", "target_item_id"),
    )


def _history_lengths(examples: pl.DataFrame, history_len: int) -> CheckOutcome:
    name = "examples_history_length"
    if skipped := _missing_columns(name, examples, ("user_id", "history_item_ids")):
        return skipped
    derived = examples.select(
        "user_id",
        pl.col("history_item_ids").list.len().fill_null(0).cast(pl.Int64).alias("history_len"),
    )
    return _gx_outcome(
        name,
        derived,
        [
            _expect(
                "ExpectColumnValuesToBeBetween",
                column="history_len",
                min_value=history_len,
                max_value=history_len,
            )
        ],
        ok=f"Every history holds exactly {history_len} items.",
        failed=f"{{unexpected}} of {{rows}} histories do not hold exactly {history_len} items.",
        id_columns=("user_id",),
    )


def _target_not_in_history(examples: pl.DataFrame) -> CheckOutcome:
    name = "examples_target_not_in_history"
    needed = ("user_id", "history_item_ids", "target_item_id")
    if skipped := _missing_columns(name, examples, needed):
        return skipped
    derived = examples.select(
        "user_id",
        "target_item_id",
        pl.col("history_item_ids")
        .list.contains(pl.col("target_item_id"))
        .fill_null(False)
        .alias("target_in_history"),
    )
    return _gx_outcome(
        name,
        derived,
        [_expect("ExpectColumnValuesToBeInSet", column="target_in_history", value_set=[False])],
        ok="No target item appears in its own history.",
        failed="{unexpected} of {rows} examples have their target inside their own history.",
        id_columns=("user_id", "target_item_id"),
    )
