"""What the data assets record: the tables read and written, where every input row went, the
cleaning report and the split's statistics."""

from __future__ import annotations

import dataclasses

import dagster as dg
import polars as pl

from lpt_core.config import Recipe
from lpt_core.data.preparation import CleanedData, SplitData
from lpt_core.data.readers import TIMESTAMP_UNITS, RawData
from lpt_core.paths import resolve_repo_path
from lpt_core.tracking import frame_digest
from lpt_dagster.lineage import TrackedTable, catalog_table, example_splits, log_tables, read_tables, written
from lpt_dagster.metadata import figure_markdown, frame_preview, histogram_figure
from lpt_dagster.resources import MlflowResource


def record_raw_data(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, raw: RawData
) -> tuple[dict, dict]:
    """raw_data: the tables read and where every input row went; returns the metadata of
    raw_interactions and of raw_items."""
    source = str(resolve_repo_path(recipe.data.path))
    accounting = _accounting(raw)
    for account in raw.accounts:
        if account.skipped or account.nulled:
            context.log.warning(
                "%s: skipped %s; optional values read as null %s", account.file, account.skipped, account.nulled
            )
    with mlflow.asset_run(context, recipe, "raw_data") as run:
        log_tables(run, written([TrackedTable("raw_interactions", raw.interactions, source, "raw"),
                                 TrackedTable("raw_items", raw.items, source, "raw")]))
        run.log_metrics({"raw_interactions": raw.interactions.height, **accounting})
    interactions = {
        **_table_stats(raw.interactions), **accounting,
        "input_accounts": dg.MetadataValue.json([dataclasses.asdict(a) for a in raw.accounts]),
        "quarantine_preview": frame_preview(raw.quarantine), "source": source,
        "digest": frame_digest(raw.interactions), "preview": frame_preview(raw.interactions),
        "mlflow_run": mlflow.link(run),
    }
    items = {"rows": raw.items.height, "digest": frame_digest(raw.items), "preview": frame_preview(raw.items)}
    return interactions, items


def record_cleaned_data(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, raw: RawData, cleaned: CleanedData
) -> tuple[dict, dict]:
    """cleaned_data: the tables read and written and the cleaning report; returns the metadata of
    cleaned_histories and of cleaned_items."""
    interactions, items, report = cleaned.interactions, cleaned.items, cleaned.report
    context.log.info("cleaning:\n%s", report.to_markdown())
    with mlflow.asset_run(context, recipe, "cleaned_histories") as run:
        log_tables(run, [
            *read_tables(raw_interactions=raw.interactions, raw_items=raw.items),
            *written([TrackedTable("cleaned_histories", interactions, "raw_interactions", "cleaned"),
                      TrackedTable("cleaned_items", items, "raw_items", "cleaned")]),
        ])
        run.log_metrics({"cleaned_interactions": interactions.height, "cleaned_items": items.height})
        run.log_text(report.to_markdown(), "cleaning_report.md")
    per_user = interactions.group_by("user_id").len()["len"]
    histories = {
        **_table_stats(interactions),
        "cleaning_steps": dg.MetadataValue.md(report.to_markdown()),
        "interactions_per_user": figure_markdown(
            histogram_figure(per_user, "Interactions per user after cleaning", "interactions")
        ),
        "digest": frame_digest(interactions),
        "preview": frame_preview(interactions),
        "mlflow_run": mlflow.link(run),
    }
    return histories, {"rows": items.height, "preview": frame_preview(items)}


def record_split(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, cleaned_histories: pl.DataFrame,
    cleaned_items: pl.DataFrame, prepared: SplitData,
) -> tuple[dict, dict]:
    """split_data: the tables read and written and the split's statistics; returns the metadata
    of user_examples and of item_catalog."""
    examples, catalog, too_long = prepared.examples, prepared.catalog, prepared.prompts_too_long
    stats = prepared.split.stats()
    context.log.info("split statistics: %s", stats)
    with mlflow.asset_run(context, recipe, "user_examples") as run:
        log_tables(run, [
            *read_tables(cleaned_histories=cleaned_histories, cleaned_items=cleaned_items),
            *written([*example_splits(examples, source="cleaned_histories"),
                      catalog_table(catalog, source="cleaned_items")]),
        ])
        run.log_dict(stats, "split_stats.json")
        run.log_metrics({"prompts_too_long": too_long, "catalog_items": catalog.height})
    history_lengths = examples["history_item_ids"].list.len()
    examples_metadata = {
        "split_stats": dg.MetadataValue.json(stats),
        "prompts_too_long_dropped": too_long,
        "history_length": figure_markdown(histogram_figure(history_lengths, "History length", "items")),
        "preview": frame_preview(examples),
        "mlflow_run": mlflow.link(run),
    }
    return examples_metadata, {"items": catalog.height, "preview": frame_preview(catalog)}


def _table_stats(frame: pl.DataFrame) -> dict[str, int]:
    return {
        "rows": frame.height,
        "users": frame["user_id"].n_unique() if "user_id" in frame.columns else 0,
        "items": frame["item_id"].n_unique() if "item_id" in frame.columns else 0,
    }


def _accounting(raw: RawData) -> dict[str, int]:
    """Totals over the input files: every row read is kept, quarantined or skipped."""
    return {
        "input_rows": sum(a.rows for a in raw.accounts),
        "quarantined_rows": sum(a.quarantined for a in raw.accounts),
        "skipped_rows": sum(sum(a.skipped.values()) for a in raw.accounts),
        "optional_values_read_as_null": sum(sum(a.nulled.values()) for a in raw.accounts),
        **{
            f"timestamps_read_as_{unit}": sum(a.timestamp_units.get(unit, 0) for a in raw.accounts)
            for unit in TIMESTAMP_UNITS
        },
    }
