"""One test per asset: each asset materialised alone (`dagster.materialize` with that one asset
selected) in a real in-process Dagster run, on the tiny pipeline (tests/tiny_pipeline.py) with a
real MLflow store and the project's IO manager in one tmp folder. An asset's inputs are the values
its upstream assets stored there, each materialised alone before it. A test checks what the asset
hands downstream (its stored value) and shows a person (its metadata keys), not how it makes them.

The assets share one run folder, so in file order each test materialises only its own asset; a
test run alone materialises its upstream assets first (seconds each).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from tiny_pipeline import ITEMS, PER_USER, USERS, pipeline_resources, write_movielens_fixture, write_recipe

from lpt_core.config import Recipe
from lpt_core.data import schemas
from lpt_core.retrieval import ItemIndex
from lpt_dagster import definitions
from lpt_dagster.values import (
    BaselineModels,
    EvaluationReport,
    ItemIndexInfo,
    QualityReport,
    RegisteredModel,
    TrainedGenerators,
    TrainedIndexes,
    TrainedRecommenders,
)

# One trained variant keeps the training assets to seconds; it is the one the registry serves.
VARIANT = "langptune_rebel"


@dataclass(frozen=True)
class Materialised:
    """An asset materialised alone: the value its IO manager stored and its metadata."""

    value: object
    metadata: dict[str, object]


class TinyRun:
    """The tiny pipeline's resources, Dagster instance and outputs, shared by the tests of this
    module; `materialise(asset)` runs that asset alone, once, after its upstream assets."""

    def __init__(self, resources: dict) -> None:
        self.resources = resources
        # One instance for every run, as in a deployment: an asset may read what an upstream
        # materialisation recorded there (cleaned_data reads the read's row accounts).
        self.instance = dg.DagsterInstance.ephemeral()
        self.graph = definitions.defs.resolve_asset_graph()
        self.done: dict[str, Materialised] = {}
        self.recipe: Recipe = resources["recipe"].get()
        self.tracking_uri: str = resources["mlflow"].tracking_uri

    def stored(self, asset: str) -> object:
        """The value of `asset` as a downstream asset reads it, through the IO manager."""
        return self.resources["io_manager"].load_input(dg.build_input_context(asset_key=dg.AssetKey(asset)))

    def materialise(self, asset: str) -> Materialised:
        """`asset` materialised alone, in a run that fails the test if the asset fails."""
        if asset in self.done:
            return self.done[asset]
        for parent in sorted(self.graph.get(dg.AssetKey(asset)).parent_keys, key=str):
            self.materialise(parent.to_user_string())
        result = dg.materialize(
            definitions.all_assets, selection=[asset], resources=self.resources, instance=self.instance,
            raise_on_error=False,
        )
        assert result.success, [failure.step_failure_data.error.message for failure in result.get_step_failure_events()]
        (event,) = result.get_asset_materialization_events()  # that asset alone
        assert event.asset_key == dg.AssetKey(asset)
        self.done[asset] = Materialised(self.stored(asset), dict(event.materialization.metadata))
        return self.done[asset]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models) -> Iterator[TinyRun]:
    root = tmp_path_factory.mktemp("assets")
    data_dir = write_movielens_fixture(root / "ml")
    # Two targets per window: the report ranks each window's profile against its next two
    # interactions (every non-final window gains a row).
    recipe_path = write_recipe(
        root, data_dir, tiny_models, {"training": {"variants": [VARIANT]}, "evaluation": {"targets_per_window": 2}}
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield TinyRun(pipeline_resources(root, recipe_path, monkeypatch))


def evaluated(run: TinyRun) -> pl.DataFrame:
    """The examples of the recipe's evaluation split."""
    examples = run.stored("user_examples")
    return examples.filter(pl.col("split") == run.recipe.evaluation.split)


def test_raw_interactions_is_every_rating_of_the_source_in_the_canonical_schema(run):
    raw = run.materialise("raw_interactions")
    assert raw.value.schema == schemas.INTERACTIONS
    assert raw.value.height == USERS * PER_USER and raw.value["user_id"].n_unique() == USERS
    assert raw.metadata["rows"].value == USERS * PER_USER
    assert raw.metadata["input_rows"].value == USERS * PER_USER + ITEMS  # both files' rows, all kept
    assert {"users", "items", "quarantined_rows", "input_accounts", "digest", "preview", "mlflow_run"} <= raw.metadata.keys()


def test_raw_items_is_every_item_of_the_source_in_the_canonical_schema(run):
    items = run.materialise("raw_items")
    assert items.value.schema == schemas.ITEMS
    assert sorted(items.value["item_id"].cast(pl.Int32).to_list()) == list(range(1, ITEMS + 1))
    assert items.metadata["rows"].value == ITEMS and {"digest", "preview"} <= items.metadata.keys()


def test_cleaned_histories_keep_users_and_items_of_the_k_core(run):
    cleaned = run.materialise("cleaned_histories")
    assert cleaned.value.schema == schemas.INTERACTIONS
    assert 0 < cleaned.value.height <= USERS * PER_USER
    k = run.recipe.data.k_core
    assert cleaned.value.group_by("user_id").len()["len"].min() >= k
    assert cleaned.value.group_by("item_id").len()["len"].min() >= k
    assert cleaned.metadata["rows"].value == cleaned.value.height
    assert {"cleaning_steps", "interactions_per_user", "digest", "preview", "mlflow_run"} <= cleaned.metadata.keys()


def test_cleaned_items_are_the_items_still_interacted_with(run):
    items = run.materialise("cleaned_items")
    assert items.value.schema == schemas.ITEMS
    assert set(items.value["item_id"]) == set(run.stored("cleaned_histories")["item_id"])
    assert items.metadata["rows"].value == items.value.height and "preview" in items.metadata


def test_user_examples_hold_every_split_with_histories_of_the_recipes_length(run):
    examples = run.materialise("user_examples")
    assert examples.value.schema == schemas.EXAMPLES
    assert set(examples.value["split"]) == set(schemas.SPLITS)
    assert set(examples.value["history_item_ids"].list.len()) == {run.recipe.split.history_len}
    cleaned = run.stored("cleaned_histories")
    assert set(examples.value["user_id"]) <= set(cleaned["user_id"])
    assert {"split_stats", "prompts_too_long_dropped", "history_length", "preview", "mlflow_run"} <= examples.metadata.keys()


def test_item_catalog_is_cleaned_items_with_their_text(run):
    catalog = run.materialise("item_catalog")
    assert not schemas.schema_mismatches(catalog.value, schemas.ITEMS)
    assert set(catalog.value["item_id"]) <= set(run.stored("cleaned_items")["item_id"])
    assert catalog.value["text"].str.len_chars().min() > 0
    assert catalog.metadata["items"].value == catalog.value.height and "preview" in catalog.metadata


def test_zero_shot_profiles_cover_every_evaluated_example(run):
    profiles = run.materialise("zero_shot_profiles")
    keys = ["user_id", "window"]
    assert evaluated(run).select(keys).join(profiles.value, on=keys, how="anti").is_empty()
    assert profiles.value["profile"].dtype == pl.String and profiles.value["num_tokens"].min() >= 0
    assert profiles.metadata["profiles"].value == profiles.value.height
    assert {"newly_generated", "mean_tokens", "model", "samples", "preview", "mlflow_run"} <= profiles.metadata.keys()


def test_sampled_profiles_are_the_recipes_samples_per_evaluated_example(run):
    sampled = run.materialise("sampled_profiles")
    samples = run.recipe.evaluation.sampled_profiles
    assert sampled.value.height == samples * evaluated(run).height
    assert sorted(set(sampled.value["sample"])) == list(range(samples))
    assert sampled.metadata["samples_per_example"].value == samples
    assert {"profiles", "preview", "mlflow_run"} <= sampled.metadata.keys()


def test_item_index_indexes_every_catalogue_item(run):
    index = run.materialise("item_index")
    catalog = run.stored("item_catalog")
    assert isinstance(index.value, ItemIndexInfo) and index.value.items == catalog.height
    assert sorted(ItemIndex.load(index.value.folder).item_ids.tolist()) == sorted(catalog["item_id"])
    assert index.value.encoder == run.recipe.models.encoder
    assert {"items", "dim", "encode_seconds", "mlflow_run"} <= index.metadata.keys()


def test_baseline_models_are_saved_with_their_chosen_settings(run):
    baselines = run.materialise("baseline_models")
    assert isinstance(baselines.value, BaselineModels)
    assert set(baselines.value.model_files) == set(baselines.value.chosen) == {"sasrec", "item_knn"}
    assert all(path.exists() for path in baselines.value.model_files.values())
    assert all(0.0 <= metric <= 1.0 for metric in baselines.value.val_metrics.values())
    assert {"trials", "recipe_overrides", "folder", "mlflow_run"} <= baselines.metadata.keys()


def test_trained_generator_is_each_variants_adapter_on_the_recipes_base_model(run):
    generators = run.materialise("trained_generator")
    assert isinstance(generators.value, TrainedGenerators) and list(generators.value.variants) == [VARIANT]
    trained = generators.value[VARIANT]
    assert trained.base_model == run.recipe.models.generator and trained.trains_generator
    assert trained.adapter_dir.is_dir() and trained.checkpoint.is_dir()
    assert MlflowClient(run.tracking_uri).get_run(trained.mlflow_run_id).info.status == "FINISHED"
    assert "variants" in generators.metadata


def test_trained_recommender_is_each_variants_encoder(run):
    recommenders = run.materialise("trained_recommender")
    assert isinstance(recommenders.value, TrainedRecommenders) and list(recommenders.value.variants) == [VARIANT]
    assert (recommenders.value[VARIANT].encoder_dir / "config.json").is_file()
    assert "variants" in recommenders.metadata


def test_trained_profiles_are_each_variants_profiles_of_the_evaluated_examples(run):
    profiles = run.materialise("trained_profiles")
    assert set(profiles.value["variant"]) == {VARIANT}
    assert profiles.value.height == evaluated(run).height
    assert {"profile", "num_tokens", "finished"} <= set(profiles.value.columns)
    assert {"per_variant", "preview", "mlflow_run"} <= profiles.metadata.keys()


def test_trained_item_index_indexes_the_catalogue_per_variant(run):
    indexes = run.materialise("trained_item_index")
    assert isinstance(indexes.value, TrainedIndexes) and list(indexes.value.variants) == [VARIANT]
    index = ItemIndex.load(indexes.value[VARIANT].folder)
    assert sorted(index.item_ids.tolist()) == sorted(run.stored("item_catalog")["item_id"])
    assert {"variants", "mlflow_run"} <= indexes.metadata.keys()


def test_evaluation_report_has_a_row_per_method_and_variant_with_intervals(run):
    report = run.materialise("evaluation_report")
    assert isinstance(report.value, EvaluationReport)
    assert set(report.value.methods) == {*run.recipe.evaluation.methods, VARIANT}
    for metrics in report.value.methods.values():
        ndcg = metrics["ndcg@10"]
        assert 0.0 <= ndcg.low <= ndcg.mean <= ndcg.high <= 1.0
    assert (report.value.folder / "report.json").is_file()
    assert report.metadata["examples"].value == evaluated(run).height
    rows = json.loads((report.value.folder / "report.json").read_text(encoding="utf-8"))["n_examples"]
    assert report.metadata["rows"].value == rows
    assert evaluated(run).height < rows <= 2 * evaluated(run).height
    assert {"table", "plot", "users", "report_folder", "mlflow_run"} <= report.metadata.keys()


def test_profile_quality_report_gives_each_variant_its_registry_tags(run):
    quality = run.materialise("profile_quality_report")
    assert isinstance(quality.value, QualityReport)
    assert VARIANT in quality.value.registry_tags
    tags = quality.value.registry_tags[VARIANT]
    assert tags and all(tag.startswith("lpt.quality.") for tag in tags)
    assert quality.value.folder.is_dir()
    assert {"table", "plot", "genre_samples", "examples", "report_folder", "mlflow_run"} <= quality.metadata.keys()


def test_registered_model_is_a_new_challenger_version_of_the_variant(run):
    registered = run.materialise("registered_model")
    assert isinstance(registered.value, RegisteredModel) and registered.value.variant == VARIANT
    client = MlflowClient(run.tracking_uri)
    challenger = client.get_model_version_by_alias(registered.value.model_name, "challenger")
    assert str(challenger.version) == registered.value.version
    assert registered.value.model_uri == f"models:/{registered.value.model_name}/{registered.value.version}"
    assert {"lpt.quality.reader_accuracy", "lpt.recipe_hash"} <= set(challenger.tags)
    assert {"model_uri", "variant", "lineage", "mlflow_run"} <= registered.metadata.keys()


def test_every_asset_of_the_definitions_has_its_own_test_here():
    """A new asset gets its test here: test_<asset name>_<what it checks>."""
    tested = {name.split("test_", 1)[1] for name in globals() if name.startswith("test_")}
    assets = {key.to_user_string() for key in definitions.defs.resolve_asset_graph().get_all_asset_keys()}
    assert not {asset for asset in assets if not any(name.startswith(asset) for name in tested)}
