"""Each quality check passes on clean tables and fails, naming the offender, on its own defect."""

from __future__ import annotations

import json

import polars as pl
import pytest
from builders import example_row, examples_table, interactions_table, items_table

from lpt_core.data.quality import CHECK_NAMES, CheckOutcome, check_examples, check_interactions, check_items

CATALOG = ["i1", "i2", "i3", "i4", "i5"]
HISTORY_LEN = 2


# Three users who each rated the same three items: a 3-core.
INTERACTIONS = interactions_table(
    [(u, i, 1000 * n) for n, (u, i) in enumerate((u, i) for u in ("u1", "u2", "u3") for i in ("i1", "i2", "i3"))],
    ratings=[4.0] * 9,
)
ITEMS = items_table(
    CATALOG,
    title=["Alien", "Heat", "Fargo", "Brazil", "Ran"],
    year=[1979, 1995, 1996, 1985, 1985],
    categories=[["Horror"], ["Crime"], ["Crime"], ["Sci-Fi"], ["Drama"]],
    average_rating=[4.0] * 5,
)
EXAMPLE_ROWS = (
    example_row("u1", "train", ["i1", "i2"], "i3"),
    example_row("u2", "val", ["i2", "i3"], "i4"),
    example_row("u3", "test", ["i4", "i5"], "i1"),
)
EXAMPLES = examples_table(*EXAMPLE_ROWS)


def _failed(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    return {o.name: o for o in outcomes if not o.passed}


def _offenders(outcome: CheckOutcome) -> list:
    """Every offending value or identifying row GX reported, flattened for membership tests."""
    found = []
    for result in outcome.details["expectations"]:
        found += result.get("partial_unexpected_list", [])
        found += result.get("partial_unexpected_index_list", [])
    return found


def _set_cell(frame: pl.DataFrame, row: int, column: str, value) -> pl.DataFrame:
    dtype = frame.schema[column]
    replaced = pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value, dtype=dtype))
    return frame.with_columns(replaced.otherwise(pl.col(column)).alias(column))


def test_clean_tables_pass_every_declared_check_with_json_details():
    by_table = {
        "raw_interactions": check_interactions(INTERACTIONS, k_core=None),
        "interactions": check_interactions(INTERACTIONS, k_core=3),
        "items": check_items(ITEMS),
        "examples": check_examples(EXAMPLES, CATALOG, HISTORY_LEN),
    }
    for table, outcomes in by_table.items():
        assert tuple(o.name for o in outcomes) == CHECK_NAMES[table]
        assert _failed(outcomes) == {}
        assert all(o.description.endswith(".") for o in outcomes)
        json.dumps([o.details for o in outcomes], allow_nan=False)


def test_interactions_schema_names_the_wrong_dtype_and_missing_column():
    bad = INTERACTIONS.with_columns(pl.col("rating").cast(pl.Float64)).drop("review")
    failed = _failed(check_interactions(bad, k_core=3))
    assert set(failed) == {"interactions_schema"}
    details = failed["interactions_schema"].details
    assert details["dtype_mismatches"] == {"rating": {"expected": "Float32", "found": "Float64"}}
    assert details["missing_columns"] == ["review"]
    assert "review" in failed["interactions_schema"].description


def test_null_keys_are_reported_by_row():
    bad = _set_cell(INTERACTIONS, 4, "item_id", None)
    failed = _failed(check_interactions(bad, k_core=None))
    assert set(failed) == {"interactions_keys_not_null"}
    assert failed["interactions_keys_not_null"].details["unexpected_count"] == 1
    assert 4 in _offenders(failed["interactions_keys_not_null"])


def test_rating_out_of_range_names_user_and_item_and_null_rating_is_allowed():
    with_null = _set_cell(INTERACTIONS, 0, "rating", None)
    assert _failed(check_interactions(with_null, k_core=3)) == {}
    bad = _set_cell(with_null, 5, "rating", 6.5)  # row 5 is (u2, i3)
    failed = _failed(check_interactions(bad, k_core=3))
    assert set(failed) == {"interactions_rating_range"}
    assert {"rating": 6.5, "user_id": "u2", "item_id": "i3"} in _offenders(
        failed["interactions_rating_range"]
    )


def test_k_core_names_the_users_and_items_below_k():
    bad = INTERACTIONS.filter(~((pl.col("user_id") == "u1") & (pl.col("item_id") == "i1")))
    assert _failed(check_interactions(bad, k_core=2)) == {}
    failed = _failed(check_interactions(bad, k_core=3))
    assert set(failed) == {"interactions_k_core"}
    offenders = _offenders(failed["interactions_k_core"])
    assert {"interactions": 2, "entity": "user", "id": "u1"} in offenders
    assert {"interactions": 2, "entity": "item", "id": "i1"} in offenders
    assert failed["interactions_k_core"].details["unexpected_count"] == 2


def test_items_schema_names_the_wrong_dtype():
    failed = _failed(check_items(ITEMS.with_columns(pl.col("year").cast(pl.Int64))))
    assert set(failed) == {"items_schema"}
    assert set(failed["items_schema"].details["dtype_mismatches"]) == {"year"}


@pytest.mark.parametrize("bad_id", ["i2", None])
def test_repeated_or_null_item_id_fails(bad_id):
    failed = _failed(check_items(_set_cell(ITEMS, 2, "item_id", bad_id)))
    assert set(failed) == {"items_item_id_unique"}
    if bad_id is not None:
        assert "i2" in _offenders(failed["items_item_id_unique"])


@pytest.mark.parametrize("bad_title", ["   ", "", None])
def test_blank_or_null_title_names_the_item(bad_title):
    failed = _failed(check_items(_set_cell(ITEMS, 3, "title", bad_title)))
    assert set(failed) == {"items_title_present"}
    rows = [row for row in _offenders(failed["items_title_present"]) if isinstance(row, dict)]
    assert [row["item_id"] for row in rows] == ["i4"]


def test_examples_schema_names_the_wrong_dtype():
    bad = EXAMPLES.with_columns(pl.col("window").cast(pl.Int64))
    failed = _failed(check_examples(bad, CATALOG, HISTORY_LEN))
    assert set(failed) == {"examples_schema"}
    assert set(failed["examples_schema"].details["dtype_mismatches"]) == {"window"}


def test_unknown_split_value_is_named():
    bad = examples_table(*EXAMPLE_ROWS, example_row("u4", "dev", ["i1", "i2"], "i3"))  # every real split keeps its examples
    failed = _failed(check_examples(bad, CATALOG, HISTORY_LEN))
    assert set(failed) == {"examples_split_values"}
    assert "dev" in _offenders(failed["examples_split_values"])


def test_user_in_two_splits_is_named_with_its_splits():
    bad = examples_table(*EXAMPLE_ROWS, example_row("u1", "test", ["i2", "i3"], "i5"))
    failed = _failed(check_examples(bad, CATALOG, HISTORY_LEN))
    assert set(failed) == {"examples_users_disjoint"}
    assert {"splits_of_user": 2, "user_id": "u1", "splits": "test,train"} in _offenders(
        failed["examples_users_disjoint"]
    )


def test_target_outside_catalog_is_named():
    bad = _set_cell(EXAMPLES, 2, "target_item_id", "i9")
    failed = _failed(check_examples(bad, CATALOG, HISTORY_LEN))
    assert set(failed) == {"examples_targets_in_catalog"}
    assert {"target_in_catalog": False, "user_id": "u3", "target_item_id": "i9"} in _offenders(
        failed["examples_targets_in_catalog"]
    )


def test_history_of_wrong_length_is_named():
    bad = examples_table(*EXAMPLE_ROWS, example_row("u4", "test", ["i1", "i2", "i3"], "i4"))
    failed = _failed(check_examples(bad, CATALOG, HISTORY_LEN))
    assert set(failed) == {"examples_history_length"}
    assert {"history_len": 3, "user_id": "u4"} in _offenders(failed["examples_history_length"])


def test_target_inside_its_own_history_is_named():
    bad = _set_cell(EXAMPLES, 0, "target_item_id", "i2")
    failed = _failed(check_examples(bad, CATALOG, HISTORY_LEN))
    assert set(failed) == {"examples_target_not_in_history"}
    assert {"target_in_history": True, "user_id": "u1", "target_item_id": "i2"} in _offenders(
        failed["examples_target_not_in_history"]
    )


def test_missing_column_fails_the_checks_that_read_it_instead_of_raising():
    outcomes = check_examples(EXAMPLES.drop("history_item_ids"), CATALOG, HISTORY_LEN)
    failed = _failed(outcomes)
    assert set(failed) == {
        "examples_schema",
        "examples_history_length",
        "examples_target_not_in_history",
    }
    assert failed["examples_history_length"].details == {"missing_columns": ["history_item_ids"]}


def test_empty_tables_fail_instead_of_passing_every_check():
    """Issue 15.1: every check passed on 0-row tables, so a run on nothing succeeded."""
    cases = {
        "interactions_not_empty": check_interactions(INTERACTIONS.head(0), k_core=3),
        "items_not_empty": check_items(ITEMS.head(0)),
        "examples_every_split_present": check_examples(EXAMPLES.head(0), CATALOG, HISTORY_LEN),
    }
    for name, outcomes in cases.items():
        assert set(_failed(outcomes)) == {name}
        assert "no" in _failed(outcomes)[name].description


def test_an_empty_split_is_named():
    failed = _failed(check_examples(EXAMPLES.filter(pl.col("split") != "val"), CATALOG, HISTORY_LEN))
    assert set(failed) == {"examples_every_split_present"}
    assert {"examples": 0, "split": "val"} in _offenders(failed["examples_every_split_present"])
