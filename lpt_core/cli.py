"""`lpt`: the few commands that are not Dagster runs (set-up fetch, printing results, checking a
recipe before a run, training one variant on several GPUs, the profile page)."""

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

    outputs = paths.Outputs.default()
    examples_file = outputs.table("user_examples")
    report_file = outputs.folder("evaluation_report") / "report.md"
    if not examples_file.is_file():
        print(f"no materialised user_examples under {outputs.root}: run `make demo` first", file=sys.stderr)
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
    stats_file = outputs.folder("evaluation_report") / "report.json"
    if stats_file.is_file():
        print(f"all numbers: {stats_file}")
        json.loads(stats_file.read_text(encoding="utf-8"))  # fail loudly on a torn file
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train one variant from the materialised split, as the Dagster asset does (the same training
    data and the same checkpoint folder, so a later materialisation picks the finished run up).
    Launched by `accelerate launch` or `torchrun`, every process runs this and they train together."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from lpt_core.config import load_recipe
    from lpt_core.training import distributed
    from lpt_core.training.alternation import train_variant
    from lpt_core.training.launch import ProgressLines

    distributed.init_process_group()
    _tag_log_lines_with_rank(distributed.rank(), distributed.world_size())
    recipe = load_recipe(args.recipe)
    outputs = paths.Outputs(Path(args.outputs)) if args.outputs else paths.Outputs.default()
    data = _materialised_training_data(recipe, outputs)
    if data is None:
        return 1
    checkpoints = Path(args.root) if args.root else None
    progress = ProgressLines() if args.progress == "json" else None
    result = train_variant(recipe, args.variant, data, outputs, callbacks=progress, checkpoints=checkpoints)
    if distributed.is_main():
        summary = {"checkpoint": str(result.checkpoint), "resumed_from": result.resumed_from,
                   "processes": distributed.world_size(), "last_phase": result.history[-1]}
        if progress is None:
            print(json.dumps(summary, indent=2, default=str))
        else:
            progress.result(summary)
    return 0


def _tag_log_lines_with_rank(rank: int, processes: int) -> None:
    """Under a launcher every process logs to the same console: each line says whose it is."""
    if processes > 1:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s rank {rank}/{processes} %(name)s: %(message)s"))


def _materialised_training_data(recipe: Recipe, outputs: paths.Outputs) -> TrainingData | None:
    """The training data from the split tables stored under `outputs`; None (after saying what is
    missing) when they are not materialised."""
    import polars as pl

    from lpt_core.training.alternation import TrainingData

    files = {name: outputs.table(name) for name in ("user_examples", "cleaned_items", "item_catalog", "cleaned_histories")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        print(f"not materialised: {', '.join(missing)}: run the data assets (`make demo`) first", file=sys.stderr)
        return None
    tables = {name: pl.read_parquet(path) for name, path in files.items()}
    return TrainingData.from_tables(
        tables["user_examples"], tables["cleaned_items"], tables["item_catalog"], tables["cleaned_histories"], recipe
    )


def _check_recipe(args: argparse.Namespace) -> int:
    """Validate a recipe and check what it names (paths, chat template, prompt lengths) on this
    machine, without a GPU: lpt_core.recipe_checks."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from lpt_core.config import RecipeError, load_recipe, read_yaml
    from lpt_core.recipe_checks import check_recipe

    try:
        overrides = read_yaml(args.overrides) if args.overrides else {}
        if not isinstance(overrides, dict):
            raise RecipeError(f"--overrides must be a YAML mapping, got: {args.overrides!r}")
        recipe = load_recipe(args.recipe, overrides)
    except RecipeError as exc:
        print(exc, file=sys.stderr)
        return 1
    check = check_recipe(recipe, read_data=args.data)
    print(check.to_text())
    return 0 if check.ok else 1


def _profile_page(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from lpt_core.serving.profile_page import serve

    serve(args.host, args.port, args.tracking_uri, args.model_name, args.alias, args.version)
    return 0


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
    train.add_argument("--outputs", help="the outputs folder to read the split from and train in (default: $LPT_HOME/outputs)")
    train.add_argument("--progress", choices=("log", "json"), default="log",
                       help="json: progress as marked JSON lines on stdout, for the launching process (lpt_core.training.launch)")
    train.set_defaults(run=_train)
    check = commands.add_parser(
        "check-recipe", help="validate a recipe and check its paths, chat template and prompt lengths (no GPU)"
    )
    check.add_argument("recipe", help="recipe name (configs/NAME.yaml) or path")
    check.add_argument("--overrides", help='YAML merged over the recipe, e.g. "models: {generator: /models/gemma-2b-it}"')
    check.add_argument("--data", action="store_true",
                       help="also read, clean and split the data and measure every prompt (minutes on a full dump)")
    check.set_defaults(run=_check_recipe)
    _add_profile_page_command(commands)
    args = parser.parse_args(argv)
    return args.run(args)


def _add_profile_page_command(commands: argparse._SubParsersAction) -> None:
    from lpt_core.serving import registry
    from lpt_core.serving.profile_page import DEFAULT_HOST, DEFAULT_PORT

    page = commands.add_parser(
        "profile-page", help="serve the page where a person edits a profile and watches the recommendations change"
    )
    page.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: loopback only)")
    page.add_argument("--port", type=int, default=DEFAULT_PORT)
    page.add_argument("--tracking-uri", help="MLflow store holding the registry (default: the work folder's)")
    page.add_argument("--model-name", default=registry.MODEL_NAME)
    which = page.add_mutually_exclusive_group()
    which.add_argument("--alias", default=registry.CHAMPION, help="registry alias to load (default: champion)")
    which.add_argument("--version", help="registered version to load instead of an alias")
    page.set_defaults(run=_profile_page)


if __name__ == "__main__":
    sys.exit(main())
