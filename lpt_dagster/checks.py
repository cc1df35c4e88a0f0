"""Blocking asset checks on the data assets, each outcome computed by Great Expectations.

The rules live in lpt_core.data.quality; this module only maps their outcomes onto Dagster asset
checks. They are blocking: a failed check stops downstream assets from materialising in that run.
"""


from collections.abc import Iterator

import dagster as dg
import polars as pl

from lpt_core.data import quality
from lpt_dagster.resources import RecipeResource


def _specs(asset: str, table: str, also_reads: tuple[str, ...] = ()) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=asset, blocking=True, additional_deps=also_reads)
        for name in quality.CHECK_NAMES[table]
    ]


def _results(asset: str, outcomes: list[quality.CheckOutcome]) -> Iterator[dg.AssetCheckResult]:
    for outcome in outcomes:
        yield dg.AssetCheckResult(
            asset_key=asset,
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=outcome.description,
            metadata={"details": dg.MetadataValue.json(outcome.details)},
        )


@dg.multi_asset_check(specs=_specs("raw_interactions", "raw_interactions"), ins={"raw_interactions": dg.AssetIn()})
def raw_interactions_checks(raw_interactions: pl.DataFrame) -> Iterator[dg.AssetCheckResult]:
    yield from _results("raw_interactions", quality.check_interactions(raw_interactions, k_core=None))


@dg.multi_asset_check(
    specs=_specs("cleaned_histories", "interactions"), ins={"cleaned_histories": dg.AssetIn()}
)
def cleaned_histories_checks(
    recipe: RecipeResource, cleaned_histories: pl.DataFrame
) -> Iterator[dg.AssetCheckResult]:
    k_core = recipe.get().data.k_core
    yield from _results("cleaned_histories", quality.check_interactions(cleaned_histories, k_core=k_core))


@dg.multi_asset_check(specs=_specs("cleaned_items", "items"), ins={"cleaned_items": dg.AssetIn()})
def cleaned_items_checks(cleaned_items: pl.DataFrame) -> Iterator[dg.AssetCheckResult]:
    yield from _results("cleaned_items", quality.check_items(cleaned_items))


@dg.multi_asset_check(
    specs=_specs("user_examples", "examples", also_reads=("item_catalog",)),
    ins={"user_examples": dg.AssetIn(), "item_catalog": dg.AssetIn()},
)
def user_examples_checks(
    recipe: RecipeResource, user_examples: pl.DataFrame, item_catalog: pl.DataFrame
) -> Iterator[dg.AssetCheckResult]:
    history_len = recipe.get().split.history_len
    outcomes = quality.check_examples(user_examples, item_catalog["item_id"].to_list(), history_len)
    yield from _results("user_examples", outcomes)


data_quality_checks = [raw_interactions_checks, cleaned_histories_checks, cleaned_items_checks, user_examples_checks]
