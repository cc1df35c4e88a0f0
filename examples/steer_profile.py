"""Steer a recommendation by editing the user's profile: history -> profile -> edits -> new ranking.

The served model writes a profile from the history and ranks the catalogue against it; the same
model then ranks the edited profile (the history's items still left out). The table shows how the
top-k moved.

    MLFLOW_TRACKING_URI=sqlite:///.lpt/mlflow/mlflow.db .venv/bin/python examples/steer_profile.py \\
        --history 1,50,172,181 --edit "remove: sci-fi" --edit "add: Loves dark psychological thrillers."

--model takes any MLflow model URI (models:/langptune@champion by default, or a local folder).
"""

from __future__ import annotations

import argparse
import os

import pandas as pd

from lpt_core.serving.steering import edit_profile
from lpt_core.tracking import default_tracking_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models:/langptune@champion", help="MLflow model URI")
    parser.add_argument("--history", required=True, help="comma-separated item ids, oldest first")
    parser.add_argument("--ratings", help="comma-separated ratings, one per history item")
    parser.add_argument("--edit", action="append", help='"add: <text>" or "remove: <term>" (repeatable)')
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_TRACKING_URI", default_tracking_uri())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(args.model)
    history = args.history.split(",")
    ratings = [float(r) for r in args.ratings.split(",")] if args.ratings else None
    edits = args.edit or ["add: Loves documentaries about nature and history."]

    before = model.predict(pd.DataFrame({"history_item_ids": [history], "history_ratings": [ratings], "k": [args.k]}))
    profile = before["profile"][0]
    edited = edit_profile(profile, edits)
    after = model.predict(pd.DataFrame({"history_item_ids": [history], "profile": [edited], "k": [args.k]}))

    print(f"profile written from the history:\n  {profile}\n")
    print(f"edits: {edits}\nedited profile:\n  {edited}\n")
    print(ranking_table(before.iloc[0], after.iloc[0]))


def ranking_table(before: pd.Series, after: pd.Series) -> str:
    """Side-by-side top-k, each new item marked with where it was before ("new" if absent)."""
    old_rank = {item: rank for rank, item in enumerate(before["item_ids"], start=1)}
    lines = [f"{'rank':>4}  {'before':<40}  {'after':<40}  move", "-" * 96]
    rows = zip(before["titles"], after["item_ids"], after["titles"], strict=True)
    for rank, (old_title, item, new_title) in enumerate(rows, start=1):
        previous = old_rank.get(item)
        move = "new" if previous is None else f"{previous - rank:+d}" if previous != rank else "="
        lines.append(f"{rank:>4}  {old_title[:40]:<40}  {new_title[:40]:<40}  {move}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
