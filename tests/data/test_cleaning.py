"""Cleaning: de-duplication policies, iterative k-core, unknown/untitled items, item length."""

from __future__ import annotations

import polars as pl
import pytest
from builders import interactions_table, items_table

from lpt_core.config import DataConfig
from lpt_core.data.cleaning import clean, deduplicate, k_core
from lpt_core.data.readers import QUARANTINE, InputAccount, RawData

DUPLICATES = interactions_table([("u", "a", 30), ("u", "b", 5), ("u", "a", 10), ("v", "a", 1), ("u", "a", 10)])


def test_dedup_keep_returns_everything():
    assert deduplicate(DUPLICATES, "keep").equals(DUPLICATES)


def test_dedup_first_keeps_earliest_by_time_then_row_order():
    kept = deduplicate(DUPLICATES, "first")
    # (u, a) at t=10 appears at rows 2 and 4: the earlier row wins; row order is preserved.
    assert kept["rating"].to_list() == [1.0, 2.0, 3.0]


def test_dedup_last_keeps_latest():
    assert deduplicate(DUPLICATES, "last")["rating"].to_list() == [0.0, 1.0, 3.0]


def test_dedup_rejects_unknown_policy():
    with pytest.raises(ValueError, match="dedup policy"):
        deduplicate(DUPLICATES, "newest")


def _grid(users: list[str], items: list[str]) -> list[tuple[str, str, int]]:
    return [(u, i, 0) for u in users for i in items]


def test_k_core_needs_more_than_one_pass():
    # A 2x2 block is a 2-core. Item "x" (2 users) survives the first pass, but user "w" has only 1
    # interaction and goes, which leaves "x" with 1 user: only a second pass removes it, and with
    # it user "v"'s third interaction.
    rows = _grid(["u", "v"], ["a", "b"]) + [("v", "x", 0), ("w", "x", 0)]
    one_pass = interactions_table(rows).filter(
        (pl.len().over("user_id") >= 2) & (pl.len().over("item_id") >= 2)
    )
    assert "x" in one_pass["item_id"].to_list()
    result = k_core(interactions_table(rows), 2)
    assert sorted(result["item_id"].unique()) == ["a", "b"]
    assert result.group_by("user_id").len()["len"].min() >= 2
    assert result.group_by("item_id").len()["len"].min() >= 2


def test_k_core_can_empty_everything():
    chain = interactions_table([("u1", "a", 0), ("u1", "b", 0), ("u2", "b", 0), ("u2", "c", 0)])
    assert k_core(chain, 2).height == 0


def _raw(interactions: pl.DataFrame, items: pl.DataFrame, quarantined: int = 0) -> RawData:
    quarantine = pl.DataFrame(
        [("f", 1, None, "bad", "x")] * quarantined, schema=QUARANTINE, orient="row"
    )
    account = InputAccount(
        file="f", rows=interactions.height + quarantined, kept=interactions.height, quarantined=quarantined
    )
    return RawData(interactions=interactions, items=items, quarantine=quarantine, accounts=(account,))


def test_clean_drops_unknown_and_untitled_items_and_reports_each_step():
    rows = _grid(["u1", "u2"], ["a", "b"]) + [("u1", "ghost", 0), ("u2", "notitle", 0)]
    raw = _raw(interactions_table(rows), items_table(["a", "b", "notitle", "unused"], title=["Title a", "Title b", " ", "Title unused"]), quarantined=2)
    interactions, items, report = clean(raw, DataConfig(k_core=2))
    assert set(interactions["item_id"]) == {"a", "b"}
    assert items["item_id"].to_list() == ["a", "b"]  # "unused" has no interactions left
    assert [step for step, *_ in report.steps] == [
        "raw", "deduplicate", "drop unknown items", "drop items without title", "2-core",
    ]
    rows_after = [rows for _, rows, _, _ in report.steps]
    assert rows_after == [6, 6, 5, 4, 4]
    assert report.quarantined_rows == 2
    assert report.to_dict()["steps"][2] == {"step": "drop unknown items", "rows": 5, "users": 2, "items": 3}
    assert "| drop unknown items | 5 | 2 | 3 | 1 |" in report.to_markdown()


def test_clean_drops_long_items_then_k_cores_again():
    rows = _grid(["u1", "u2", "u3"], ["a", "b", "long"]) + [("u4", "a", 0), ("u4", "long", 0)]
    raw = _raw(interactions_table(rows), items_table(["a", "b", "long"]))
    seen = []

    def token_counts(items: pl.DataFrame) -> pl.Series:
        seen.append(items["item_id"].to_list())
        return pl.Series([100 if i == "long" else 3 for i in items["item_id"]])

    interactions, items, report = clean(raw, DataConfig(k_core=2, max_item_tokens=10), token_counts)
    assert seen == [["a", "b", "long"]]  # called once, on the items surviving the k-core
    assert items["item_id"].to_list() == ["a", "b"]
    # Without "long", u4 has one interaction left: the second k-core removes them.
    assert set(interactions["user_id"]) == {"u1", "u2", "u3"}
    assert [step for step, *_ in report.steps][-2:] == ["drop items over 10 tokens", "2-core again"]


def test_clean_rejects_misaligned_token_counts():
    raw = _raw(interactions_table(_grid(["u1", "u2"], ["a", "b"])), items_table(["a", "b"]))
    with pytest.raises(ValueError, match="1 counts for 2 items"):
        clean(raw, DataConfig(k_core=1), lambda items: pl.Series([1]))


def test_html_entities_and_tags_never_reach_the_model_texts():
    """Issue 15.4: 'Region 1 DVD &amp; Blu-ray <br />Widescreen' reached the prompts."""
    items = items_table(["a", "b"], title=["Heat &amp; Dust", "Plain"]).with_columns(
        pl.Series("description", ["Region 1 DVD &amp; Blu-ray <br />Widescreen", "I <3 it, 2 < 3"]),
        pl.Series("categories", [["Movies &amp; TV"], ["Drama"]]),
    )
    interactions = interactions_table(_grid(["u1", "u2"], ["a", "b"])).with_columns(
        pl.lit("Great &quot;noir&quot;<br/><br/>Loved it &#8212; twice").alias("review")
    )
    cleaned, items, report = clean(_raw(interactions, items), DataConfig(k_core=1))
    assert set(cleaned["review"]) == {'Great "noir" Loved it \u2014 twice'}
    assert items.select("title", "description").rows() == [
        ("Heat & Dust", "Region 1 DVD & Blu-ray Widescreen"),
        ("Plain", "I <3 it, 2 < 3"),
    ]
    assert items["categories"].to_list() == [["Movies & TV"], ["Drama"]]
    assert report.html_cleaned_values == 4 + 3  # four reviews; a's title, description, categories


def test_only_real_html_tags_are_stripped():
    """Issue 31.5: "Director's Cut <Special Edition>" lost its "<Special Edition>"."""
    titles = ["Director's Cut <Special Edition>", "<I Love Lucy> <b>Season 1</b>"]
    items = items_table(["a", "b"], title=titles).with_columns(
        pl.Series("description", ['<p class="x">One<br/>Two</p>', "<a href='/y' target=_blank>Link</a> <3"])
    )
    _, items, report = clean(_raw(interactions_table(_grid(["u1"], ["a", "b"])), items), DataConfig(k_core=1))
    assert items.select("title", "description").rows() == [
        ("Director's Cut <Special Edition>", "One Two"),
        ("<I Love Lucy> Season 1", "Link <3"),
    ]
    assert report.html_cleaned_values == 3
