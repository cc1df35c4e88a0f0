"""Finished and looping shares of zero-shot test profiles, before and after finishing, by token cap.

The profiles are the recipe's greedy zero-shot profiles of its test examples (the quick recipe's
test users; a seeded sample of the full recipe's test windows). Greedy decoding is the same
prefix whatever the cap, so one generation at the largest cap gives every smaller cap's profile:
the first `cap` generated tokens, read by the same lpt_core.generation.base.profile_from_tokens
that both backends use. The generated token ids are kept under .lpt/bench (a rerun reads them).

    python bench/profile_finishing.py [--recipes quick,full] [--full-windows 150] [--caps 64,96,128]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import polars as pl
import torch
from rl_sweep import RESULTS, _cpu_flags, command_line

from lpt_core import text
from lpt_core.config import GenerationConfig, ModelsConfig, load_recipe
from lpt_core.data.preparation import prepare_data
from lpt_core.generation.base import GeneratedProfile, profile_from_tokens, stop_token_ids
from lpt_core.generation.finishing import WORD
from lpt_core.generation.hf_backend import hf_generation_config
from lpt_core.generation.vllm_backend import model_eos_ids
from lpt_core.models import load_generator, load_tokenizer, resolve_model
from lpt_core.paths import work_dir
from lpt_core.profile_quality.readability import is_finished, is_looping

CACHE = work_dir() / "bench"
GENERATOR = "smollm2-135m-instruct"  # both recipes' writer


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    tests = {name: _test_prompts(name, args.full_windows, args.seed) for name in args.recipes.split(",")}
    prompts = list(dict.fromkeys(p for rows in tests.values() for p in rows["prompt"].to_list()))
    caps = [int(cap) for cap in args.caps.split(",")]
    ids = greedy_ids(prompts, max(caps), args.dtype, args.batch_size)
    tokenizer = load_tokenizer(GENERATOR)
    stop_ids = set(stop_token_ids(tokenizer, model_eos_ids(resolve_model(GENERATOR))))
    rows = []
    for name, test in tests.items():
        for cap in caps:
            for finish in (False, True):
                profiles = [profile_from_tokens(tokenizer, ids[p][:cap], stop_ids, finish=finish)
                            for p in test["prompt"].to_list()]
                rows.append(_row(name, test.height, cap, finish, profiles))
                print(json.dumps(rows[-1]), flush=True)
    _write(args, rows, caps, {name: test.height for name, test in tests.items()})


def _row(recipe: str, examples: int, cap: int, finish: bool, profiles: list[GeneratedProfile]) -> dict:
    texts = [profile.text for profile in profiles]
    return {
        "recipe": recipe, "examples": examples, "max_new_tokens": cap, "finish_profiles": finish,
        "finished": float(np.mean([is_finished(p.text, p.finished) for p in profiles])),
        "looping": float(np.mean([is_looping(t) for t in texts])),
        "ended_turn": float(np.mean([profile.finished for profile in profiles])),
        "words": float(np.mean([len(WORD.findall(t)) for t in texts])),
        "empty": float(np.mean([not t for t in texts])),
        "examples_text": texts[:4],
    }


def _write(args: argparse.Namespace, rows: list[dict], caps: list[int], sizes: dict[str, int]) -> None:
    lines = [
        "| recipe (test examples) | max_new_tokens | finishing | finished | looping | ended its turn | words |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['recipe']} ({row['examples']}) | {row['max_new_tokens']} | "
            f"{'on' if row['finish_profiles'] else 'off (raw)'} | {row['finished']:.1%} | {row['looping']:.1%} "
            f"| {row['ended_turn']:.1%} | {row['words']:.1f} |"
        )
    command = command_line("profile_finishing.py", args)
    text_ = "\n".join([
        "# Finished and looping shares of zero-shot test profiles, by token cap, before and after finishing", "",
        f"`{command}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, CPU flags: {_cpu_flags()}; "
        f"model dtype {args.dtype}. Greedy zero-shot profiles ({GENERATOR}, the recipes' prompt) of "
        + ", ".join(f"{name}: {size} test examples" for name, size in sizes.items())
        + f" (full: a seeded sample of its test windows), generated once at max_new_tokens {max(caps)}; a smaller "
        "cap reads the first tokens of the same greedy decode. Finishing: generation.finish_profiles "
        "(lpt_core.generation.finishing: loops cut, a profile the cap cut trimmed to its last complete sentence). "
        "Finished: ended its turn or ends a sentence, the quality report's finished share; looping: fewer than "
        "70% of its word trigrams distinct; ended its turn: the model closed its turn before the cap.",
        "", *lines, "",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"profile_finishing_{args.dtype}{args.suffix}"
    (RESULTS / f"{name}.md").write_text(text_, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"wrote {RESULTS / f'{name}.md'}")


def _test_prompts(recipe_name: str, windows: int, seed: int) -> pl.DataFrame:
    """The recipe's test examples with their prompts: all of them, or a seeded sample of `windows`
    where the recipe has several windows per user."""
    recipe = load_recipe(recipe_name)
    split = prepare_data(recipe)[1]
    examples, catalog = split.examples, split.catalog
    test = examples.filter(pl.col("split") == "test")
    if recipe.split.windows_per_user > 1 and test.height > windows:
        test = test.sample(windows, seed=seed).sort("user_id", "window")
    tokenizer = load_tokenizer(recipe.models.generator)
    return test.with_columns(pl.Series("prompt", text.build_prompts(test, catalog, tokenizer, recipe.prompt,
                                                                    recipe.data.source)))


def greedy_ids(prompts: list[str], cap: int, dtype: str, batch_size: int) -> dict[str, list[int]]:
    """Each prompt's greedy generated token ids (up to `cap`, through the first stop token), cached;
    a cache of a larger cap holds them too (their first `cap` ids)."""
    path = CACHE / f"profile_finishing_ids_{dtype}_{cap}.json"
    known: dict[str, list[int]] = {}
    for stored in sorted(CACHE.glob(f"profile_finishing_ids_{dtype}_*.json")):
        if int(stored.stem.rsplit("_", 1)[1]) >= cap:
            known |= {prompt: ids[:cap] for prompt, ids in json.loads(stored.read_text()).items()}
    missing = [p for p in prompts if p not in known]
    if missing:
        model, tokenizer = load_generator(GENERATOR, ModelsConfig(device="cpu", dtype=dtype))
        stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
        config = hf_generation_config(GenerationConfig(max_new_tokens=cap, do_sample=False), stop_ids,
                                      tokenizer.pad_token_id)
        encoded = tokenizer(missing, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(missing)), key=lambda i: len(encoded[i]), reverse=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            started = time.perf_counter()
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, padding=True, return_tensors="pt")
            with torch.inference_mode():
                output = model.generate(**batch, generation_config=config)
            for i, row in zip(chunk, output[:, batch["input_ids"].shape[1] :].tolist(), strict=True):
                known[missing[i]] = row
            path.write_text(json.dumps(known))
            print(f"{start + len(chunk)}/{len(missing)} in {time.perf_counter() - started:.0f} s", flush=True)
    return {p: known[p] for p in prompts}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="quick,full")
    parser.add_argument("--full-windows", type=int, default=150)
    parser.add_argument("--caps", default="64,96,128")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the full recipe's test sample's")
    parser.add_argument("--suffix", default="", help="appended to the result files' names")
    return parser.parse_args()


if __name__ == "__main__":
    main()
