"""Item texts and profile prompts, in the paper's format, wrapped by the model's own chat template.

The same item text is what the recommender embeds and what the LLM reads in a history, so both
sides of the method see an item the same way. Prompts go through `apply_chat_template` rather than
a hand-written format, so any instruction-tuned model gets the turn markers it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from lpt_core.config import PromptConfig
from lpt_core.sources import data_source

HistoryFormat = Literal["blocks", "lines"]

if TYPE_CHECKING:  # polars is imported where used: the GPU machine runs generation without it
    import polars as pl

def instruction_for(prompt: PromptConfig, source: str) -> str:
    """The recipe's own instruction, else the paper's default for its data source."""
    return prompt.instruction or data_source(source).instruction


def item_texts(items: pl.DataFrame) -> pl.Series:
    """One text per row of an ITEMS table: Title, Description, Category, Price lines.

    Parts a source lacks are left out rather than printed empty ("Price: None" would be noise the
    models learn from); MovieLens items get only Title (with year) and Category.
    """
    texts = [_item_text(row) for row in items.iter_rows(named=True)]
    import polars as pl

    return pl.Series("text", texts, dtype=pl.String)


def history_block(item_text: str, rating: float | None, review: str | None) -> str:
    """One history entry: the item's text followed by the user's review, or rating when no review."""
    if review is not None and review.strip():
        rating_part = f"(rating: {_number(rating)}) " if rating is not None else ""
        return f"{item_text}\nReview from the user: {rating_part}{review.strip()}"
    if rating is not None:
        return f"{item_text}\nRating from the user: {_number(rating)}"
    return item_text


def history_texts(
    examples: pl.DataFrame, items: pl.DataFrame, history_format: HistoryFormat = "blocks"
) -> list[str]:
    """Each example's history as plain text, oldest first, no template: "blocks" are the paper's
    (item text + the user's rating/review, blank line between items), "lines" one line per item."""
    if history_format == "lines":
        line_by_item = _line_by_item(items)
        return ["\n".join(_history_lines(row, line_by_item)) for row in examples.iter_rows(named=True)]
    text_by_item = _text_by_item(items)
    return ["\n\n".join(_history_blocks(row, text_by_item)) for row in examples.iter_rows(named=True)]


def history_titles(examples: pl.DataFrame, items: pl.DataFrame) -> list[list[str]]:
    """Each example's history as the items' catalogue titles, oldest first ("" for an item the
    catalogue lacks): what a profile would be copying if it named them."""
    title_of = dict(items.select("item_id", "title").iter_rows())
    return [[title_of.get(item, "") for item in history] for history in examples["history_item_ids"]]


def build_prompts(
    examples: pl.DataFrame, items: pl.DataFrame, tokenizer: Any, prompt: PromptConfig, source: str
) -> list[str]:
    """One chat-formatted prompt per EXAMPLES row: instruction and history laid out per `prompt`.

    The result ends with the assistant turn opened (add_generation_prompt), ready for generation.
    """
    return [
        chat_prompt(history, tokenizer, prompt, source)
        for history in history_texts(examples, items, prompt.history_format)
    ]


def chat_prompt(history: str, tokenizer: Any, prompt: PromptConfig, source: str) -> str:
    """One history's text (history_texts) as a chat-formatted prompt, the assistant turn opened."""
    instruction = instruction_for(prompt, source)
    if prompt.instruction_position == "before":
        content = f"{instruction}\n\n{history}"
    else:
        content = f"{history}\n\n{instruction}"
    system = [{"role": "system", "content": prompt.system}] if prompt.system else []
    messages = [*system, {"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def token_counts(
    texts: Sequence[str], tokenizer: Any, *, add_special_tokens: bool = False
) -> list[int]:
    """Token count of each text. Templated prompts already hold their special tokens, so none are
    added by default; pass add_special_tokens=True for raw text an encoder will wrap ([CLS]...)."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]
    return [len(ids) for ids in encoded]


def item_token_counter(tokenizer: Any) -> Callable[[pl.DataFrame], pl.Series]:
    """The cleaning's item-length measure (lpt_core.data.cleaning.clean): each ITEMS row's text in
    `tokenizer`'s tokens (the encoder's), special tokens included, as the encoder reads it."""

    def count(items: pl.DataFrame) -> pl.Series:
        import polars as pl

        return pl.Series("tokens", token_counts(item_texts(items).to_list(), tokenizer, add_special_tokens=True))

    return count


def prompt_token_counts(
    examples: pl.DataFrame, items: pl.DataFrame, tokenizer: Any, prompt: PromptConfig, source: str
) -> pl.Series:
    """Each EXAMPLES row's chat prompt (build_prompts) in the writer's tokens: what the split's
    length filter (data.max_prompt_tokens) measures."""
    import polars as pl

    return pl.Series("tokens", token_counts(build_prompts(examples, items, tokenizer, prompt, source), tokenizer))


def _item_text(row: dict[str, Any]) -> str:
    lines = [f"Title: {_title_with_year(row['title'], row['year'])}"]
    description = _description(row["description"], row["average_rating"])
    if description:
        lines.append(f"Description: {description}")
    categories = [c for c in row["categories"] or [] if c]
    if categories:
        lines.append(f"Category: {', '.join(categories)}")
    if row["price"] is not None and row["price"].strip():
        lines.append(f"Price: {row['price'].strip()}")
    return "\n".join(lines)


def _title_with_year(title: str, year: int | None) -> str:
    # MovieLens titles already end with "(1995)"; do not print the year twice.
    if year is None or title.rstrip().endswith(f"({year})"):
        return title
    return f"{title} ({year})"


def _description(description: str | None, average_rating: float | None) -> str:
    parts = []
    if average_rating is not None:
        parts.append(f"(average rating: {_number(average_rating)})")
    if description is not None and description.strip():
        parts.append(description.strip())
    return " ".join(parts)


def _number(value: float) -> str:
    # Float32 columns hold 4.3 as 4.300000190734863; two decimals are all a rating carries.
    return str(round(float(value), 2))


def _text_by_item(items: pl.DataFrame) -> dict[str, str]:
    return dict(zip(items["item_id"].to_list(), item_texts(items).to_list(), strict=True))


def _line_by_item(items: pl.DataFrame) -> dict[str, str]:
    lines = {}
    for row in items.iter_rows(named=True):
        categories = ", ".join(c for c in row["categories"] or [] if c)
        title = _title_with_year(row["title"], row["year"])
        lines[row["item_id"]] = f"{title} [{categories}]" if categories else title
    return lines


def _history_lines(example: dict[str, Any], line_by_item: dict[str, str]) -> Iterable[str]:
    item_ids = example["history_item_ids"]
    ratings = example["history_ratings"] or [None] * len(item_ids)
    reviews = example["history_reviews"] or [None] * len(item_ids)
    for item_id, rating, review in zip(item_ids, ratings, reviews, strict=True):
        line = f"- {_known(line_by_item, item_id, example)}"
        if rating is not None:
            line += f": rated {_number(rating)}/5"
        if review is not None and review.strip():
            line += f'. "{review.strip()}"'
        yield line


def _known(text_by_item: dict[str, str], item_id: str, example: dict[str, Any]) -> str:
    if item_id not in text_by_item:
        raise ValueError(
            f"example of user {example['user_id']!r}: history item {item_id!r} is not in the items table"
        )
    return text_by_item[item_id]


def _history_blocks(example: dict[str, Any], text_by_item: dict[str, str]) -> Iterable[str]:
    item_ids = example["history_item_ids"]
    ratings = example["history_ratings"] or [None] * len(item_ids)
    reviews = example["history_reviews"] or [None] * len(item_ids)
    for item_id, rating, review in zip(item_ids, ratings, reviews, strict=True):
        yield history_block(_known(text_by_item, item_id, example), rating, review)
