"""Readers: MovieLens atomic files, Amazon Reviews 2023 JSON lines (nasty cases), parquet/CSV."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from lpt_core.config import DataConfig
from lpt_core.data import schemas
from lpt_core.data.errors import DataError
from lpt_core.data.readers import QUARANTINE, InputAccount, read_raw
from lpt_core.data.readers.amazon import read_amazon_2023
from lpt_core.data.readers.movielens import read_movielens_100k
from lpt_core.data.readers.tabular import read_tabular

ML_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t10\t4\t881250949\n"
    "2\t11\t3\t881250950\n"
)
ML_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "10\tToy Story\t1995\tAnimation Children's Comedy\n"
    "11\tThe Big Sleep\t1946\tFilm-Noir Mystery\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
)


def _write_movielens(folder: Path, inter: str = ML_INTER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml-100k.inter").write_text(inter, encoding="utf-8")
    (folder / "ml-100k.item").write_text(ML_ITEM, encoding="utf-8")
    return folder


def test_movielens_reads_canonical_tables(tmp_path):
    raw = read_movielens_100k(_write_movielens(tmp_path / "ml"))
    assert raw.interactions.schema == schemas.INTERACTIONS
    assert raw.items.schema == schemas.ITEMS
    assert raw.interactions["timestamp"].to_list() == [881250949000, 881250950000]
    assert raw.interactions["review"].null_count() == 2
    items = {row["item_id"]: row for row in raw.items.iter_rows(named=True)}
    assert items["10"]["categories"] == ["Animation", "Children's", "Comedy"]
    assert items["11"]["categories"] == ["Film-Noir", "Mystery"]
    assert items["11"]["year"] == 1946
    # The file's placeholders are missing values, not a movie called "unkonwn".
    assert items["267"]["title"] is None and items["267"]["year"] is None
    assert items["267"]["categories"] == []


def test_movielens_bad_rating_names_line_and_field(tmp_path):
    folder = _write_movielens(tmp_path / "ml", ML_INTER + "3\t12\tgood\t881250951\n")
    with pytest.raises(DataError) as caught:
        read_movielens_100k(folder)
    assert (caught.value.line, caught.value.field) == (4, "rating")
    assert "ml-100k.inter:4" in str(caught.value)


def test_read_raw_resolves_recipe_paths(tmp_path):
    folder = _write_movielens(tmp_path / "ml")
    raw = read_raw(DataConfig(source="movielens_100k", path=str(folder)))
    assert raw.interactions.height == 2


def _review(**overrides) -> dict:
    review = {
        "rating": 5.0,
        "title": "Great",
        "text": "Loved it",
        "images": [],
        "asin": "B01",
        "parent_asin": "P1",
        "user_id": "U1",
        "timestamp": 1588687728923,
        "helpful_vote": 0,
        "verified_purchase": True,
    }
    return review | overrides


def _meta(**overrides) -> dict:
    meta = {
        "main_category": "Movies & TV",
        "title": "A Film",
        "average_rating": 4.5,
        "rating_number": 10,
        "features": [],
        "description": ["First line.", "Second line."],
        "price": 12.99,
        "images": [],
        "videos": [],
        "store": "S",
        "categories": ["Movies & TV", "Drama"],
        "details": {},
        "parent_asin": "P1",
        "bought_together": None,
    }
    return meta | overrides


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _dumps(record: dict) -> bytes:
    return json.dumps(record).encode()


NASTY_REVIEWS = [
    _dumps(_review()),  # line 1
    b'{"user_id": "U2", "parent_asin": ',  # line 2: malformed JSON
    _dumps({k: v for k, v in _review(user_id="U3").items() if k != "parent_asin"}),  # 3: missing
    _dumps(_review(user_id="U4", rating="five")),  # line 4: mistyped
    # line 5: Latin-1 "é" inside an otherwise valid line
    _dumps(_review(user_id="U5", text="caf\u00e9")).replace(b"\\u00e9", b"\xe9"),
    b"",  # line 6: blank, skipped
    _dumps(_review(user_id="U6", parent_asin="P2", title="", text="Only text")),  # line 7
]
METADATA = [
    _dumps(_meta()),
    _dumps(_meta(parent_asin="P2", description=[], price="$5.00", categories=[], average_rating=None)),
    _dumps(_meta(parent_asin="P3", title="", price=None)),
    _dumps(_meta(parent_asin="P4", description="one string", price="None")),
    _dumps(_meta(parent_asin="P5", price=20)),
]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_amazon_quarantine_sets_bad_lines_aside(tmp_path, suffix):
    reviews = _write_lines(tmp_path / f"reviews{suffix}", NASTY_REVIEWS)
    meta = _write_lines(tmp_path / f"meta{suffix}", METADATA)
    # chunk_lines=3 makes the bad lines land in different chunks, next to good ones.
    raw = read_amazon_2023(reviews, meta, bad_rows="quarantine", chunk_lines=3)
    assert raw.interactions.schema == schemas.INTERACTIONS
    assert raw.interactions["user_id"].to_list() == ["U1", "U6"]
    assert raw.interactions["review"].to_list() == ["Great\nLoved it", "Only text"]
    assert raw.interactions["timestamp"].to_list() == [1588687728923] * 2
    assert raw.quarantine.schema == QUARANTINE
    bad = {(row["line"], row["field"]) for row in raw.quarantine.iter_rows(named=True)}
    assert bad == {(2, None), (3, "parent_asin"), (4, "rating"), (5, None)}
    assert set(raw.quarantine["file"]) == {str(reviews)}
    assert "not UTF-8" in raw.quarantine.filter(pl.col("line") == 5)["reason"][0]


def test_amazon_metadata_fields(tmp_path):
    reviews = _write_lines(tmp_path / "r.jsonl", [_dumps(_review())])
    meta = _write_lines(tmp_path / "m.jsonl", METADATA + [_dumps(_meta(title="Duplicate"))])
    items = {row["item_id"]: row for row in read_amazon_2023(reviews, meta).items.iter_rows(named=True)}
    assert list(items) == ["P1", "P2", "P3", "P4", "P5"]  # the repeated P1 keeps its first line
    assert items["P1"]["title"] == "A Film"
    assert items["P1"]["description"] == "First line. Second line."
    assert items["P1"]["categories"] == ["Movies & TV", "Drama"]
    assert items["P1"]["average_rating"] == pytest.approx(4.5)
    assert [items[k]["price"] for k in ("P1", "P2", "P3", "P4", "P5")] == ["12.99", "$5.00", None, None, "20"]
    assert items["P2"]["description"] is None and items["P2"]["categories"] == []
    assert items["P3"]["title"] is None  # kept here, dropped by cleaning
    assert items["P4"]["description"] == "one string"


@pytest.mark.parametrize(
    ("line", "field"),
    [(b'{"user_id": "U2", "parent_asin": ', None), (_dumps(_review(rating="five")), "rating")],
)
def test_amazon_error_policy_names_file_line_field(tmp_path, line, field):
    reviews = _write_lines(tmp_path / "r.jsonl.gz", [_dumps(_review()), b"", line])
    meta = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta())])
    with pytest.raises(DataError) as caught:
        read_amazon_2023(reviews, meta)
    assert (caught.value.line, caught.value.field) == (3, field)
    assert str(caught.value).startswith(f"{reviews}:3")


@pytest.mark.parametrize("policy", ["error", "quarantine"])
def test_amazon_empty_file_always_fails(tmp_path, policy):
    meta = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta())])
    empty = tmp_path / "r.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        read_amazon_2023(empty, meta, bad_rows=policy)
    empty_gz = tmp_path / "r.jsonl.gz"
    empty_gz.write_bytes(gzip.compress(b"\n"))
    with pytest.raises(DataError, match="empty file"):
        read_amazon_2023(empty_gz, meta, bad_rows=policy)


def test_amazon_leaves_raw_files_untouched(tmp_path):
    reviews = _write_lines(tmp_path / "r.jsonl", NASTY_REVIEWS)
    meta = _write_lines(tmp_path / "m.jsonl", METADATA)
    before = (reviews.read_bytes(), meta.read_bytes())
    read_amazon_2023(reviews, meta, bad_rows="quarantine")
    assert (reviews.read_bytes(), meta.read_bytes()) == before


def test_tabular_csv_with_column_map_and_quarantine(tmp_path):
    inter = tmp_path / "inter.csv"
    inter.write_text(
        "uid,iid,stars,ts\nu1,a,4,1588687728923\nu2,b,five,1588687728924\nu3,c,3,\n", encoding="utf-8"
    )
    items = tmp_path / "items.csv"
    items.write_text("iid,name,categories\na,Alpha,Drama|Crime\nb,Beta,\n", encoding="utf-8")
    column_map = {"user_id": "uid", "item_id": "iid", "rating": "stars", "timestamp": "ts", "title": "name"}
    raw = read_tabular(inter, items, column_map, bad_rows="quarantine")
    assert raw.interactions.schema == schemas.INTERACTIONS
    # The optional rating that does not convert is a null, counted; the missing timestamp is bad.
    assert raw.interactions.rows() == [("u1", "a", 4.0, 1588687728923, None), ("u2", "b", None, 1588687728924, None)]
    assert raw.quarantine.select("line", "field").rows() == [(4, "timestamp")]
    assert raw.accounts[0].nulled == {"rating": 1}
    assert raw.items["categories"].to_list() == [["Drama", "Crime"], []]
    with pytest.raises(DataError) as caught:
        read_tabular(inter, items, column_map)
    assert (caught.value.line, caught.value.field) == (4, "timestamp")


def test_tabular_parquet_datetimes_and_missing_items_file(tmp_path):
    path = tmp_path / "inter.parquet"
    pl.DataFrame(
        {"user": ["u1"], "item_id": ["a"], "when": pl.Series([1_000_000], dtype=pl.Datetime("ms"))}
    ).write_parquet(path)
    raw = read_tabular(path, None, {"user_id": "user", "timestamp": "when"})
    assert raw.interactions.rows() == [("u1", "a", None, 1_000_000, None)]
    assert raw.items.select("item_id", "title").rows() == [("a", "a")]
    with pytest.raises(DataError, match="no column 'user_id'") as caught:
        read_tabular(path, None, {})
    assert caught.value.field == "user_id"


# Issue 15: nothing lost quietly.


def _amazon_recipe(tmp_path: Path, reviews: list[bytes], **data) -> DataConfig:
    reviews_path = _write_lines(tmp_path / "r.jsonl", reviews)
    meta_path = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta())])
    return DataConfig(source="amazon_2023", path=str(reviews_path), items_path=str(meta_path), **data)


def test_all_bad_input_fails_with_the_counts_instead_of_an_empty_success(tmp_path):
    reviews = [_dumps(_review(user_id=f"U{n}", rating="five")) for n in range(4)]
    with pytest.raises(DataError) as caught:
        read_raw(_amazon_recipe(tmp_path, reviews, bad_rows="quarantine"))
    message = str(caught.value)
    assert "4 of 4 rows quarantined (100.0%" in message
    assert "data.max_quarantine_share 10.0%" in message and "by field: rating 4" in message


def test_quarantine_share_under_the_threshold_passes(tmp_path):
    reviews = [_dumps(_review(user_id=f"U{n}")) for n in range(3)] + [_dumps(_review(rating="five"))]
    cfg = _amazon_recipe(tmp_path, reviews, bad_rows="quarantine", max_quarantine_share=0.25)
    raw = read_raw(cfg)
    assert (raw.interactions.height, raw.quarantine.height) == (3, 1)
    with pytest.raises(DataError, match="1 of 4 rows quarantined"):
        read_raw(cfg.model_copy(update={"max_quarantine_share": 0.2}))


def test_whole_float_year_is_an_integer_and_a_bad_optional_field_nulls_only_itself(tmp_path):
    inter = tmp_path / "ratings.csv"
    inter.write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,11,5.0,964981247\n", encoding="utf-8")
    items = tmp_path / "movies.csv"
    # As pandas writes an integer column holding nulls: "1995.0"; and one year nobody can parse.
    items.write_text("movieId,title,year\n10,Toy Story,1995.0\n11,Heat,mid-90s\n12,Fargo,\n", encoding="utf-8")
    column_map = {"user_id": "userId", "item_id": "movieId"}
    raw = read_tabular(inter, items, column_map, bad_rows="quarantine")
    assert raw.items.select("item_id", "year").rows() == [("10", 1995), ("11", None), ("12", None)]
    assert raw.quarantine.height == 0
    assert raw.accounts[1].nulled == {"year": 1}  # the blank year is missing, not unparseable
    # Not a bad row under the "error" policy either: the row is usable without its year.
    assert read_tabular(inter, items, column_map).items.height == 3


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_amazon_and_tabular_read_numeric_strings_by_one_rule(tmp_path):
    reviews = _write_lines(
        tmp_path / "r.jsonl",
        [_dumps(_review(rating=" 5.0 ", timestamp="1588687728923")), _dumps(_review(user_id="U2", rating=4))],
    )
    meta = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta(average_rating="4.5"))])
    amazon = read_amazon_2023(reviews, meta)
    assert amazon.interactions.select("rating", "timestamp").rows() == [(5.0, 1588687728923), (4.0, 1588687728923)]
    assert amazon.items["average_rating"].to_list() == [4.5]
    inter = _write_csv(tmp_path / "i.csv", "user_id,item_id,rating,timestamp\nU1,P1, 5.0 ,1588687728923.0\n")
    tabular = read_tabular(inter, None, {"user_id": "user_id"})
    assert tabular.interactions.select("rating", "timestamp").rows() == [(5.0, 1588687728923)]


def test_every_line_is_accounted_for(tmp_path):
    reviews = _write_lines(tmp_path / "r.jsonl", NASTY_REVIEWS + [b"", b"   "])
    meta = _write_lines(tmp_path / "m.jsonl", METADATA + [b"", _dumps(_meta(title="Repeat"))])
    raw = read_amazon_2023(reviews, meta, bad_rows="quarantine", chunk_lines=3)
    review_account, meta_account = raw.accounts
    assert (review_account.rows, review_account.kept, review_account.quarantined) == (9, 2, 4)
    assert review_account.skipped == {"blank line": 3}
    assert (meta_account.rows, meta_account.kept, meta_account.quarantined) == (7, 5, 0)
    assert meta_account.skipped == {"blank line": 1, "repeated parent_asin (first kept)": 1}
    inter = _write_csv(tmp_path / "i.csv", "user_id,item_id,timestamp\nu1,a,1588687728923\n\nu2,b,\n")
    tabular = read_tabular(inter, None, {"user_id": "user_id"}, bad_rows="quarantine")
    assert tabular.accounts[0].skipped == {"blank line": 1}
    assert tabular.quarantine["line"].to_list() == [4]  # line numbers still count the blank line


def test_an_account_that_does_not_add_up_is_refused():
    with pytest.raises(ValueError, match="3 rows accounted for, 4 read"):
        InputAccount(file="f", rows=4, kept=2, quarantined=1)


def test_an_optional_amazon_field_of_the_wrong_type_nulls_only_itself(tmp_path):
    reviews = _write_lines(tmp_path / "r.jsonl", [_dumps(_review(title=["not", "text"])), b"{oops"])
    meta = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta())])
    raw = read_amazon_2023(reviews, meta, bad_rows="quarantine")
    assert raw.interactions["review"].to_list() == ["Loved it"]
    assert raw.accounts[0].nulled == {"title": 1}


def test_missing_metadata_is_reported_before_the_reviews_are_read(tmp_path):
    unreadable = tmp_path / "r.jsonl.gz"
    unreadable.write_bytes(b"not gzip at all")  # reading it first would fail on this instead
    with pytest.raises(DataError) as caught:
        read_amazon_2023(unreadable, tmp_path / "missing_meta.jsonl")
    assert caught.value.path == tmp_path / "missing_meta.jsonl"
    assert caught.value.message == "file not found"


def test_malformed_json_message_reads_once(tmp_path):
    reviews = _write_lines(tmp_path / "r.jsonl", [_dumps(_review()), b'{"user_id": "U2'])
    meta = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta())])
    raw = read_amazon_2023(reviews, meta, bad_rows="quarantine")
    assert raw.quarantine["reason"].to_list() == ["malformed JSON: Unterminated string starting at column 13"]


def test_timestamps_in_seconds_are_detected_and_counted(tmp_path):
    reviews = _write_lines(
        tmp_path / "r.jsonl", [_dumps(_review(timestamp=1588687728)), _dumps(_review(user_id="U2"))]
    )
    meta = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta())])
    raw = read_amazon_2023(reviews, meta)
    assert raw.interactions["timestamp"].to_list() == [1588687728000, 1588687728923]
    assert raw.accounts[0].timestamp_units == {"seconds": 1}
    inter = _write_csv(tmp_path / "i.csv", "user_id,item_id,timestamp\nu1,a,964982703\n")
    assert read_tabular(inter, None, {"user_id": "user_id"}).interactions["timestamp"].to_list() == [964982703000]


# Issue 31: nothing lost quietly, round two.


def _tabular_recipe(tmp_path: Path, ratings: str, items: str | None = None, **data) -> DataConfig:
    inter = _write_csv(tmp_path / "ratings.csv", ratings)
    items_path = str(_write_csv(tmp_path / "movies.csv", items)) if items is not None else None
    column_map = {"user_id": "userId", "item_id": "movieId"}
    return DataConfig(source="tabular", path=str(inter), items_path=items_path, column_map=column_map, **data)


DECIMAL_COMMA_RATINGS = 'userId,movieId,rating,timestamp\n1,10,"2,5",964982703\n1,11,"4,0",964981247\n'


def test_a_column_that_mostly_fails_to_convert_fails_with_an_example_and_the_fix(tmp_path):
    """Issue 31.1: decimal-comma ratings all became null, and the run succeeded."""
    with pytest.raises(DataError) as caught:
        read_raw(_tabular_recipe(tmp_path, DECIMAL_COMMA_RATINGS))
    assert caught.value.field == "rating"
    message = str(caught.value)
    assert "2 of 2 values did not convert" in message and "e.g. '2,5'" in message
    assert "decimal comma" in message and "data.decimal_comma: true" in message
    raw = read_raw(_tabular_recipe(tmp_path, DECIMAL_COMMA_RATINGS, decimal_comma=True))
    assert raw.interactions["rating"].to_list() == [2.5, 4.0]


def test_a_year_in_parentheses_fails_with_the_column_and_an_example(tmp_path):
    """Issue 31.1: a year written "(1995.0)" gave 9,061 nulls and a successful run."""
    ratings = "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n"
    items = "movieId,title,year\n10,Toy Story,(1995.0)\n11,Heat,(1995.0)\n12,Fargo,1996\n"
    with pytest.raises(DataError) as caught:
        read_raw(_tabular_recipe(tmp_path, ratings, items))
    assert caught.value.field == "year" and caught.value.path == str(tmp_path / "movies.csv")
    assert "2 of 3 values did not convert" in str(caught.value) and "e.g. '(1995.0)'" in str(caught.value)
    assert "data.column_map" in str(caught.value)
    # One odd value in a file is still read as null and counted, under the threshold.
    raw = read_raw(_tabular_recipe(tmp_path, ratings, items, max_quarantine_share=0.7))
    assert raw.accounts[1].nulled == {"year": 2} and raw.accounts[1].null_examples == {"year": "(1995.0)"}


def test_a_byte_order_mark_opening_a_json_lines_file_costs_no_line(tmp_path):
    """Issue 31.2: the first line was quarantined as "Unexpected UTF-8 BOM"."""
    reviews = _write_lines(
        tmp_path / "r.jsonl.gz", [b"\xef\xbb\xbf" + _dumps(_review()), _dumps(_review(user_id="U2"))]
    )
    meta = _write_lines(tmp_path / "m.jsonl", [b"\xef\xbb\xbf" + _dumps(_meta())])
    for chunk_lines in (1, 200_000):  # the careful path and the fast path
        raw = read_amazon_2023(reviews, meta, bad_rows="quarantine", chunk_lines=chunk_lines)
        assert raw.quarantine.height == 0
        assert raw.interactions["user_id"].to_list() == ["U1", "U2"] and raw.items["item_id"].to_list() == ["P1"]


def test_microsecond_and_nanosecond_timestamps_are_told_by_magnitude_and_counted(tmp_path):
    """Issue 31.3: microseconds were read as milliseconds (the year 49503), uncounted."""
    ms = 1588687728923
    reviews = _write_lines(
        tmp_path / "r.jsonl",
        [_dumps(_review(timestamp=ms * 1000 + 999)), _dumps(_review(timestamp=ms * 10**6 + 5)), _dumps(_review())],
    )
    meta = _write_lines(tmp_path / "m.jsonl", [_dumps(_meta())])
    raw = read_amazon_2023(reviews, meta)
    assert raw.interactions["timestamp"].to_list() == [ms, ms, ms]
    assert raw.accounts[0].timestamp_units == {"microseconds": 1, "nanoseconds": 1}
    inter = _write_csv(tmp_path / "i.csv", f"user_id,item_id,timestamp\nu1,a,{ms * 1000}\nu1,b,964982703\n")
    tabular = read_tabular(inter, None, {})
    assert tabular.interactions["timestamp"].to_list() == [ms, 964982703000]
    assert tabular.accounts[0].timestamp_units == {"seconds": 1, "microseconds": 1}


def test_text_dates_in_a_csv_timestamp_column_are_read(tmp_path):
    """Issue 31.6: "2016-10-16 17:57:24" was rejected as a bad row, though the README accepts dates."""
    inter = _write_csv(
        tmp_path / "i.csv",
        "user_id,item_id,timestamp\n"
        "u1,a,2016-10-16 17:57:24\nu1,b,2016-10-16T17:57:24.5\nu1,c,2016-10-16T19:57:24+02:00\n"
        "u1,d,2016-10-16\nu2,e,16/10/2016\n",
    )
    raw = read_tabular(inter, None, {}, bad_rows="quarantine")
    at = 1476640644000  # 2016-10-16 17:57:24 UTC
    assert raw.interactions["timestamp"].to_list() == [at, at + 500, at, 1476576000000]
    # A date in another form is a bad row whose reason says which forms are read.
    assert raw.quarantine.select("line", "field").rows() == [(6, "timestamp")]
    assert "2016-10-16 17:57:24" in raw.quarantine["reason"][0]
    assert raw.accounts[0].timestamp_units == {}  # dates are never taken for seconds


def test_a_csv_read_with_the_wrong_separator_lists_the_columns_and_the_likely_separator(tmp_path):
    """Issue 31.7: only "no column 'userId'", without the columns found."""
    text = "userId;movieId;rating;timestamp\n1;10;4.5;964982703\n"
    with pytest.raises(DataError) as caught:
        read_raw(_tabular_recipe(tmp_path, text))
    message = str(caught.value)
    assert "columns found: 'userId;movieId;rating;timestamp'" in message
    assert "one column holding ';' separators" in message and "data.csv_separator" in message
    raw = read_raw(_tabular_recipe(tmp_path, text, csv_separator=";"))
    assert raw.interactions.select("user_id", "rating").rows() == [("1", 4.5)]
    inter = _write_csv(tmp_path / "two.csv", "user,item_id,timestamp\nu1,a,964982703\n")
    with pytest.raises(DataError, match="columns found: 'user', 'item_id', 'timestamp'$"):
        read_tabular(inter, None, {})
