"""Zero-shot profile quality by prompt and decoding, on the RL sweep's yardstick: which way of asking
the untrained writer gives profiles that rank their user's items best?

Every RL variant starts from the zero-shot writer and best-of-n can only select among what it
samples, so the writer's own profiles bound what training has to work with. Same yardstick as
bench/studies/rl_sweep.py and best_of_n_sweep.py (the frozen base all-MiniLM-L6-v2 recommender, greedy
profiles of --probe train users, NDCG with no cutoff of the next item and of the held-out later
targets), for each setting name:repetition_penalty[:max_new_tokens], where name is one of PROMPTS
(the recipe's own prompt, or one that asks for the genres and themes the item texts are made of)
and max_new_tokens defaults to the recipe's training.rl.sampling.max_new_tokens. Each setting gives two
rows from one generation: the raw profiles (generation.finish_profiles off) and the same profiles
finished (lpt_core.generation.finishing: loops cut, trimmed to the last complete sentence), with
the shares that end a sentence and that loop. Beside them, the no-LLM floor and reference on the
same users: no profile at all (an empty query) and the raw history text as the query. Changes are
against the first row, with paired user-bootstrap 95% intervals. Writes
bench/results/prompt_sweep_<dtype><--suffix>.md and the .json beside it.

    python bench/studies/prompt_sweep.py [--recipe full] [--settings recipe:1.0,genres:1.0,recipe:1.0:96] [--probe 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import polars as pl
import torch
from rl_sweep import (
    PROBE_KEYS,
    RESULTS,
    SweepSetup,
    Yardstick,
    _cpu_flags,
    _first_window_prompts,
    _first_windows,
    _held_out,
    change_cell,
    command_line,
    paired_change,
    yardstick_arguments,
)

from lpt_core import text
from lpt_core.config import PromptConfig
from lpt_core.generation.base import GeneratedProfile, finished_profile
from lpt_core.profile_quality.copying import copy_share
from lpt_core.profile_quality.readability import distinct_trigram_ratio, is_finished, is_looping
from lpt_core.training.rl import probe_set

# Prompt overrides over the recipe's (None: the recipe's prompt as it is).
PROMPTS: dict[str, dict | None] = {
    "recipe": None,
    # The item side embeds "Title (year)" and "Category: Drama, War": a profile that names genres,
    # themes and eras speaks its language; titles stay forbidden (a 135M model copies them in
    # blocks). Likes only: a sentence embedding reads "avoids horror" as close to horror.
    "genres": {
        "system": "You are a recommender-system assistant. You write a short profile of a user's taste in "
                  "movies: the genres, themes, moods and eras they enjoy. Write flowing prose; do not list "
                  "the movies.",
        "instruction": "Above are movies the user rated (out of 5), oldest first. Describe this user's movie "
                       "preferences in 3-4 sentences, naming the genres and kinds of movies they enjoy most.",
    },
    # The head learns item-to-item structure from the titles in a history text: a profile that names
    # the films the user liked most might carry that identity into the query (it did not help the
    # head: bench/results/prompt_head_full.md).
    "titles": {
        "system": "You are a recommender-system assistant. You write a short profile of a user's taste in "
                  "movies. Write flowing prose: name the two or three films they liked most, by title, and "
                  "say what the movies they like have in common.",
        "instruction": "Above are movies the user rated (out of 5), oldest first. Describe this user's movie "
                       "preferences in 3-4 sentences.",
    },
}


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    bench = SweepSetup.build(args.recipe, args.dtype, args.probe, args.held_out_from)
    rl = bench.recipe.training.rl
    policy, tokenizer = bench.fresh_policy(rl)
    rows: list[dict] = []
    base: dict[str, np.ndarray] | None = None
    for setting in args.settings.split(","):
        name, penalty, max_new_tokens = _setting(setting, rl.sampling.max_new_tokens)
        yardstick, histories = _yardstick(bench, name, args)
        started = time.perf_counter()
        raw = yardstick.generated(policy, tokenizer, max_new_tokens, penalty, finish=False)
        seconds = time.perf_counter() - started
        titles = text.history_titles(histories, bench.catalog)
        for label, generated in ((f"{setting} raw", raw), (f"{setting} finished", [finished_profile(p) for p in raw])):
            profiles = [profile.text for profile in generated]
            scores = yardstick.per_text(profiles)
            if base is None:
                base = scores
                references = _references(yardstick, histories, bench.catalog)
            rows.append(_row(label, scores, base, args.seed, generated, titles, seconds))
            print(json.dumps(rows[-1]), flush=True)
        _write(args, rows, references, bench.dtype, base)


def _setting(setting: str, recipe_max_new_tokens: int) -> tuple[str, float, int]:
    fields = setting.split(":")
    if len(fields) not in (2, 3) or fields[0] not in PROMPTS:
        raise SystemExit(f"setting {setting!r}: expected name:repetition_penalty[:max_new_tokens], "
                         f"name one of {sorted(PROMPTS)}")
    return fields[0], float(fields[1]), int(fields[2]) if len(fields) == 3 else recipe_max_new_tokens


def _yardstick(bench: SweepSetup, name: str, args: argparse.Namespace) -> tuple[Yardstick, pl.DataFrame]:
    """The yardstick with the named prompt (same probe users and targets for every prompt: the
    probe is picked by position), and the probe users' first-window rows in probe order."""
    override = PROMPTS[name]
    prompt = PromptConfig.model_validate(bench.recipe.prompt.model_dump() | (override or {}))
    recipe = bench.recipe.model_copy(update={"prompt": prompt})
    rows = _first_window_prompts(bench.rows.drop("prompt"), bench.catalog, recipe)
    yardstick = Yardstick(probe_set(_first_windows(rows, 1), args.probe), _held_out(rows, args.held_out_from),
                          bench.yardstick.ndcg)
    order = pl.DataFrame({"prompt": [example.prompt for example in yardstick.probe]})
    return yardstick, order.join(rows.filter(pl.col("window") == 0), on="prompt", how="left", maintain_order="left")


def _references(yardstick: Yardstick, histories: pl.DataFrame, catalog: pl.DataFrame) -> dict[str, dict]:
    """The no-LLM rows: an empty query (the encoder's bias: a floor) and the raw history lines."""
    lines = text.history_texts(histories, catalog, "lines")
    return {name: {key: float(values.mean()) for key, values in yardstick.per_text(queries).items()}
            for name, queries in (("empty query (no profile)", [""] * len(lines)), ("raw history lines (no LLM)", lines))}


def _row(setting: str, scores: dict, base: dict, seed: int, generated: list[GeneratedProfile],
         titles: list[list[str]], seconds: float) -> dict:
    profiles = [profile.text for profile in generated]
    return {
        "setting": setting, **paired_change(base, scores, seed), "seconds": seconds,
        "words": float(np.mean([len(profile.split()) for profile in profiles])),
        "distinct_trigrams": float(np.mean([distinct_trigram_ratio(profile) for profile in profiles])),
        "finished": float(np.mean([is_finished(profile.text, profile.finished) for profile in generated])),
        "looping": float(np.mean([is_looping(profile) for profile in profiles])),
        "copy_share": copy_share(profiles, titles),
        "examples": profiles[:3],
    }


def _table(rows: list[dict], references: dict[str, dict]) -> str:
    lines = [
        "| setting (prompt:repetition penalty[:max new tokens]) | next-item NDCG, change [95%] "
        "| held-out NDCG, change [95%] | words | distinct trigrams | finished | loops | copies history | s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = [change_cell(row, key) for key in PROBE_KEYS]
        # Older result files have no finished/looping shares.
        shares = " | ".join(f"{row[key]:.0%}" if key in row else "" for key in ("finished", "looping"))
        lines.append(f"| {row['setting']} | {cells[0]} | {cells[1]} | {row['words']:.1f} "
                     f"| {row['distinct_trigrams']:.2f} | {shares} | {row['copy_share']:.0%} | {row['seconds']:.0f} |")
    for name, scores in references.items():
        lines.append(f"| {name} | {scores[PROBE_KEYS[0]]:.4f} | {scores[PROBE_KEYS[1]]:.4f} | | | | | | |")
    return "\n".join(lines)


def _write(args: argparse.Namespace, rows: list[dict], references: dict, dtype: str, base: dict) -> None:
    command = command_line("prompt_sweep.py", args)
    examples = [f"- {row['setting']}: " + " | ".join(repr(p) for p in row["examples"]) for row in rows]
    text_ = "\n".join([
        "# Zero-shot profiles by prompt and decoding, on the RL sweep's yardstick (frozen base recommender)", "",
        f"`{command}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, CPU flags: {_cpu_flags()}; "
        f"model dtype {dtype}. Greedy profiles (max_new_tokens: the setting's, else the {args.recipe} recipe's) of "
        f"{len(base[PROBE_KEYS[0]])} train users' first windows, scored by the base all-MiniLM-L6-v2 over the "
        "whole catalogue (NDCG, no cutoff): the next item, and the mean over the user's held-out targets of "
        f"windows {args.held_out_from}+. Changes are against the first row on the same users, paired "
        "user-bootstrap 95% intervals. Prompts: bench/studies/prompt_sweep.py PROMPTS. Raw: generation.finish_profiles "
        "off; finished: the same profiles finished (lpt_core.generation.finishing). Finished (column): ended its "
        "turn or ends a sentence, the quality report's finished share; loops: fewer than 70% of its word trigrams "
        "distinct.",
        "", _table(rows, references), "", "First three probe profiles per setting:", "", *examples, "",
    ])
    name = f"prompt_sweep_{dtype}{args.suffix}"
    (RESULTS / f"{name}.md").write_text(text_, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps({"rows": rows, "references": references}, indent=1), encoding="utf-8")
    print(f"wrote {RESULTS / f'{name}.md'}")


def _arguments() -> argparse.Namespace:
    parser = yardstick_arguments(__doc__.splitlines()[0], probe=256)
    parser.add_argument("--settings", default="recipe:1.0,recipe:1.2,genres:1.0,genres:1.2")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's")
    return parser.parse_args()


if __name__ == "__main__":
    main()
