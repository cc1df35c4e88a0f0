"""`lpt`: the few commands that are not Dagster runs (set-up fetch, printing results)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from lpt_core import paths


def _fetch(_: argparse.Namespace) -> int:
    from lpt_core.fetch import fetch_defaults

    for name, folder in fetch_defaults().items():
        print(f"{name:>24}: {folder}")
    return 0


def _summary(_: argparse.Namespace) -> int:
    """Print the split statistics and the evaluation table of the last materialisation."""
    import polars as pl

    outputs = paths.outputs_dir()
    examples_file = outputs / "user_examples.parquet"
    report_file = outputs / "evaluation_report" / "report.md"
    if not examples_file.is_file():
        print(f"no materialised user_examples under {outputs}: run `make demo` first", file=sys.stderr)
        return 1
    examples = pl.read_parquet(examples_file)
    counts = examples.group_by("split").agg(
        pl.col("user_id").n_unique().alias("users"), pl.len().alias("examples")
    ).sort("split")
    print("Split statistics (user_examples):")
    print(counts)
    if report_file.is_file():
        print(report_file.read_text(encoding="utf-8"))
    else:
        print(f"(no evaluation report yet at {report_file})")
    stats_file = outputs / "evaluation_report" / "report.json"
    if stats_file.is_file():
        print(f"all numbers: {stats_file}")
        json.loads(stats_file.read_text(encoding="utf-8"))  # fail loudly on a torn file
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="lpt", description=__doc__)
    commands = parser.add_subparsers(required=True)
    commands.add_parser("fetch", help="fetch the default data and models (idempotent)").set_defaults(run=_fetch)
    commands.add_parser("summary", help="print split statistics and the evaluation report").set_defaults(run=_summary)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
