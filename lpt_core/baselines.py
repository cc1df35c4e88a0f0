"""Every evaluated method as one function: evaluation context in, full-catalogue target ranks out.

All methods rank the same catalogue, for the same rows, with each row's history items removed, and
break ties by the same rule (lpt_core.retrieval.rank_targets), so their numbers compare directly.
"No profile at all" baselines are part of the honest comparison: they can win (docs/method.md).
Adding a method is one function decorated with @register("name").

The *_head rows (beyond the paper) fit an item-side head (lpt_core.training.item_head) on the
query texts of train examples, stopped early on val examples, before ranking: history_text_head
on the raw history texts (the paper's decisive "no LLM at all" ablation), profile_head on the
zero-shot profiles of the same train examples. Both see the same rows and the same head settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lpt_core import evaluation_methods
from lpt_core.config import ItemHeadConfig
from lpt_core.recommenders import HistoryScorer, target_ranks
from lpt_core.retrieval import ItemIndex, TextEncoder, ranks_in_chunks
from lpt_core.training.item_head import FittedHead, TextRows, fit_head_on_texts

if TYPE_CHECKING:  # polars is not needed at run time here (the GPU machine has none)
    import polars as pl


@dataclass
class HeadTraining:
    """What the *_head rows fit their head on: per query kind ("history_text", "profile"), the
    (train, val) rows as query texts; every kind holds the same train and val examples."""

    rows: dict[str, tuple[TextRows, TextRows]]
    config: ItemHeadConfig
    _fits: dict[tuple, FittedHead] = field(default_factory=dict, repr=False, compare=False)

    def fitted(
        self, kind: str, encoder: TextEncoder, base: ItemIndex, seed: int, item_counts: Mapping[str, int]
    ) -> FittedHead:
        """The head fitted on `kind`'s rows over `base` (`item_counts`: the popularity prior's train
        counts), fitted once and reused: profile_head and every `<variant>@profile_head` row of a
        report rank through the same fit."""
        key = (kind, id(encoder), id(base), seed)
        if key not in self._fits:
            train, val = self.rows[kind]
            self._fits[key] = fit_head_on_texts(encoder, base, train, val, self.config, seed, item_counts=item_counts)
        return self._fits[key]


@dataclass
class EvalContext:
    """What any method may use to rank the catalogue for the evaluated split's rows."""

    examples: pl.DataFrame  # lpt_core.data.schemas.EXAMPLES rows of the evaluated split
    index: ItemIndex
    encoder: TextEncoder
    item_text: dict[str, str]
    train_item_counts: dict[str, int]  # interactions per item in the train split (popularity)
    seed: int
    history_texts: list[str] | None = None  # one raw history text per row, as the query
    profiles: list[str] | None = None  # one profile per row, as the query
    sampled_profiles: list[list[str]] | None = None  # several sampled profiles per row, same count
    models: dict[str, HistoryScorer] | None = None  # fitted history recommenders by method name
    head_training: HeadTraining | None = None  # what the *_head rows fit on

    @property
    def targets(self) -> list[str]:
        return self.examples["target_item_id"].to_list()

    @property
    def histories(self) -> list[list[str]]:
        return self.examples["history_item_ids"].to_list()


Method = Callable[[EvalContext], np.ndarray]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Add a method to METHODS under `name`, one of the names lpt_core.evaluation_methods lists
    (the config accepts exactly those in evaluation.methods)."""

    def add(method: Method) -> Method:
        if name not in evaluation_methods.EVALUATION_METHODS:
            raise ValueError(f"method {name!r}: add its name to EVALUATION_METHODS in lpt_core/evaluation_methods.py")
        if name in METHODS:
            raise ValueError(f"a method named {name!r} is already registered")
        METHODS[name] = method
        return method

    return add


def evaluate_methods(ctx: EvalContext, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Target ranks (one per example row) for each named method."""
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise KeyError(f"unknown method(s) {unknown}; registered: {sorted(METHODS)}")
    results = {}
    for name in names:
        ranks = np.asarray(METHODS[name](ctx), dtype=np.float64)
        if ranks.shape != (ctx.examples.height,):
            raise ValueError(
                f"method {name!r} returned {ranks.shape} ranks for {ctx.examples.height} rows"
            )
        results[name] = ranks
    return results


def rank_by_query_texts(ctx: EvalContext, queries: Sequence[str]) -> np.ndarray:
    """Encode one query text per row and rank the catalogue by cosine similarity to it."""
    return ctx.index.target_ranks(encode_rows(ctx.encoder, queries), ctx.targets, ctx.histories)


def encode_rows(encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
    """One embedding per row, each distinct text encoded once, in order of first appearance: the
    rows of one window share its text when evaluation.targets_per_window > 1, and many rows share
    a last history item."""
    distinct = list(dict.fromkeys(texts))
    position = {text: i for i, text in enumerate(distinct)}
    return encoder.encode(distinct)[[position[text] for text in texts]]


def rank_by_scores(ctx: EvalContext, scores_for: Callable[[int], np.ndarray]) -> np.ndarray:
    """Rank targets under scores that do not come from text.

    `scores_for(n)` gives the scores of the next n rows, chunk by chunk in row order: an
    (n x items) array, or a (1 x items) array shared by all n rows.
    """
    return ranks_in_chunks(
        lambda rows: scores_for(rows.stop - rows.start),
        ctx.index.positions(ctx.targets),
        [ctx.index.positions(items) for items in ctx.histories],
        len(ctx.index),
    )


def _required(values: list[str] | None, field: str, ctx: EvalContext) -> list[str]:
    if values is None:
        raise ValueError(f"this method needs EvalContext.{field} (one text per example row)")
    if len(values) != ctx.examples.height:
        raise ValueError(
            f"EvalContext.{field} has {len(values)} texts for {ctx.examples.height} rows"
        )
    return values


@register("random")
def random_scores(ctx: EvalContext) -> np.ndarray:
    """Seeded uniform scores per row: the chance level (expected Recall@K = K / catalogue size)."""
    rng = np.random.default_rng(ctx.seed)
    n_items = len(ctx.index)
    return rank_by_scores(ctx, lambda n_rows: rng.random((n_rows, n_items)))


@register("popularity")
def popularity(ctx: EvalContext) -> np.ndarray:
    """Items by train interaction count, the same list for everyone (history still removed).

    Equal counts tie and take the expected rank under random tie-breaking (rank_targets).
    """
    item_ids = ctx.index.item_ids.tolist()
    counts = np.array([ctx.train_item_counts.get(i, 0) for i in item_ids], dtype=np.float64)
    return rank_by_scores(ctx, lambda n_rows: counts[None, :])


@register("last_item_text")
def last_item_text(ctx: EvalContext) -> np.ndarray:
    """The text of the user's most recent history item as the query (no LLM)."""
    histories = ctx.histories
    empty = [row for row, history in enumerate(histories) if not history]
    if empty:
        raise ValueError(f"rows {empty[:10]} have an empty history: no last item to query with")
    last_ids = [history[-1] for history in histories]
    unknown = sorted({i for i in last_ids if i not in ctx.item_text})
    if unknown:
        raise KeyError(f"no item text for {len(unknown)} last history item(s): {unknown[:10]}")
    # Many users share a last item: rank_by_query_texts encodes each distinct text once.
    return rank_by_query_texts(ctx, [ctx.item_text[i] for i in last_ids])


@register("history_text")
def history_text(ctx: EvalContext) -> np.ndarray:
    """The raw history text (items and reviews) as the query (no LLM)."""
    return rank_by_query_texts(ctx, _required(ctx.history_texts, "history_texts", ctx))


@register("profile")
def profile(ctx: EvalContext) -> np.ndarray:
    """The LLM-written profile as the query: the method itself."""
    return rank_by_query_texts(ctx, _required(ctx.profiles, "profiles", ctx))


def rank_with_fitted_head(ctx: EvalContext, kind: str, texts: list[str]) -> np.ndarray:
    """Fit an item-side head on the train rows' `kind` texts over `ctx.index` (the base encoder's
    plain index), then rank this split's rows, `texts` as their queries, through it."""
    training = ctx.head_training
    if training is None or kind not in training.rows:
        raise ValueError(f"this method needs EvalContext.head_training with {kind!r} rows")
    head = training.fitted(kind, ctx.encoder, ctx.index, ctx.seed, ctx.train_item_counts).head
    index = head.index(ctx.index.item_ids.tolist(), ctx.index.vectors)
    return index.target_ranks(encode_rows(ctx.encoder, texts), ctx.targets, ctx.histories)


@register("history_text_head")
def history_text_head(ctx: EvalContext) -> np.ndarray:
    """The raw history text as the query, through a head fitted on train history texts (no LLM)."""
    return rank_with_fitted_head(ctx, "history_text", _required(ctx.history_texts, "history_texts", ctx))


@register("profile_head")
def profile_head(ctx: EvalContext) -> np.ndarray:
    """The zero-shot profile as the query, through a head fitted on train zero-shot profiles."""
    return rank_with_fitted_head(ctx, "profile", _required(ctx.profiles, "profiles", ctx))


@register("profile_mean")
def profile_mean(ctx: EvalContext) -> np.ndarray:
    """Several sampled profiles per row, the catalogue ranked by their mean score (beyond the
    paper). Scores are inner products (+ an item bias), so the mean score is the score of the mean
    embedding: one ranking per row."""
    samples = ctx.sampled_profiles
    if samples is None or len(samples) != ctx.examples.height:
        got = "none" if samples is None else f"{len(samples)} rows"
        raise ValueError(f"profile_mean needs EvalContext.sampled_profiles for {ctx.examples.height} rows, got {got}")
    per_row = {len(row) for row in samples}
    if len(per_row) != 1 or 0 in per_row:
        raise ValueError(f"profile_mean needs the same number (> 0) of samples per row, got {sorted(per_row)}")
    (count,) = per_row
    embeddings = encode_rows(ctx.encoder, [text for row in samples for text in row])
    queries = embeddings.reshape(len(samples), count, -1).mean(axis=1)
    return ctx.index.target_ranks(queries, ctx.targets, ctx.histories)


def rank_by_history_model(ctx: EvalContext, name: str) -> np.ndarray:
    """Rank with a fitted history recommender (lpt_core.recommenders): it reads each row's N-item
    history only, and its ranks go through the same rank_targets exclusion and tie rule."""
    if ctx.models is None or name not in ctx.models:
        raise ValueError(f"method {name!r} needs EvalContext.models[{name!r}]: materialise baseline_models")
    histories = [ctx.index.positions(items) for items in ctx.histories]
    return target_ranks(ctx.models[name], histories, ctx.index.positions(ctx.targets))


@register("sasrec")
def sasrec(ctx: EvalContext) -> np.ndarray:
    """SASRec (Kang & McAuley 2018) trained on train users, reading the N-item history."""
    return rank_by_history_model(ctx, "sasrec")


@register("item_knn")
def item_knn(ctx: EvalContext) -> np.ndarray:
    """Item-to-item kNN over train users' co-occurrences, scoring from the N-item history."""
    return rank_by_history_model(ctx, "item_knn")
