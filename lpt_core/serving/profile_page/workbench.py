"""What the profile page does, as plain Python over the served model: a person's history and
stored profiles, the top items for a profile (edited or not), what moved, and the request that
reproduces it.

Every ranking and every profile written from a history comes from the served model's own
`predict` (the pyfunc model that `mlflow models serve` calls for /invocations) with one request
row, and that row is what the page exports: the page cannot rank or steer differently from the
served model. Quick edits are the served model's steering edits (lpt_core.serving.steering).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pandas as pd
import polars as pl

from lpt_core.data.schemas import EXAMPLES
from lpt_core.paths import Outputs
from lpt_core.profiles import EXAMPLE_KEYS
from lpt_core.serving import registry
from lpt_core.serving.steering import edit_profile
from lpt_core.sources import SOURCES

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

TOP_K = 20
# Far beyond any profile the recommender reads (hundreds of tokens), so the model's own length
# check names the limit for anything a person would paste; this only keeps a pasted book from
# being tokenised.
MAX_PROFILE_CHARS = 200_000
# The split whose users the page offers, then the ones a typed id is looked up in, in order.
SPLIT_PREFERENCE = ("test", "val", "train")
QuickEditKind = Literal["add_genre", "remove_genre", "add_dislike"]
# Each quick edit as the served model's steering edit; {noun} is the data source's word for its
# items, as in the profile quality report's steerability edits ("They love Horror movies.").
QUICK_EDITS: dict[str, str] = {
    "add_genre": "add: they love {genre} {noun}",
    "remove_genre": "remove: {genre}",
    "add_dislike": "add: they dislike {genre} {noun}",
}


class PageError(ValueError):
    """Something the page cannot do, with the message a person reads and an HTTP status."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownUser(PageError):
    status = 404


@dataclass(frozen=True)
class ServedModel:
    """A registered version of the model, loaded, with where it came from."""

    model: PyFuncModel
    uri: str  # models:/NAME/VERSION, which a request to `mlflow models serve -m URI` reproduces
    description: str
    variant: str | None  # the training variant it was registered from (its trained profiles)


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    genres: list[str]


@dataclass(frozen=True)
class HistoryEntry:
    item: Item
    rating: float | None


@dataclass(frozen=True)
class Person:
    """A user's example as the page shows it: history oldest first, stored profiles, target."""

    user_id: str
    split: str
    history: list[HistoryEntry]
    target: Item | None
    zero_shot_profile: str | None
    trained_profile: str | None


@dataclass(frozen=True)
class RankedItem:
    rank: int
    item: Item
    score: float
    is_target: bool
    moved_in: bool  # not in the previous list
    places_up: int  # previous rank - rank (negative: moved down); 0 when moved in or unchanged


@dataclass(frozen=True)
class MovedOut:
    item: Item
    previous_rank: int


@dataclass(frozen=True)
class Ranking:
    """The served model's answer to one request row, compared with the previous list shown."""

    profile: str
    items: list[RankedItem]
    moved_out: list[MovedOut]
    compared: bool  # whether a previous list was given
    export: dict  # the request body (dataframe_records) + the model's answer (predictions)
    seconds: float
    profile_written: bool  # the model wrote the profile from the history


@dataclass(frozen=True)
class PageTables:
    """The split and the stored profiles the page shows, one example per user."""

    examples: pl.DataFrame  # EXAMPLES columns, one row per user
    zero_shot: pl.DataFrame  # EXAMPLE_KEYS + profile
    trained: pl.DataFrame  # EXAMPLE_KEYS + profile, of the served variant
    notes: list[str] = field(default_factory=list)  # what is missing and why

    @classmethod
    def load(cls, outputs: Outputs, variant: str | None) -> PageTables:
        """The materialised user_examples, zero_shot_profiles and trained_profiles under
        `outputs`; a missing table is empty, and `notes` says so."""
        notes = []
        examples = _table(outputs, "user_examples", EXAMPLES, notes)
        profile_schema = pl.Schema({**{k: EXAMPLES[k] for k in EXAMPLE_KEYS}, "profile": pl.String})
        zero_shot = _table(outputs, "zero_shot_profiles", profile_schema, notes)
        trained = _table(outputs, "trained_profiles", {**profile_schema, "variant": pl.String}, notes)
        trained = trained.filter(pl.col("variant") == variant).drop("variant")
        return cls(one_example_per_user(examples), zero_shot, trained, notes)


def one_example_per_user(examples: pl.DataFrame) -> pl.DataFrame:
    """Per user, the example of the first split of SPLIT_PREFERENCE it has, its latest window."""
    order = pl.col("split").replace_strict(list(SPLIT_PREFERENCE), range(len(SPLIT_PREFERENCE)), default=None)
    return (
        examples.filter(order.is_not_null())
        .sort([order, pl.col("user_id"), pl.col("window")], descending=[False, False, True])
        .unique("user_id", keep="first", maintain_order=True)
    )


def _table(outputs: Outputs, name: str, schema: dict, notes: list[str]) -> pl.DataFrame:
    path = outputs.table(name)
    if not path.is_file():
        notes.append(f"no {name} under {outputs.root}: run the pipeline (`make demo`) to have it")
        return pl.DataFrame(schema=schema)
    return pl.read_parquet(path).select(list(schema))


def load_registered(
    tracking_uri: str, model_name: str = registry.MODEL_NAME, alias: str = registry.CHAMPION, version: str | None = None
) -> ServedModel:
    """The version `version` of `model_name`, else the one `alias` points at, loaded from the
    registry at `tracking_uri` as the served model loads it (lpt_core.serving.registry)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        found = client.get_model_version(model_name, version) if version else client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        wanted = f"version {version}" if version else f"version with the alias {alias!r}"
        raise LookupError(
            f"the registry at {tracking_uri} has no {model_name!r} {wanted}: run the pipeline (`make demo`), "
            f"whose registered_model step registers one ({error.message})"
        ) from error
    aliases = f" ({', '.join(found.aliases)})" if found.aliases else ""
    return ServedModel(
        registry.load_version(client, model_name, found.version),
        f"models:/{model_name}/{found.version}",
        f"{model_name} version {found.version}{aliases}",
        found.tags.get("lpt.variant"),
    )


class ProfileWorkbench:
    """The page's operations on one served model and the tables of one pipeline run."""

    def __init__(self, served: ServedModel, tables: PageTables, k: int = TOP_K) -> None:
        self.served = served
        self.tables = tables
        self.k = k
        recommender = served.model.unwrap_python_model().recommender
        catalog = recommender.catalog
        self._items = {
            item_id: Item(item_id, title, list(genres or []))
            for item_id, title, genres in catalog.select("item_id", "title", "categories").iter_rows()
        }
        self.genres: list[str] = sorted(catalog["categories"].explode().drop_nulls().unique().to_list())
        self.item_noun = SOURCES[recommender.recipe.data.source].item_noun
        self._examples = {row["user_id"]: row for row in tables.examples.iter_rows(named=True)}
        # One prediction at a time: the page is one person's tool, and torch's generation is not
        # meant to run twice at once on one model.
        self._predicting = threading.Lock()
        self.last_write_seconds: float | None = None

    def offered_users(self) -> list[str]:
        """The users of the first split of SPLIT_PREFERENCE the tables have, by id."""
        splits = self.tables.examples["split"]
        split = next((s for s in SPLIT_PREFERENCE if (splits == s).any()), None)
        return self.tables.examples.filter(pl.col("split") == split)["user_id"].to_list()

    def person(self, user_id: str) -> Person:
        example = self._example(user_id)
        ratings = example["history_ratings"] or [None] * len(example["history_item_ids"])
        history = [HistoryEntry(self._item(i), r) for i, r in zip(example["history_item_ids"], ratings, strict=True)]
        target = example["target_item_id"]
        return Person(
            user_id, example["split"], history, None if target is None else self._item(target),
            self._stored_profile(self.tables.zero_shot, example), self._stored_profile(self.tables.trained, example),
        )

    def recommend(
        self,
        profile: str | None,
        user_id: str | None = None,
        edit: tuple[QuickEditKind, str] | None = None,
        previous_item_ids: list[str] | None = None,
    ) -> Ranking:
        """The top k for `profile` (after the quick `edit` (kind, genre), if any) with the user's
        history left out, or, with no profile, for the profile the model writes from the history.
        `previous_item_ids` is the list shown before, to say what moved."""
        example = self._example(user_id) if user_id is not None else None
        if profile is not None:
            profile = self._edited(profile, edit)
        elif example is None:
            raise PageError("Write a profile, or pick a user whose history the model can write one from.")
        row = {
            "history_item_ids": None if example is None else list(example["history_item_ids"]),
            "history_ratings": None if example is None or example["history_ratings"] is None
            else [float(r) for r in example["history_ratings"]],
            "profile": profile,
            "k": self.k,
        }
        started = time.perf_counter()
        answer = self._predict(row)
        seconds = time.perf_counter() - started
        if profile is None:
            self.last_write_seconds = seconds
        # The export carries the profile used, so replaying it ranks without writing a profile.
        request_row = {**row, "profile": answer["profile"]}
        target = None if example is None else example["target_item_id"]
        return self._ranking(answer, request_row, target, previous_item_ids, seconds, profile is None)

    def _edited(self, profile: str, edit: tuple[QuickEditKind, str] | None) -> str:
        if len(profile) > MAX_PROFILE_CHARS:
            raise PageError(f"The profile is {len(profile):,} characters long; the page takes at most {MAX_PROFILE_CHARS:,}.")
        if edit is None:
            return profile
        kind, genre = edit
        if kind not in QUICK_EDITS or genre not in self.genres:
            raise PageError(f"Unknown quick edit {kind!r} of genre {genre!r}.")
        try:
            return edit_profile(profile, [QUICK_EDITS[kind].format(genre=genre, noun=self.item_noun)])
        except ValueError as error:
            raise PageError(str(error)) from error

    def _predict(self, row: dict) -> dict:
        """The served model's answer to one request row; its refusal as a PageError."""
        from mlflow.exceptions import MlflowException

        try:
            with self._predicting:
                answer = self.served.model.predict(pd.DataFrame([row]))
        except MlflowException as error:
            if error.error_code != "INVALID_PARAMETER_VALUE":
                raise
            raise PageError(_sentence(error.message)) from error
        first = answer.iloc[0]
        return {"profile": first["profile"], "item_ids": list(first["item_ids"]), "titles": list(first["titles"]),
                "scores": [float(s) for s in first["scores"]]}

    def _ranking(
        self, answer: dict, request_row: dict, target: str | None, previous: list[str] | None, seconds: float,
        profile_written: bool,
    ) -> Ranking:
        previous_rank = {item_id: rank for rank, item_id in enumerate(previous or [], start=1)}
        items = []
        for rank, (item_id, score) in enumerate(zip(answer["item_ids"], answer["scores"], strict=True), start=1):
            was = previous_rank.get(item_id)
            moved_in = previous is not None and was is None
            items.append(RankedItem(rank, self._item(item_id), score, item_id == target, moved_in, 0 if was is None else was - rank))
        shown = set(answer["item_ids"])
        moved_out = [MovedOut(self._item(i), rank) for i, rank in previous_rank.items() if i not in shown]
        export = {"dataframe_records": [request_row], "predictions": [answer], "model": self.served.uri}
        return Ranking(answer["profile"], items, moved_out, previous is not None, export, seconds, profile_written)

    def _example(self, user_id: str) -> dict:
        example = self._examples.get(user_id)
        if example is None:
            known = len(self._examples)
            hint = f"the examples have {known} users" if known else "no examples are materialised (run `make demo`)"
            raise UnknownUser(f"No user {user_id!r} in the split: {hint}.")
        return example

    def _item(self, item_id: str) -> Item:
        return self._items.get(item_id) or Item(item_id, f"(item {item_id}, not in the model's catalogue)", [])

    @staticmethod
    def _stored_profile(profiles: pl.DataFrame, example: dict) -> str | None:
        found = profiles.filter(*(pl.col(key) == example[key] for key in EXAMPLE_KEYS))["profile"]
        return found[0] if len(found) else None


def _sentence(model_message: str) -> str:
    """The model's refusal of the page's one request row, without "row 0: ", as a sentence."""
    text = model_message.removeprefix("row 0: ")
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
