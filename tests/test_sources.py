"""One description per data source: the recipe accepts exactly the described sources."""

from __future__ import annotations

import importlib
import re
from typing import get_args

import pytest
from pydantic import ValidationError

from lpt_core.config import DataConfig
from lpt_core.sources import SOURCES, data_source


def test_the_recipe_accepts_exactly_the_described_sources():
    assert get_args(DataConfig.model_fields["source"].annotation) == tuple(SOURCES)
    *others, last = map(repr, SOURCES)  # pydantic lists a Literal's values as "'a', 'b' or 'c'"
    with pytest.raises(ValidationError, match=re.escape(f"{', '.join(others)} or {last}")):
        DataConfig(source="netflix")


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_has_its_words_and_a_reader(name):
    source = data_source(name)
    assert source.name == name
    assert source.instruction.endswith("summary of the user's preferences.")
    assert source.reader_question.endswith("?")
    assert source.item_noun
    assert callable(importlib.import_module(source.reader).read)


def test_a_source_that_needs_an_items_file_or_a_column_map_says_so():
    with pytest.raises(ValidationError, match="data.items_path .* required when data.source is 'amazon_2023'"):
        DataConfig(source="amazon_2023", path="reviews.jsonl")
    with pytest.raises(ValidationError, match="data.column_map is required when data.source is 'tabular'"):
        DataConfig(source="tabular", path="interactions.csv")
    with pytest.raises(ValueError, match="unknown data.source 'netflix': expected one of movielens_100k"):
        data_source("netflix")
