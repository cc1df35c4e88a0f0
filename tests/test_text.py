"""Item texts and prompts: the paper's format, history in time order, the model's chat template."""

from __future__ import annotations

import polars as pl
import pytest
from builders import example_row, examples_table, items_table
from tiny_lm import CHATML_TEMPLATE
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from lpt_core.config import PromptConfig
from lpt_core.sources import SOURCES
from lpt_core.text import build_prompts, history_block, history_texts, item_texts, token_counts

ITEMS = items_table(
    ["m1", "a1", "a2"],
    title=["Toy Story (1995)", "Heat", "Alien"],
    year=[1995, None, 1979],
    description=[None, "A cop hunts a crew of thieves.", None],
    categories=[["Animation", "Children's", "Comedy"], ["Movies", "Crime"], []],
    price=[None, "$9.99", "  "],
    average_rating=[None, 4.3, 4.7],
)
EXAMPLES = examples_table(
    example_row("u1", "train", ["a2", "m1", "a1"], "x", history_ratings=[5.0, 3.0, 4.0],
                history_reviews=["Scary and brilliant.", None, "Tense."]),
    example_row("u2", "test", ["m1"], "x", history_ratings=[2.0], history_reviews=None),
)


def _chat_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "<|im_end|>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", chat_template=CHATML_TEMPLATE
    )


def test_item_texts_follow_the_paper_format_and_omit_missing_parts():
    texts = item_texts(ITEMS).to_list()
    assert texts[0] == "Title: Toy Story (1995)\nCategory: Animation, Children's, Comedy"
    assert texts[1] == (
        "Title: Heat\n"
        "Description: (average rating: 4.3) A cop hunts a crew of thieves.\n"
        "Category: Movies, Crime\n"
        "Price: $9.99"
    )
    # A year not already in the title is added; a blank price and no categories print nothing.
    assert texts[2] == "Title: Alien (1979)\nDescription: (average rating: 4.7)"


def test_history_block_uses_the_review_when_there_is_one_else_the_rating():
    assert history_block("Title: X", 4.0, " Loved it. ") == (
        "Title: X\nReview from the user: (rating: 4.0) Loved it."
    )
    assert history_block("Title: X", 2.5, None) == "Title: X\nRating from the user: 2.5"
    assert history_block("Title: X", 2.5, "   ") == "Title: X\nRating from the user: 2.5"


def test_history_texts_keep_time_order_with_blank_lines_between_items():
    first, second = history_texts(EXAMPLES, ITEMS)
    blocks = first.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "Title: Alien (1979)",
        "Title: Toy Story (1995)",
        "Title: Heat",
    ]
    assert blocks[0].endswith("Review from the user: (rating: 5.0) Scary and brilliant.")
    assert blocks[1].endswith("Rating from the user: 3.0")
    assert second.endswith("Rating from the user: 2.0")


def test_prompts_put_instruction_then_history_inside_the_chat_template():
    instruction = SOURCES["movielens_100k"].instruction
    prompts = build_prompts(EXAMPLES, ITEMS, _chat_tokenizer(), PromptConfig(), "movielens_100k")
    history = history_texts(EXAMPLES, ITEMS)
    assert len(prompts) == 2
    assert prompts[0] == (
        f"<|im_start|>user\n{instruction}\n\n{history[0]}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_lines_layout_with_system_message_and_instruction_after_the_history():
    prompt = PromptConfig(
        system="You write profiles.", instruction="Describe the user.", instruction_position="after",
        history_format="lines",
    )
    first = build_prompts(EXAMPLES, ITEMS, _chat_tokenizer(), prompt, "movielens_100k")[0]
    lines = history_texts(EXAMPLES, ITEMS, "lines")[0]
    assert lines.splitlines()[0].startswith("- Alien (1979)")
    assert ": rated 5.0/5" in lines.splitlines()[0] and "Scary and brilliant." in lines.splitlines()[0]
    assert first == (
        "<|im_start|>system\nYou write profiles.<|im_end|>\n"
        f"<|im_start|>user\n{lines}\n\nDescribe the user.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_unknown_history_item_names_the_user_and_item():
    items = ITEMS.filter(pl.col("item_id") != "a1")
    with pytest.raises(ValueError, match=r"'u1'.*'a1'"):
        history_texts(EXAMPLES, items)


def test_amazon_instruction_is_the_papers_text():
    assert SOURCES["amazon_2023"].instruction.startswith(
        "The user rated (out of 5.0) and reviewed the following movies and TV shows"
    )


def test_token_counts_add_special_tokens_only_when_asked():
    tokenizer = _chat_tokenizer()
    tokenizer.add_special_tokens({"cls_token": "[CLS]"})
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", tokenizer.cls_token_id)]
    )
    assert token_counts(["a b c", "d e"], tokenizer) == [3, 2]
    assert token_counts(["a b c"], tokenizer, add_special_tokens=True) == [4]
    assert token_counts([], tokenizer) == []
