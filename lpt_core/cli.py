"""`lpt`: the few commands that are not Dagster runs (set-up fetch, printing results, training
one variant on several GPUs)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lpt_core import paths

if TYPE_CHECKING:
    from lpt_core.config import Recipe
    from lpt_core.training.alternation import TrainingData


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


def _train(args: argparse.Namespace) -> int:
    """Train one variant from the materialised split, as the Dagster asset would, into the same
    checkpoint folder (so a later materialisation picks the finished run up). Launched by
    `accelerate launch` or `torchrun`, every process runs this and they train together."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from lpt_core.config import load_recipe
    from lpt_core.training import distributed
    from lpt_core.training.alternation import train_alternating
    from lpt_core.training.variants import get_variant

    distributed.init_process_group()
    recipe = load_recipe(args.recipe)
    variant = get_variant(args.variant)
    data = _materialised_training_data(recipe)
    if data is None:
        return 1
    root = Path(args.root) if args.root else paths.outputs_dir() / "training" / args.variant
    result = train_alternating(
        variant.recipe_for(recipe), variant.schedule, data, root,
        profile_store=paths.outputs_dir() / "profile_store.parquet",
    )
    if distributed.is_main():
        print(json.dumps({"checkpoint": str(result.checkpoint), "resumed_from": result.resumed_from,
                          "processes": distributed.world_size(), "last_phase": result.history[-1]},
                         indent=2, default=str))
    return 0


def _materialised_training_data(recipe: Recipe) -> TrainingData | None:
    """TrainingData from the split assets stored under outputs/, with the recipe's prompts; None
    (after saying what is missing) when they are not materialised."""
    import polars as pl

    from lpt_core import text
    from lpt_core.models import load_tokenizer
    from lpt_core.training.alternation import TrainingData

    outputs = paths.outputs_dir()
    files = {name: outputs / f"{name}.parquet" for name in ("user_examples", "cleaned_items", "item_catalog")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        print(f"not materialised: {', '.join(missing)}: run the data assets (`make demo`) first", file=sys.stderr)
        return None
    examples, items = pl.read_parquet(files["user_examples"]), pl.read_parquet(files["cleaned_items"])
    tokenizer = load_tokenizer(recipe.models.generator)

    def with_prompts(split: str) -> pl.DataFrame:
        rows = examples.filter(pl.col("split") == split)
        prompts = text.build_prompts(rows, items, tokenizer, recipe.prompt, recipe.data.source)
        return rows.with_columns(pl.Series("prompt", prompts, dtype=pl.String))

    catalog = pl.read_parquet(files["item_catalog"])
    return TrainingData(train=with_prompts("train"), val=with_prompts("val"), catalog=catalog)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="lpt", description=__doc__)
    commands = parser.add_subparsers(required=True)
    commands.add_parser("fetch", help="fetch the default data and models (idempotent)").set_defaults(run=_fetch)
    commands.add_parser("summary", help="print split statistics and the evaluation report").set_defaults(run=_summary)
    train = commands.add_parser(
        "train", help="train one variant (multi-process under `accelerate launch` / `torchrun`)"
    )
    train.add_argument("--recipe", default="quick", help="recipe name (configs/NAME.yaml) or path")
    train.add_argument("--variant", default="langptune_rebel", help="a variant of lpt_core.training.variants")
    train.add_argument("--root", help="checkpoint folder (default: outputs/training/VARIANT, as Dagster)")
    train.set_defaults(run=_train)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
