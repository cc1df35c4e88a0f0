"""The values assets hand each other besides tables: small frozen dataclasses, one per kind, read by
attribute. The IO manager stores each as JSON tagged with its type name (`to_json` / `from_json`);
a stored value without a known tag, or whose fields no longer fit its type, was written by an older
version and is an error that says to rematerialise the asset.

Fields hold paths as Path, and per-variant values map a training variant's name to its own value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from lpt_core.metrics import Interval


@dataclass(frozen=True)
class ItemIndexInfo:
    """item_index: the catalogue embedded by the base encoder, and its faiss index."""

    folder: Path
    items: int
    dim: int
    kind: str
    encoder: str


@dataclass(frozen=True)
class BaselineModels:
    """baseline_models: the tuned history recommenders saved in `folder` (one file per method), the
    settings chosen for each and their validation `metric`."""

    folder: Path
    model_files: dict[str, Path]
    chosen: dict[str, dict[str, Any]]
    metric: str
    val_metrics: dict[str, float]
    tuning_seconds: float


@dataclass(frozen=True)
class TrainedGenerator:
    """One variant's trained profile writer: its LoRA adapter on `base_model`, the checkpoint it
    came from, and the training hash and MLflow run the registry's lineage names."""

    adapter_dir: Path
    base_model: str
    trains_generator: bool  # False for CL only: its profiles are the zero-shot ones
    checkpoint: Path
    training_hash: str
    mlflow_run_id: str


@dataclass(frozen=True)
class TrainedRecommender:
    """One variant's trained recommender: the encoder, and its item bias or item-side head if any."""

    encoder_dir: Path
    item_bias: Path | None
    item_head: Path | None


@dataclass(frozen=True)
class TrainedIndex:
    """One variant's catalogue index, built with its trained recommender (encoder_dir)."""

    folder: Path
    encoder_dir: Path
    has_item_bias: bool
    has_item_head: bool


class _PerVariant:
    """Lookup shared by the per-variant values. Each declares its own typed `variants` field:
    the IO manager rebuilds the values inside from that type."""

    variants: dict[str, Any]

    def __getitem__(self, variant: str) -> Any:
        if variant not in self.variants:
            raise KeyError(f"variant {variant!r} was not trained (trained: {sorted(self.variants)})")
        return self.variants[variant]


@dataclass(frozen=True)
class TrainedGenerators(_PerVariant):
    """trained_generator, by variant."""

    variants: dict[str, TrainedGenerator]


@dataclass(frozen=True)
class TrainedRecommenders(_PerVariant):
    """trained_recommender, by variant."""

    variants: dict[str, TrainedRecommender]


@dataclass(frozen=True)
class TrainedIndexes(_PerVariant):
    """trained_item_index, by variant."""

    variants: dict[str, TrainedIndex]


@dataclass(frozen=True)
class EvaluationReport:
    """evaluation_report: every row's metrics with their bootstrap intervals (the whole report, with
    its settings and differences, is in folder/report.json)."""

    folder: Path
    methods: dict[str, dict[str, Interval]]  # row (method or variant) -> metric ("ndcg@10") -> interval

    def means(self, method: str) -> dict[str, float]:
        """A method's mean of every metric (none for a method not in the report)."""
        return {name: interval.mean for name, interval in self.methods.get(method, {}).items()}


@dataclass(frozen=True)
class QualityReport:
    """profile_quality_report: the key quality numbers of each variant as model-registry tags (the
    whole report is in folder/report.json)."""

    folder: Path
    registry_tags: dict[str, dict[str, str]]  # variant -> tag ("lpt.quality.<score>") -> value


@dataclass(frozen=True)
class RegisteredModel:
    """registered_model: the model version registered as the challenger."""

    model_name: str
    version: str
    model_uri: str
    variant: str
    run_id: str


VALUE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ItemIndexInfo, BaselineModels, TrainedGenerators, TrainedRecommenders, TrainedIndexes,
        EvaluationReport, QualityReport, RegisteredModel,
    )
}


class StaleValueError(ValueError):
    """A stored value this version cannot read as any of its typed values."""


def is_value(obj: object) -> bool:
    return type(obj) in VALUE_TYPES.values()


def fields_json(value: object) -> Any:
    """A value's fields as JSON data (paths as strings): what is stored, and shown in metadata."""
    return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")


def to_json(value: object) -> str:
    """`value` (one of VALUE_TYPES) as JSON text tagged with its type name."""
    if not is_value(value):
        raise TypeError(f"not a typed asset value: {type(value).__name__} (known: {sorted(VALUE_TYPES)})")
    return json.dumps({"type": type(value).__name__, "value": fields_json(value)}, indent=2, sort_keys=True)


def from_json(stored: str) -> object:
    """The typed value `to_json` wrote; StaleValueError for anything else (an untyped dict stored by
    an older version, a tag or fields this version does not know)."""
    try:
        document = json.loads(stored)
    except json.JSONDecodeError as exc:
        raise StaleValueError(f"not JSON: {exc}") from exc
    tag = document.get("type") if isinstance(document, dict) else None
    if tag not in VALUE_TYPES or "value" not in document:
        raise StaleValueError(f"no known type tag (got {tag!r}; known: {sorted(VALUE_TYPES)})")
    try:
        return pydantic.TypeAdapter(VALUE_TYPES[tag]).validate_python(document["value"])
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors())
        raise StaleValueError(f"its fields do not fit {tag}: {problems}") from exc
