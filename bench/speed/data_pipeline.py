"""Throughput of the data layer: read, clean and split, in rows/s, with peak memory.

Runs on MovieLens-100K (when data/raw/ml-100k is fetched) and on a synthetic Amazon Reviews 2023
dump (reviews + metadata, .jsonl.gz) generated into a temporary folder. Default 500k reviews;
`--rows 5000000` is the full-size case. The machine is shared, so figures are noisy.

    python bench/speed/data_pipeline.py [--rows N] [--chunk-lines N]
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from lpt_core.config import DataConfig, SplitConfig
from lpt_core.data.cleaning import clean
from lpt_core.data.readers import RawData
from lpt_core.data.readers.amazon import read_amazon_2023
from lpt_core.data.readers.movielens import read_movielens_100k
from lpt_core.data.splitting import split_users
from lpt_core.paths import raw_data_dir

SENTENCES = [
    "A gripping story with fine acting.",
    "Too long, and the ending fell flat for me.",
    "My kids watched it three times in a row.",
    "The picture quality of this edition is excellent.",
    "Not what I expected from the trailer, but still good.",
    "Classic film, a must for any collection.",
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(label: str, rows: int, step: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    rate = rows / seconds
    print(f"  {label:<6} {seconds:8.2f} s  {rate:>12,.0f} rows/s  peak RSS {peak_rss_mib():8.0f} MiB")
    return result


def synthetic_paths(folder: Path) -> tuple[Path, Path]:
    return folder / "Movies_and_TV.jsonl.gz", folder / "meta_Movies_and_TV.jsonl.gz"


def write_synthetic_amazon(folder: Path, n_reviews: int, seed: int = 0) -> None:
    """Reviews with Zipf-like item popularity and about 10 reviews per user, plus their metadata."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n_reviews // 10, 1), max(n_reviews // 25, 1)
    items = np.minimum(rng.zipf(1.3, n_reviews) - 1, n_items - 1)
    sentences = np.array(SENTENCES)
    reviews = pl.DataFrame(
        {
            "rating": rng.integers(1, 6, n_reviews).astype(float),
            "title": sentences[rng.integers(0, len(SENTENCES), n_reviews)],
            "text": sentences[rng.integers(0, len(SENTENCES), n_reviews)],
            "images": [[]] * n_reviews,
            "asin": [f"B{i:09d}" for i in items],
            "parent_asin": [f"P{i:09d}" for i in items],
            "user_id": [f"U{u:027d}" for u in rng.integers(0, n_users, n_reviews)],
            "timestamp": rng.integers(1_300_000_000_000, 1_700_000_000_000, n_reviews),
            "helpful_vote": rng.integers(0, 20, n_reviews),
            "verified_purchase": rng.random(n_reviews) < 0.8,
        }
    )
    metadata = pl.DataFrame(
        {
            "main_category": ["Movies & TV"] * n_items,
            "title": [f"Film number {i}" for i in range(n_items)],
            "average_rating": rng.uniform(1, 5, n_items).round(1),
            "description": [[SENTENCES[i % len(SENTENCES)], "Region 1 DVD."] for i in range(n_items)],
            "price": [f"${i % 40}.99" if i % 3 else None for i in range(n_items)],
            "categories": [["Movies & TV", "Drama"]] * n_items,
            "parent_asin": [f"P{i:09d}" for i in range(n_items)],
        }
    )
    for frame, path in zip((reviews, metadata), synthetic_paths(folder)):
        with gzip.open(path, "wb", compresslevel=1) as stream:
            frame.write_ndjson(stream)


def run_pipeline(name: str, read: Callable[[], RawData], rows_hint: int) -> None:
    print(f"{name}")
    raw = timed("read", rows_hint, read)
    rows = raw.interactions.height
    interactions, _, report = timed("clean", rows, lambda: clean(raw, DataConfig()))
    split = timed("split", interactions.height, lambda: split_users(interactions, SplitConfig()))
    stats = split.stats()["splits"]
    print(
        f"  {rows:,} rows -> {interactions.height:,} after cleaning; "
        + ", ".join(f"{k} {v['users']:,} users" for k, v in stats.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="synthetic reviews (5M: full case)")
    parser.add_argument("--chunk-lines", type=int, default=200_000)
    args = parser.parse_args()

    print(f"peak RSS at start: {peak_rss_mib():.0f} MiB")
    movielens = raw_data_dir() / "ml-100k"
    if (movielens / "ml-100k.inter").is_file():
        run_pipeline("MovieLens-100K", lambda: read_movielens_100k(movielens), 100_000)
    else:
        print(f"MovieLens-100K: skipped ({movielens} not fetched)")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        # Generated in a child process, so that its memory does not count in this one's peak RSS.
        generator = multiprocessing.get_context("spawn").Process(
            target=write_synthetic_amazon, args=(Path(tmp), args.rows)
        )
        generator.start()
        generator.join()
        reviews, metadata = synthetic_paths(Path(tmp))
        size_mib = reviews.stat().st_size / 2**20
        print(f"synthetic Amazon 2023: {args.rows:,} reviews, {size_mib:.0f} MiB gzipped "
              f"(generated in {time.perf_counter() - start:.1f} s)")
        run_pipeline(
            f"Amazon 2023 reader (chunk_lines={args.chunk_lines:,})",
            lambda: read_amazon_2023(reviews, metadata, chunk_lines=args.chunk_lines),
            args.rows,
        )


if __name__ == "__main__":
    main()
