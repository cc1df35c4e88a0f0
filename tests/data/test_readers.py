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
from lpt_core.data.readers import QUARANTINE, read_raw
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
    inter.write_text("uid,iid,stars,ts\nu1,a,4,1000\nu2,b,five,2000\nu3,c,3,\n", encoding="utf-8")
    items = tmp_path / "items.csv"
    items.write_text("iid,name,categories\na,Alpha,Drama|Crime\nb,Beta,\n", encoding="utf-8")
    column_map = {"user_id": "uid", "item_id": "iid", "rating": "stars", "timestamp": "ts", "title": "name"}
    raw = read_tabular(inter, items, column_map, bad_rows="quarantine")
    assert raw.interactions.schema == schemas.INTERACTIONS
    assert raw.interactions.rows() == [("u1", "a", 4.0, 1000, None)]
    assert raw.quarantine.select("line", "field").rows() == [(3, "rating"), (4, "timestamp")]
    assert raw.items["categories"].to_list() == [["Drama", "Crime"], []]
    with pytest.raises(DataError) as caught:
        read_tabular(inter, items, column_map)
    assert (caught.value.line, caught.value.field) == (3, "rating")


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
