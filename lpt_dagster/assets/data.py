"""Data assets: raw tables -> cleaned histories -> user examples (train/val/test) + item catalogue."""

import dagster as dg
import polars as pl

from lpt_core.data.preparation import clean_raw_data, split_cleaned_data
from lpt_core.data.readers import InputAccount, RawData, read_raw
from lpt_dagster.failures import user_errors_as_failures
from lpt_dagster.recording.data import record_cleaned_data, record_raw_data, record_split
from lpt_dagster.resources import MlflowResource, RecipeResource
from lpt_dagster.subsets import selected_outputs

GROUP = "data"


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
    interactions_metadata, items_metadata = record_raw_data(context, mlflow, cfg, raw)
    yield from selected_outputs(
        context,
        dg.Output(raw.interactions, output_name="raw_interactions", metadata=interactions_metadata),
        dg.Output(raw.items, output_name="raw_items", metadata=items_metadata),
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
    cleaned = clean_raw_data(raw, cfg)
    histories_metadata, items_metadata = record_cleaned_data(context, mlflow, cfg, raw, cleaned)
    yield from selected_outputs(
        context,
        dg.Output(cleaned.interactions, output_name="cleaned_histories", metadata=histories_metadata),
        dg.Output(cleaned.items, output_name="cleaned_items", metadata=items_metadata),
    )


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
    prepared = split_cleaned_data(cleaned_histories, cleaned_items, cfg)
    examples_metadata, catalog_metadata = record_split(context, mlflow, cfg, cleaned_histories, cleaned_items, prepared)
    yield from selected_outputs(
        context,
        dg.Output(prepared.examples, output_name="user_examples", metadata=examples_metadata),
        dg.Output(prepared.catalog, output_name="item_catalog", metadata=catalog_metadata),
    )
