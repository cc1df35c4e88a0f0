"""Data assets: raw tables -> cleaned histories -> user examples (train/val/test) + item catalogue."""

import dataclasses

import dagster as dg
import polars as pl

from lpt_core import text
from lpt_core.data.cleaning import clean
from lpt_core.data.readers import TIMESTAMP_UNITS, InputAccount, RawData, read_raw
from lpt_core.data.splitting import drop_long_prompts, split_users
from lpt_core.models import load_tokenizer
from lpt_core.paths import resolve_repo_path
from lpt_core.tracking import frame_digest
from lpt_dagster.failures import user_errors_as_failures
from lpt_dagster.lineage import TrackedTable, catalog_table, example_splits, log_tables, read_tables, written
from lpt_dagster.metadata import figure_markdown, frame_preview, histogram_figure
from lpt_dagster.resources import MlflowResource, RecipeResource
from lpt_dagster.subsets import selected_outputs

GROUP = "data"


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


@dg.multi_asset(
    group_name=GROUP,
    can_subset=True,
    outs={
        "raw_interactions": dg.AssetOut(is_required=False, description="Interactions as read from the source, canonical schema."),
        "raw_items": dg.AssetOut(is_required=False, description="Item metadata as read from the source, canonical schema."),
    },
)
def raw_data(context: dg.AssetExecutionContext, recipe: RecipeResource, mlflow: MlflowResource):
    """Read the recipe's raw files (never modified); malformed rows stop the run or are quarantined.

    Every input row is accounted for in the metadata, per file (`input_accounts`): kept,
    quarantined, or skipped (blank lines, repeated item ids), with the optional values read as
    null (with an example each) and the timestamps read in another unit than milliseconds.
    """
    cfg = recipe.get()
    with user_errors_as_failures():
        raw: RawData = read_raw(cfg.data)
    source = str(resolve_repo_path(cfg.data.path))
    accounting = _accounting(raw)
    for account in raw.accounts:
        if account.skipped or account.nulled:
            context.log.warning(
                "%s: skipped %s; optional values read as null %s", account.file, account.skipped, account.nulled
            )
    with mlflow.asset_run(context, cfg, "raw_data") as run:
        log_tables(run, written([TrackedTable("raw_interactions", raw.interactions, source, "raw"),
                                 TrackedTable("raw_items", raw.items, source, "raw")]))
        run.log_metrics({"raw_interactions": raw.interactions.height, **accounting})
    quarantine_meta = {
        **accounting,
        "input_accounts": dg.MetadataValue.json([dataclasses.asdict(a) for a in raw.accounts]),
        "quarantine_preview": frame_preview(raw.quarantine),
    }
    yield from selected_outputs(
        context,
        dg.Output(
            raw.interactions,
            output_name="raw_interactions",
            metadata={**_table_stats(raw.interactions), **quarantine_meta, "source": source,
                      "digest": frame_digest(raw.interactions), "preview": frame_preview(raw.interactions),
                      "mlflow_run": mlflow.link(run)},
        ),
        dg.Output(
            raw.items,
            output_name="raw_items",
            metadata={"rows": raw.items.height, "digest": frame_digest(raw.items), "preview": frame_preview(raw.items)},
        ),
    )


def _input_accounts(context: dg.AssetExecutionContext) -> tuple[InputAccount, ...]:
    """The read's accounts, from the metadata of the raw_interactions it stored (the table the IO
    manager hands this step), so the cleaning report counts the rows the read set aside."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("raw_interactions"))
    accounts = event.asset_materialization.metadata.get("input_accounts") if event else None
    return tuple(InputAccount(**account) for account in accounts.value) if accounts else ()


@dg.multi_asset(
    group_name=GROUP,
    can_subset=True,
    outs={
        "cleaned_histories": dg.AssetOut(is_required=False, description="Interactions after de-duplication, k-core and length filters."),
        "cleaned_items": dg.AssetOut(is_required=False, description="Items still interacted with after cleaning."),
    },
)
def cleaned_data(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    raw_interactions: pl.DataFrame,
    raw_items: pl.DataFrame,
):
    cfg = recipe.get()
    raw = RawData(
        interactions=raw_interactions, items=raw_items, quarantine=pl.DataFrame(), accounts=_input_accounts(context)
    )
    item_token_counts = text.item_token_counter(load_tokenizer(cfg.models.encoder))
    interactions, items, report = clean(raw, cfg.data, item_token_counts=item_token_counts)
    context.log.info("cleaning:\n%s", report.to_markdown())
    with mlflow.asset_run(context, cfg, "cleaned_histories") as run:
        log_tables(run, [
            *read_tables(raw_interactions=raw_interactions, raw_items=raw_items),
            *written([TrackedTable("cleaned_histories", interactions, "raw_interactions", "cleaned"),
                      TrackedTable("cleaned_items", items, "raw_items", "cleaned")]),
        ])
        run.log_metrics({"cleaned_interactions": interactions.height, "cleaned_items": items.height})
        run.log_text(report.to_markdown(), "cleaning_report.md")
    per_user = interactions.group_by("user_id").len()["len"]
    histories = dg.Output(
        interactions,
        output_name="cleaned_histories",
        metadata={
            **_table_stats(interactions),
            "cleaning_steps": dg.MetadataValue.md(report.to_markdown()),
            "interactions_per_user": figure_markdown(
                histogram_figure(per_user, "Interactions per user after cleaning", "interactions")
            ),
            "digest": frame_digest(interactions),
            "preview": frame_preview(interactions),
            "mlflow_run": mlflow.link(run),
        },
    )
    kept_items = dg.Output(items, output_name="cleaned_items", metadata={"rows": items.height, "preview": frame_preview(items)})
    yield from selected_outputs(context, histories, kept_items)


@dg.multi_asset(
    group_name=GROUP,
    can_subset=True,
    outs={
        "user_examples": dg.AssetOut(is_required=False, description="One row per (user, window): history of N items and the next new item."),
        "item_catalog": dg.AssetOut(is_required=False, description="The catalogue ranked at evaluation: items of train users, with their text."),
    },
)
def split_data(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    cleaned_histories: pl.DataFrame,
    cleaned_items: pl.DataFrame,
):
    cfg = recipe.get()
    split = split_users(cleaned_histories, cfg.split)
    prompt_tokens = text.prompt_token_counts(
        split.examples, cleaned_items, load_tokenizer(cfg.models.generator), cfg.prompt, cfg.data.source
    )
    split, too_long = drop_long_prompts(split, prompt_tokens, cfg.data.max_prompt_tokens)
    catalog = cleaned_items.filter(pl.col("item_id").is_in(split.catalog_item_ids.implode()))
    catalog = catalog.with_columns(text.item_texts(catalog).alias("text")).sort("item_id")
    stats = split.stats()
    context.log.info("split statistics: %s", stats)
    with mlflow.asset_run(context, cfg, "user_examples") as run:
        log_tables(run, [
            *read_tables(cleaned_histories=cleaned_histories, cleaned_items=cleaned_items),
            *written([*example_splits(split.examples, source="cleaned_histories"),
                      catalog_table(catalog, source="cleaned_items")]),
        ])
        run.log_dict(stats, "split_stats.json")
        run.log_metrics({"prompts_too_long": too_long, "catalog_items": catalog.height})
    history_lengths = split.examples["history_item_ids"].list.len()
    examples = dg.Output(
        split.examples,
        output_name="user_examples",
        metadata={
            "split_stats": dg.MetadataValue.json(stats),
            "prompts_too_long_dropped": too_long,
            "history_length": figure_markdown(histogram_figure(history_lengths, "History length", "items")),
            "preview": frame_preview(split.examples),
            "mlflow_run": mlflow.link(run),
        },
    )
    catalogue = dg.Output(catalog, output_name="item_catalog", metadata={"items": catalog.height, "preview": frame_preview(catalog)})
    yield from selected_outputs(context, examples, catalogue)
