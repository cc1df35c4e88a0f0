"""The recipe's data steps as the pipeline runs them: raw tables -> cleaned tables -> the split and
the catalogue ranked at evaluation. The data assets call these, and so does any script that needs
the pipeline's split without a Dagster run (`prepare_data`), so both make the same tables.

Cleaning and splitting (lpt_core.data.cleaning / splitting) take their token counts as arguments;
here they get them from the tokenizers the recipe names: the encoder's for item texts, the
generator's for profile prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lpt_core import text
from lpt_core.config import Recipe
from lpt_core.data.cleaning import CleaningReport, clean
from lpt_core.data.readers import RawData, read_raw
from lpt_core.data.splitting import Split, drop_long_prompts, split_users
from lpt_core.models import load_tokenizer


@dataclass(frozen=True)
class CleanedData:
    """cleaned_histories and cleaned_items, and what cleaning did to the raw rows."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    report: CleaningReport


@dataclass(frozen=True)
class SplitData:
    """user_examples and item_catalog: the split without the examples whose prompt is too long, and
    the catalogue's items with the text the encoder embeds."""

    split: Split
    catalog: pl.DataFrame  # ITEMS columns plus "text", sorted by item_id
    prompts_too_long: int  # examples dropped for a prompt over data.max_prompt_tokens

    @property
    def examples(self) -> pl.DataFrame:
        return self.split.examples


def clean_raw_data(raw: RawData, recipe: Recipe) -> CleanedData:
    """Clean per recipe.data, items too long for the recipe's encoder dropped."""
    item_token_counts = text.item_token_counter(load_tokenizer(recipe.models.encoder))
    return CleanedData(*clean(raw, recipe.data, item_token_counts=item_token_counts))


def split_cleaned_data(cleaned_histories: pl.DataFrame, cleaned_items: pl.DataFrame, recipe: Recipe) -> SplitData:
    """Split users per recipe.split, drop examples whose prompt (in the recipe's generator's
    tokens) is over data.max_prompt_tokens, and give the catalogue its item texts."""
    split = split_users(cleaned_histories, recipe.split)
    split, too_long = drop_long_prompts(
        split,
        text.prompt_token_counts(split.examples, cleaned_items, load_tokenizer(recipe.models.generator), recipe.prompt,
                                 recipe.data.source),
        recipe.data.max_prompt_tokens,
    )
    return SplitData(split, item_catalog(cleaned_items, split.catalog_item_ids), too_long)


def item_catalog(items: pl.DataFrame, catalog_item_ids: pl.Series) -> pl.DataFrame:
    """The catalogue's rows of `items`, each with its text (lpt_core.text.item_texts), by item id."""
    catalog = items.filter(pl.col("item_id").is_in(catalog_item_ids.implode()))
    return catalog.with_columns(text.item_texts(catalog).alias("text")).sort("item_id")


def prepare_data(recipe: Recipe) -> tuple[CleanedData, SplitData]:
    """The recipe's raw files read, cleaned and split, as the data assets make them."""
    cleaned = clean_raw_data(read_raw(recipe.data), recipe)
    return cleaned, split_cleaned_data(cleaned.interactions, cleaned.items, recipe)
