"""The IO manager: tables as parquet, every typed asset value (lpt_dagster.values) as tagged JSON
that loads back equal, and a value stored by an older version as an error saying to rematerialise."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lpt_core.data import schemas
from lpt_core.metrics import Interval
from lpt_dagster import values
from lpt_dagster.io_manager import LocalFilesIOManager, TableSchemaError
from lpt_dagster.resources import WorkspaceResource


def one_of_each(root: Path) -> list[object]:
    """One value of every type in values.VALUE_TYPES, with paths, nested values and optional fields."""
    generator = values.TrainedGenerator(
        adapter_dir=root / "training" / "a" / "adapter", base_model="SmolLM2", trains_generator=True,
        checkpoint=root / "training" / "a" / "round_0", training_hash="abc123", mlflow_run_id="run1",
    )
    return [
        values.ItemIndexInfo(folder=root / "item_index", items=30, dim=8, kind="flat", encoder="e5"),
        values.BaselineModels(
            folder=root / "baseline_models", model_files={"sasrec": root / "baseline_models" / "sasrec.pt"},
            chosen={"sasrec": {"hidden": 32}}, metric="ndcg@10", val_metrics={"sasrec": 0.1}, tuning_seconds=1.5,
        ),
        values.TrainedGenerators({"a": generator, "cl": generator.__class__(**{**generator.__dict__, "trains_generator": False})}),
        values.TrainedRecommenders({
            "a": values.TrainedRecommender(encoder_dir=root / "enc", item_bias=root / "bias.npy", item_head=None),
        }),
        values.TrainedIndexes({
            "a": values.TrainedIndex(folder=root / "ix", encoder_dir=root / "enc", has_item_bias=True, has_item_head=False),
        }),
        values.EvaluationReport(folder=root / "evaluation_report",
                                methods={"a": {"ndcg@10": Interval(mean=0.25, low=0.1, high=0.4)}}),
        values.QualityReport(folder=root / "profile_quality_report",
                             registry_tags={"a": {"lpt.quality.reader_accuracy": "0.5000"}}),
        values.RegisteredModel(model_name="langptune", version="2", model_uri="models:/langptune/2", variant="a",
                               run_id="run2"),
    ]


def manager_at(root: Path) -> LocalFilesIOManager:
    return LocalFilesIOManager(workspace=WorkspaceResource(root=str(root)))


def store(manager: LocalFilesIOManager, name: str, value: object) -> None:
    manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey(name)), value)


def load(manager: LocalFilesIOManager, name: str) -> object:
    return manager.load_input(dg.build_input_context(asset_key=dg.AssetKey(name)))


def test_every_typed_value_loads_back_equal_with_its_type(tmp_path):
    manager = manager_at(tmp_path)
    stored = one_of_each(tmp_path)
    assert {type(value).__name__ for value in stored} == set(values.VALUE_TYPES)  # none forgotten
    for value in stored:
        name = type(value).__name__
        store(manager, name, value)
        loaded = load(manager, name)
        assert type(loaded) is type(value) and loaded == value
        assert json.loads((tmp_path / f"{name}.json").read_text())["type"] == name


def test_per_variant_values_and_reports_are_read_by_attribute(tmp_path):
    by_type = {type(value): value for value in one_of_each(tmp_path)}
    generators = by_type[values.TrainedGenerators]
    assert generators["a"].adapter_dir == tmp_path / "training" / "a" / "adapter"
    assert not generators["cl"].trains_generator
    with pytest.raises(KeyError, match="'b' was not trained"):
        generators["b"]
    assert by_type[values.TrainedRecommenders]["a"].item_head is None
    assert by_type[values.EvaluationReport].means("a") == {"ndcg@10": 0.25}
    assert by_type[values.EvaluationReport].means("absent") == {}
    assert by_type[values.EvaluationReport].methods["a"]["ndcg@10"].high == 0.4
    assert by_type[values.QualityReport].registry_tags["a"] == {"lpt.quality.reader_accuracy": "0.5000"}


def test_the_reports_metrics_load_back_typed(tmp_path):
    """The registry reads the reports' numbers by attribute: each interval loads back an Interval."""
    manager = manager_at(tmp_path)
    report = next(value for value in one_of_each(tmp_path) if isinstance(value, values.EvaluationReport))
    store(manager, "evaluation_report", report)
    loaded = load(manager, "evaluation_report")
    assert isinstance(loaded.methods["a"]["ndcg@10"], Interval)
    assert loaded.means("a") == {"ndcg@10": 0.25}


def test_tables_are_parquet(tmp_path):
    manager = manager_at(tmp_path)
    frame = pl.DataFrame({"user_id": ["u1", "u2"], "n": [1, 2]})
    store(manager, "zero_shot_profiles", frame)  # a table without a canonical schema
    assert load(manager, "zero_shot_profiles").equals(frame)
    assert (tmp_path / "zero_shot_profiles.parquet").is_file()


def test_a_table_asset_is_written_only_in_its_canonical_schema(tmp_path):
    manager = manager_at(tmp_path)
    items = schemas.empty(schemas.ITEMS).with_columns(pl.lit("t").alias("text"))  # extra columns are allowed
    store(manager, "item_catalog", items)
    assert load(manager, "item_catalog").schema == items.schema
    wrong = schemas.empty(schemas.INTERACTIONS).with_columns(pl.col("rating").cast(pl.Float64)).drop("review")
    with pytest.raises(TableSchemaError, match=r"asset raw_interactions: .*rating: expected Float32, found Float64; "
                                               r"review: expected String, found missing"):
        store(manager, "raw_interactions", wrong)
    assert not (tmp_path / "raw_interactions.parquet").exists()


@pytest.mark.parametrize(
    "stored",
    [
        {"path": "/old/item_index", "items": 30},  # an untyped dict, as older versions stored
        {"type": "SomethingRemoved", "value": {}},
        {"type": "ItemIndexInfo", "value": {"path": "/old/item_index"}},  # fields of an older shape
    ],
)
def test_a_value_stored_by_an_older_version_says_to_rematerialise(tmp_path, stored):
    (tmp_path / "item_index.json").write_text(json.dumps(stored))
    with pytest.raises(values.StaleValueError, match="older version.*rematerialise item_index"):
        load(manager_at(tmp_path), "item_index")


def test_anything_else_is_refused_when_stored(tmp_path):
    with pytest.raises(TypeError, match="typed values of lpt_dagster.values, got dict"):
        store(manager_at(tmp_path), "item_index", {"path": "x"})
