"""The servable model: one MLflow pyfunc model holding the whole trained system.

It bundles, as artifacts copied into the model folder (so it loads with no access to the training
run's folders): the base generator's files, the trained LoRA adapter, the trained recommender (a
sentence-transformers folder), the item index (faiss + ids + bias) and the item catalogue, plus
the variant's recipe (prompt layout, decoding and model settings).

A request row carries a user's history (item ids, optional ratings), or a profile text (an edited
profile), or both (the profile is then ranked and the history items are left out of the results),
and an optional k (null or absent: DEFAULT_K). A history without a profile is turned into a prompt exactly as in training
(lpt_core.text.build_prompts) and the trained generator writes the profile. The answer row carries
the profile used and the top-k item ids, titles and scores.

Requests the model cannot answer (an unknown key, wrong types, unknown item ids, an empty
history, a profile longer than the recommender reads, more rows than one request takes, ...) raise
`RequestError`, whose message names the row and field; the pyfunc wrapper turns it into an
MlflowException with INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400
and the message, the error first.

Under `mlflow models serve`, a SIGTERM (the server stopping) cancels profile writing in flight at
its next decoding step, and the request is answered 503: the server's graceful shutdown waits for
running requests, and a heavy one would otherwise hold it for as long as it takes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema

from lpt_core import text
from lpt_core.config import Recipe, deep_merge
from lpt_core.dislikes import encode_profiles
from lpt_core.models import resolve_model

DEFAULT_K = 10
# One request's size, checked before any profile is written. A prediction cannot be stopped once
# it runs (MLflow's request timeout answers 504 but the work goes on, and the server's shutdown
# waits for it), so a request must stay small enough to finish well within the timeout: 32
# history rows are one generation batch of the full recipe.
MAX_ROWS_PER_REQUEST = 32
# How often the served model looks whether its server is shutting down (_server_stopping).
SHUTDOWN_POLL_S = 0.2
MAX_HISTORY_ITEMS_PER_REQUEST = 1000
# The data's rating scale: MovieLens and Amazon rate 1-5 and the data checks allow [0, 5]
# (lpt_core.data.quality); the prompts say "rated 4/5".
RATING_RANGE = (0.0, 5.0)
RECIPE_FILE = "recipe.json"
CATALOG_FILE = "catalog.parquet"
CATALOG_COLUMNS = ("item_id", "title", "year", "description", "categories", "price", "average_rating", "text")
# Distributions the model needs at load time; their installed versions are pinned in the model.
REQUIREMENTS = ("mlflow", "torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "polars", "langptune")

# What each request key holds; saved in the model's metadata. The signature declares no inputs, so
# MLflow checks none: its check of typed columns refuses bad values (k "ten", integer ids, a
# profile 42, a key that some rows lack) with a message that names no row, truncates k=5.5 to 5,
# and drops keys it does not know ("profle") without a word. requests_from_frame checks the keys
# and types instead, naming row and field.
INPUT_TYPES = {
    "history_item_ids": "list of item ids (strings)",
    "history_ratings": f"list of numbers in [{RATING_RANGE[0]:g}, {RATING_RANGE[1]:g}], one per history item",
    "profile": "string",
    "k": f"whole number from 1 to the catalogue size less the history (null: {DEFAULT_K})",
}
REQUEST_LIMITS = {"rows": MAX_ROWS_PER_REQUEST, "history_items": MAX_HISTORY_ITEMS_PER_REQUEST}
OUTPUT_SCHEMA = Schema(
    [
        ColSpec(DataType.string, "profile"),
        ColSpec(Array(DataType.string), "item_ids"),
        ColSpec(Array(DataType.string), "titles"),
        ColSpec(Array(DataType.double), "scores"),
    ]
)
SIGNATURE = ModelSignature(inputs=None, outputs=OUTPUT_SCHEMA)


class RequestError(ValueError):
    """A request row the model cannot answer; the message names the row and what is wrong."""


@dataclass(frozen=True)
class Request:
    """One request row: a history, a profile, or both; k results."""

    history_item_ids: list[str] | None = None
    history_ratings: list[float] | None = None
    profile: str | None = None
    k: int = DEFAULT_K


@dataclass(frozen=True)
class Recommendation:
    profile: str
    item_ids: list[str]
    titles: list[str]
    scores: list[float]


@dataclass(frozen=True)
class ServableParts:
    """What a trained variant is made of, as left by training: its recipe (prompt layout, decoding,
    base generator name), its adapter, its recommender, its item index and the catalogue
    (item_catalog: ITEMS columns plus "text")."""

    recipe: Recipe
    adapter_dir: Path
    encoder_dir: Path
    index_dir: Path
    catalog: pl.DataFrame


class ProfileRecommender:
    """The trained system at inference: history -> prompt -> profile -> top-k catalogue items."""

    def __init__(
        self,
        recipe: Recipe,
        adapter_dir: Path,
        index_dir: Path,
        catalog: pl.DataFrame,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """`recipe.models.generator` / `.encoder` must name the base generator and the trained
        recommender (folders); `adapter_dir` holds the generator's trained LoRA adapter. When
        `cancelled()` turns true, profile writing stops with GenerationCancelled."""
        from lpt_core.generation.hf_backend import TransformersGenerator
        from lpt_core.models import load_encoder
        from lpt_core.retrieval import ItemIndex, TextEncoder
        from lpt_core.training.policy import load_trained_generator

        self.recipe = recipe
        model, self.tokenizer = load_trained_generator(recipe, Path(adapter_dir))
        self.generator = TransformersGenerator(
            model, self.tokenizer, recipe.generation, model_id="served", cancelled=cancelled
        )
        self.encoder = TextEncoder(load_encoder(recipe.models.encoder, recipe.models))
        self.index = ItemIndex.load(Path(index_dir))
        self.catalog = catalog
        self._title = dict(zip(catalog["item_id"].to_list(), catalog["title"].to_list(), strict=True))
        self._indexed = set(self.index.item_ids.tolist())
        if not self._indexed <= self._title.keys():
            raise ValueError(f"{index_dir}: {len(self._indexed - self._title.keys())} indexed items are not in the catalogue")

    def recommend(self, requests: Sequence[Request]) -> list[Recommendation]:
        """One recommendation per request, in order; RequestError names the first bad row."""
        _check_size(requests)
        for row, request in enumerate(requests):
            self._check(row, request)
        profiles = self._profiles(requests)
        # A profile's dislikes ("no horror, please") push their items down (lpt_core.dislikes).
        queries = encode_profiles(self.encoder.encode, profiles)
        results = []
        for row, (request, profile) in enumerate(zip(requests, profiles, strict=True)):
            ids, scores = self.index.top_k(queries[row : row + 1], request.k, [request.history_item_ids or []])
            item_ids = ids[0].tolist()
            titles = [self._title[i] for i in item_ids]
            results.append(Recommendation(profile, item_ids, titles, scores[0].astype(float).tolist()))
        return results

    def _check(self, row: int, request: Request) -> None:
        history = request.history_item_ids
        if history is None and request.profile is None:
            raise RequestError(f"row {row}: give history_item_ids or profile (or both)")
        if history is not None:
            if not history:
                raise RequestError(f"row {row}: history_item_ids is empty")
            unknown = sorted({i for i in history if i not in self._indexed})
            if unknown:
                raise RequestError(f"row {row}: unknown item ids (not in the catalogue): {unknown[:10]}")
            if request.history_ratings is not None and len(request.history_ratings) != len(history):
                raise RequestError(
                    f"row {row}: {len(request.history_ratings)} history_ratings for {len(history)} history_item_ids"
                )
        if request.profile is not None:
            self._check_profile(row, request.profile)
        available = len(self.index) - len(set(history or []))
        if not 1 <= request.k <= available:
            raise RequestError(f"row {row}: k must be between 1 and {available} (catalogue minus history), got {request.k}")

    def _check_profile(self, row: int, profile: str) -> None:
        if not profile.strip():
            raise RequestError(f"row {row}: profile is empty")
        tokens = self.encoder.token_counts([profile])[0]
        if tokens > self.encoder.max_tokens():
            raise RequestError(
                f"row {row}: profile is too long: {tokens} tokens, the recommender reads at most "
                f"{self.encoder.max_tokens()}"
            )

    def _profiles(self, requests: Sequence[Request]) -> list[str]:
        """The given profile where there is one, else one written by the generator."""
        to_write = [row for row, r in enumerate(requests) if r.profile is None]
        written = self._write_profiles(to_write, [requests[row] for row in to_write])
        profiles = [r.profile for r in requests]
        for row, profile in zip(to_write, written, strict=True):
            profiles[row] = profile
        return profiles  # type: ignore[return-value]  # every None was replaced above

    def _write_profiles(self, rows: Sequence[int], requests: Sequence[Request]) -> list[str]:
        """Profiles written for `requests`, which are the request's rows `rows` (named in errors)."""
        if not requests:
            return []
        examples = pl.DataFrame(
            {
                "user_id": [f"request-{row}" for row in range(len(requests))],
                "history_item_ids": [r.history_item_ids for r in requests],
                "history_ratings": [r.history_ratings for r in requests],
                "history_reviews": [None] * len(requests),
            },
            schema={
                "user_id": pl.String,
                "history_item_ids": pl.List(pl.String),
                "history_ratings": pl.List(pl.Float32),
                "history_reviews": pl.List(pl.String),
            },
        )
        prompts = text.build_prompts(examples, self.catalog, self.tokenizer, self.recipe.prompt, self.recipe.data.source)
        limit = self.recipe.data.max_prompt_tokens
        for row, tokens in zip(rows, text.token_counts(prompts, self.tokenizer), strict=True):
            if tokens > limit:
                raise RequestError(f"row {row}: the prompt has {tokens} tokens, the generator takes at most {limit}")
        return [generated.text for generated in self.generator.generate(prompts)]


class LangPTuneModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of ProfileRecommender: DataFrame rows in and out, errors as HTTP 400."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        artifacts = context.artifacts
        saved = json.loads(Path(artifacts["recipe"]).read_text(encoding="utf-8"))
        local_models = {"models": {"generator": artifacts["generator"], "encoder": artifacts["recommender"]}}
        recipe = Recipe.model_validate(deep_merge(saved, local_models))
        catalog = pl.read_parquet(artifacts["catalog"])
        self.stopping = _server_stopping()
        self.recommender = ProfileRecommender(
            recipe, Path(artifacts["adapter"]), Path(artifacts["item_index"]), catalog, self.stopping.is_set
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

        from lpt_core.generation.hf_backend import GenerationCancelled

        stopping = RequestRefused("the server is shutting down: send the request again", TEMPORARILY_UNAVAILABLE)
        if self.stopping.is_set():
            raise stopping
        try:
            answers = self.recommender.recommend(requests_from_frame(model_input))
        except RequestError as error:
            raise RequestRefused(str(error), INVALID_PARAMETER_VALUE) from error
        except GenerationCancelled as error:
            raise stopping from error
        return pd.DataFrame(
            {
                "profile": [a.profile for a in answers],
                "item_ids": [a.item_ids for a in answers],
                "titles": [a.titles for a in answers],
                "scores": [a.scores for a in answers],
            }
        )


class RequestRefused(MlflowException):
    """An MlflowException (HTTP status by error code) whose message stays as written.

    MLflow's scoring server puts "Failed to predict data '<the whole input table>'" in front of
    the message of an exception from predict (up to about 2,000 characters); the person reading
    the answer needs the error first, and short, so this message cannot be replaced."""

    def __init__(self, message: str, error_code: int) -> None:
        self._fixed_message: str | None = None
        super().__init__(message, error_code=error_code)

    @property
    def message(self) -> str:
        return self._fixed_message or ""

    @message.setter
    def message(self, value: str) -> None:
        if self._fixed_message is None:  # set once, by MlflowException.__init__
            self._fixed_message = value


def _server_stopping() -> threading.Event:
    """An event set once the server that serves this model begins to shut down.

    uvicorn (under `mlflow models serve`) loads the model before it installs its SIGTERM handler,
    a method of its Server, which only sets the server's `should_exit`; its graceful shutdown then
    waits for every request in flight. A daemon thread watches that flag, found through the
    handler, so that profile writing in flight can stop. Where SIGTERM has no such handler (a
    notebook, a batch job) the event is never set.
    """
    stopping = threading.Event()

    def watch() -> None:
        while not stopping.is_set():
            server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
            if getattr(server, "should_exit", False):
                stopping.set()
            time.sleep(SHUTDOWN_POLL_S)

    threading.Thread(target=watch, name="lpt-server-shutdown-watch", daemon=True).start()
    return stopping


def _check_size(requests: Sequence[Request]) -> None:
    if len(requests) > MAX_ROWS_PER_REQUEST:
        raise RequestError(f"{len(requests)} rows in one request, at most {MAX_ROWS_PER_REQUEST}: split the request")
    items = sum(len(r.history_item_ids or []) for r in requests)
    if items > MAX_HISTORY_ITEMS_PER_REQUEST:
        raise RequestError(
            f"{items} history items in one request, at most {MAX_HISTORY_ITEMS_PER_REQUEST}: split the request"
        )


def requests_from_frame(frame: pd.DataFrame) -> list[Request]:
    """Request rows from a pyfunc input frame. MLflow checks nothing (SIGNATURE), so every key and
    type is checked here, naming row and field; absent columns, missing cells (a key that other
    rows have) and nulls mean "not given". An unknown key ("profle", "K") is an error: ignored, it
    would throw the user's text or setting away and answer as if it were not there."""
    records = frame.to_dict(orient="records")
    for row, record in enumerate(records):
        unknown = [key for key, value in record.items() if key not in INPUT_TYPES and _given(value) is not None]
        if unknown:
            raise RequestError(f"row {row}: unknown key {unknown[0]!r}; accepted keys: {', '.join(INPUT_TYPES)}")
    return [_request(row, record) for row, record in enumerate(records)]


def _request(row: int, record: dict) -> Request:
    k = _given(record.get("k"))
    return Request(
        history_item_ids=_item_ids(row, _given(record.get("history_item_ids"))),
        history_ratings=_ratings(row, _given(record.get("history_ratings"))),
        profile=_profile(row, _given(record.get("profile"))),
        k=DEFAULT_K if k is None else _k(row, k),
    )


def _item_ids(row: int, value: Any) -> list[str] | None:
    if value is None:
        return None
    for position, item_id in enumerate(_list(row, "history_item_ids", value)):
        if not isinstance(item_id, str):
            raise RequestError(f"row {row}: history_item_ids[{position}] must be a string (an item id), got {item_id!r}")
    return value


def _ratings(row: int, value: Any) -> list[float] | None:
    if value is None:
        return None
    low, high = RATING_RANGE
    for position, rating in enumerate(_list(row, "history_ratings", value)):
        if not _is_number(rating):
            raise RequestError(f"row {row}: history_ratings[{position}] must be a number, got {rating!r}")
        if not low <= rating <= high:
            raise RequestError(
                f"row {row}: history_ratings[{position}] is {rating}, outside the rating scale [{low:g}, {high:g}]"
            )
    return [float(r) for r in value]


def _profile(row: int, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RequestError(f"row {row}: profile must be a string, got {value!r}")
    return value


def _k(row: int, value: Any) -> int:
    # A whole float is accepted: pandas holds a k column with a null in another row as floats (3.0).
    whole = isinstance(value, (int, np.integer)) or (_is_number(value) and float(value).is_integer())
    if isinstance(value, bool) or not whole:
        raise RequestError(f"row {row}: k must be a whole number (or null for {DEFAULT_K}), got {value!r}")
    return int(value)


def _list(row: int, field: str, value: Any) -> list:
    if not isinstance(value, list):
        raise RequestError(f"row {row}: {field} must be a list, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _given(value: Any) -> Any:
    """None for a missing cell (None, NaN), lists for array cells (pandas hands numpy arrays)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def input_example(catalog: pl.DataFrame) -> pd.DataFrame:
    """A two-row example request: a rated history, and an edited profile."""
    history = catalog["item_id"].head(3).to_list()
    return pd.DataFrame(
        {
            "history_item_ids": [history, None],
            "history_ratings": [[5.0] * len(history), None],
            "profile": [None, "Loves light-hearted comedies and animated films; avoids horror."],
            "k": [5, 5],
        }
    )


def save_servable_model(parts: ServableParts, path: Path) -> Path:
    """Write a self-contained pyfunc model folder at `path` (which must not exist yet)."""
    missing = [c for c in CATALOG_COLUMNS if c not in parts.catalog.columns]
    if missing:
        raise ValueError(f"ServableParts.catalog: missing columns {missing}")
    with tempfile.TemporaryDirectory(prefix="lpt-servable-") as scratch:
        recipe_file = Path(scratch) / RECIPE_FILE
        recipe_file.write_text(json.dumps(servable_recipe(parts.recipe)), encoding="utf-8")
        catalog_file = Path(scratch) / CATALOG_FILE
        parts.catalog.select(CATALOG_COLUMNS).write_parquet(catalog_file)
        artifacts = {
            "generator": str(resolve_model(parts.recipe.models.generator)),
            "adapter": str(parts.adapter_dir),
            "recommender": str(parts.encoder_dir),
            "item_index": str(parts.index_dir),
            "catalog": str(catalog_file),
            "recipe": str(recipe_file),
        }
        mlflow.pyfunc.save_model(
            str(path),
            python_model=LangPTuneModel(),
            artifacts=artifacts,
            signature=SIGNATURE,
            input_example=input_example(parts.catalog),
            metadata={"input_types": INPUT_TYPES, "request_limits": REQUEST_LIMITS},
            pip_requirements=_pinned_requirements(),
        )
    return Path(path)


def servable_recipe(recipe: Recipe) -> dict:
    """The parts of `recipe` the served model reads (prompt layout, decoding, models, LoRA shape,
    prompt limit): saving only these keeps old models loadable when unrelated sections change."""
    full = recipe.model_dump(mode="json")
    data = {key: full["data"][key] for key in ("source", "column_map", "max_prompt_tokens")}
    kept = {key: full[key] for key in ("name", "seed", "prompt", "generation", "models")}
    return {**kept, "data": data, "training": {"rl": full["training"]["rl"]}}


def _pinned_requirements() -> list[str]:
    # Given explicitly: MLflow would otherwise infer them by loading the model in a subprocess.
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned
