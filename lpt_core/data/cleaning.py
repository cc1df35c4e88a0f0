"""Cleaning canonical interactions: de-duplication, unknown items, iterative k-core, long item texts.

The order follows the reference protocol (docs/method.md): de-duplicate, keep only interactions on
known items that have a title, k-core, drop items whose text is too long for the encoder, k-core
again. Each step's effect is recorded, so a run says where its rows went. Before all of them, the
texts the models read lose their HTML (entities decoded, tags removed), whatever the source.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from lpt_core.config import DataConfig
from lpt_core.data.readers import RawData

ROW_INDEX = "_row"
# The elements product texts and reviews carry. Only these are tags: a title such as
# "Director's Cut <Special Edition>" keeps its angle brackets, and so do "I <3 it" and "a < b".
HTML_ELEMENTS = (
    "a abbr b big blockquote br center cite code dd del div dl dt em font h1 h2 h3 h4 h5 h6 hr i img ins "
    "li ol p pre q s small span strike strong sub sup table tbody td tfoot th thead tr tt u ul"
).split()
# An element's name, then attributes that each have a value (name="value", name='v' or name=v),
# so that "<I Love Lucy>" is not read as an <i> with two attributes; "/" closes or self-closes.
HTML_ATTRIBUTE = r"""\s+[\w:-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'<>]+)"""
HTML_TAG = re.compile(rf"</?(?:{'|'.join(HTML_ELEMENTS)})(?:{HTML_ATTRIBUTE})*\s*/?>", re.IGNORECASE)
REPEATED_SPACES = re.compile(r"[ \t]{2,}")
# The texts models read: item titles, descriptions and categories, and the users' reviews.
ITEM_TEXT_COLUMNS = ("title", "description", "categories")
INTERACTION_TEXT_COLUMNS = ("review",)


@dataclass(frozen=True)
class CleaningReport:
    """(step, rows, users, items) after each step, in order; the first entry is the raw input."""

    steps: list[tuple[str, int, int, int]] = field(default_factory=list)
    quarantined_rows: int = 0
    html_cleaned_values: int = 0  # texts whose HTML entities or tags were removed

    def to_dict(self) -> dict:
        return {
            "steps": [
                {"step": step, "rows": rows, "users": users, "items": items}
                for step, rows, users, items in self.steps
            ],
            "quarantined_rows": self.quarantined_rows,
            "html_cleaned_values": self.html_cleaned_values,
        }

    def to_markdown(self) -> str:
        lines = ["| step | rows | users | items | rows dropped |", "|---|---:|---:|---:|---:|"]
        previous_rows = None
        for step, rows, users, items in self.steps:
            dropped = "" if previous_rows is None else f"{previous_rows - rows:,}"
            lines.append(f"| {step} | {rows:,} | {users:,} | {items:,} | {dropped} |")
            previous_rows = rows
        lines.append(f"\nQuarantined input rows: {self.quarantined_rows:,}")
        lines.append(f"\nTexts cleaned of HTML entities or tags: {self.html_cleaned_values:,}")
        return "\n".join(lines)


def plain_text(text: str) -> str:
    """Text without HTML: entities decoded ("&amp;" -> "&") before tags are replaced by a space, so
    tags written as entities ("&lt;br /&gt;") go too."""
    if "&" not in text and "<" not in text:
        return text
    return REPEATED_SPACES.sub(" ", HTML_TAG.sub(" ", html.unescape(text))).strip()


def strip_html(frame: pl.DataFrame, columns: Sequence[str]) -> tuple[pl.DataFrame, int]:
    """`frame` with `columns` (text or lists of text) as plain_text; and how many values changed."""
    cleaned = frame.with_columns(
        pl.col(name).list.eval(pl.element().map_elements(plain_text, return_dtype=pl.String))
        if isinstance(frame.schema[name], pl.List)
        else pl.col(name).map_elements(plain_text, return_dtype=pl.String)
        for name in columns
    )
    changed = sum(frame[name].ne_missing(cleaned[name]).sum() for name in columns)
    return cleaned, changed


def deduplicate(interactions: pl.DataFrame, policy: Literal["keep", "first", "last"]) -> pl.DataFrame:
    """Repeated (user, item) pairs: "keep" all, or only the earliest ("first") / latest ("last").

    Earliest and latest are by timestamp, ties by row order; surviving rows keep their order.
    """
    if policy == "keep":
        return interactions
    if policy not in ("first", "last"):
        raise ValueError(f"dedup policy must be 'keep', 'first' or 'last', got {policy!r}")
    return (
        interactions.with_row_index(ROW_INDEX)
        .sort(["timestamp", ROW_INDEX])
        .unique(["user_id", "item_id"], keep=policy, maintain_order=True)
        .sort(ROW_INDEX)
        .drop(ROW_INDEX)
    )


def k_core(interactions: pl.DataFrame, k: int) -> pl.DataFrame:
    """Keep interactions whose user and item both have >= k of them, repeated until nothing changes.

    One pass is not enough: dropping a sparse item can push a user under k, and so on.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    while True:
        kept = interactions.filter(
            (pl.len().over("user_id") >= k) & (pl.len().over("item_id") >= k)
        )
        if kept.height == interactions.height:
            return kept
        interactions = kept


def clean(
    raw: RawData,
    cfg: DataConfig,
    item_token_counts: Callable[[pl.DataFrame], pl.Series] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, CleaningReport]:
    """Clean raw data per the recipe; returns (interactions, items, report).

    `item_token_counts(items)` gives each item's text length in encoder tokens, aligned with the
    rows of `items`; without it the item-length filter is skipped. The returned items are exactly
    those still interacted with.
    """
    raw_interactions, html_in_reviews = strip_html(raw.interactions, INTERACTION_TEXT_COLUMNS)
    raw_items, html_in_items = strip_html(raw.items, ITEM_TEXT_COLUMNS)
    steps: list[tuple[str, int, int, int]] = []

    def record(step: str, frame: pl.DataFrame) -> pl.DataFrame:
        steps.append((step, frame.height, frame["user_id"].n_unique(), frame["item_id"].n_unique()))
        return frame

    interactions = record("raw", raw_interactions)
    interactions = record("deduplicate", deduplicate(interactions, cfg.dedup))
    interactions = record("drop unknown items", _on_items(interactions, raw_items))
    titled = raw_items.filter(pl.col("title").str.strip_chars().fill_null("") != "")
    interactions = record("drop items without title", _on_items(interactions, titled))
    interactions = record(f"{cfg.k_core}-core", k_core(interactions, cfg.k_core))
    if item_token_counts is not None:
        short = _short_items(_on_interactions(titled, interactions), item_token_counts, cfg.max_item_tokens)
        interactions = record(f"drop items over {cfg.max_item_tokens} tokens", _on_items(interactions, short))
        interactions = record(f"{cfg.k_core}-core again", k_core(interactions, cfg.k_core))
    items = _on_interactions(titled, interactions)
    report = CleaningReport(
        steps,
        quarantined_rows=sum(account.quarantined for account in raw.accounts),
        html_cleaned_values=html_in_reviews + html_in_items,
    )
    return interactions, items, report


def _on_items(interactions: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    return interactions.filter(pl.col("item_id").is_in(items["item_id"].implode()))


def _on_interactions(items: pl.DataFrame, interactions: pl.DataFrame) -> pl.DataFrame:
    return items.filter(pl.col("item_id").is_in(interactions["item_id"].unique().implode()))


def _short_items(
    items: pl.DataFrame, item_token_counts: Callable[[pl.DataFrame], pl.Series], max_tokens: int
) -> pl.DataFrame:
    counts = item_token_counts(items)
    if len(counts) != items.height:
        raise ValueError(f"item_token_counts returned {len(counts)} counts for {items.height} items")
    return items.filter(pl.Series(counts) <= max_tokens)
