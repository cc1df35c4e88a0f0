"""A finished pipeline run's work folder ($LPT_HOME), as the benches that re-read it see it:
its recipe, examples, catalogue and stored tables, and the base recommender of its encoder."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lpt_core.catalog_index import base_catalog_index
from lpt_core.config import Recipe, load_recipe
from lpt_core.data.splitting import train_item_counts
from lpt_core.retrieval import ItemIndex, TextEncoder


@dataclass
class FinishedRun:
    work: Path
    recipe: Recipe
    examples: pl.DataFrame
    catalog: pl.DataFrame

    @classmethod
    def load(cls, work: Path, recipe_name: str) -> FinishedRun:
        outputs = work / "outputs"
        return cls(work, load_recipe(recipe_name), pl.read_parquet(outputs / "user_examples.parquet"),
                   pl.read_parquet(outputs / "item_catalog.parquet"))

    @property
    def outputs(self) -> Path:
        return self.work / "outputs"

    def table(self, name: str) -> pl.DataFrame:
        """One of the run's stored tables, e.g. "zero_shot_profiles"."""
        return pl.read_parquet(self.outputs / f"{name}.parquet")

    def evaluated(self) -> pl.DataFrame:
        """The examples of the split the run's evaluation report ranks (evaluation.split)."""
        return self.examples.filter(pl.col("split") == self.recipe.evaluation.split)

    def item_counts(self) -> dict[str, int]:
        """Train interactions per item: the popularity prior's counts."""
        return train_item_counts(self.table("cleaned_histories"), self.examples)

    def base_recommender(self) -> tuple[TextEncoder, ItemIndex]:
        """The recipe's frozen encoder and the plain cosine index of the catalogue's item texts."""
        built = base_catalog_index(self.catalog, self.recipe.models)
        return built.encoder, built.index


def run_arguments(description: str) -> argparse.ArgumentParser:
    """--work and --recipe: the finished run to read and the recipe it ran."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="the run's work folder ($LPT_HOME)")
    parser.add_argument("--recipe", required=True, help="the recipe the run used")
    return parser
