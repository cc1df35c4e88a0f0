"""REBEL settings swept on the default models and data: does each update lower its own batch's
loss, and does the greedy reward of a fixed probe set rise?

For each setting (learning rate x eta x passes), a fresh LoRA policy on SmolLM2 runs --updates
REBEL updates of --prompts train prompts of the recipe's split (default `full`), rewarded by the
frozen base all-MiniLM-L6-v2 (the RL-only setting: no decoder phase, so the reward is the same
function throughout and the probe values are comparable across updates and settings). Every
--probe-every updates the greedy profiles of --probe train examples (the same for every setting)
are scored. Prints and writes a table to bench/results/rl_sweep_<dtype>.md, with the per-update
metrics in bench/results/rl_sweep_<dtype>.json.

    python bench/rl_sweep.py [--recipe full] [--updates 8] [--settings 1e-4:1:4,1e-4:0.5:2] [--dtype float32]

Settings are lr:eta:passes. The model dtype is the recipe's ("auto": bf16 where the CPU has
native bf16 instructions, float32 elsewhere); --dtype forces one.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from recommender_head import build_split

from lpt_core import text
from lpt_core.config import ModelsConfig, load_recipe
from lpt_core.models import load_encoder, load_generator, load_tokenizer, pick_dtype
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.policy import make_policy
from lpt_core.training.reward import RankReward
from lpt_core.training.rl import RLExample, run_rl_phase

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    _, examples, catalog = build_split(recipe)
    train = examples.filter(pl.col("split") == "train")
    # One window per user (the first): distinct users in every batch and in the probe.
    train = train.unique("user_id", keep="first", maintain_order=True)
    tokenizer = load_tokenizer(recipe.models.generator)
    prompts = text.build_prompts(train, catalog, tokenizer, recipe.prompt, recipe.data.source)
    rl_examples = [
        RLExample(prompt, row["target_item_id"], list(row["history_item_ids"]))
        for prompt, row in zip(prompts, train.iter_rows(named=True), strict=True)
    ]
    models = recipe.models.model_copy(update={"device": "cpu", **({"dtype": args.dtype} if args.dtype else {})})
    encoder = TextEncoder(load_encoder(recipe.models.encoder, ModelsConfig(device="cpu", dtype="float32")))
    index = ItemIndex.build(catalog["item_id"].to_list(), encoder.encode(catalog["text"].to_list()))
    reward = RankReward(encoder, index, kind=recipe.training.rl.reward)
    dtype = str(pick_dtype(models.dtype, torch.device("cpu"))).removeprefix("torch.")
    print(f"{len(rl_examples)} train users, {len(index)} items, dtype {dtype}, {args.threads} threads")

    rows, runs = [], {}
    for setting in args.settings.split(","):
        lr, eta, passes = setting.split(":")
        cfg = recipe.training.rl.model_copy(update={
            "learning_rate": float(lr), "eta": float(eta), "passes_per_batch": int(passes),
            "updates_per_round": args.updates, "prompts_per_update": args.prompts,
            "probe_examples": args.probe, "probe_every": args.probe_every,
        })
        model, tokenizer = load_generator(recipe.models.generator, models)
        torch.manual_seed(0)
        policy = make_policy(model, cfg)
        started = time.perf_counter()
        history = run_rl_phase(policy, tokenizer, rl_examples, reward, cfg, seed=0, output_dir=RESULTS)
        seconds = time.perf_counter() - started
        runs[setting] = history
        rows.append(_row(setting, history, seconds))
        print(_table(rows[-1:], header=len(rows) == 1), flush=True)
    _write(args, rows, runs, dtype, len(rl_examples))


def _row(setting: str, history: list[dict], seconds: float) -> dict:
    fell = [m["loss_after"] < m["loss_before"] for m in history]
    probes = [history[0]["probe_reward_start"]] + [m["probe_reward"] for m in history if "probe_reward" in m]
    half = len(history) // 2
    return {
        "setting": setting,
        "loss_fell_share": float(np.mean(fell)),
        "loss_before": float(np.mean([m["loss_before"] for m in history])),
        "loss_after": float(np.mean([m["loss_after"] for m in history])),
        "toward_better": float(np.mean([m["pairs_toward_better"] for m in history])),
        "backtracks": float(np.mean([m["backtracks"] for m in history])),
        "kl_last": history[-1]["kl"],
        "reward_first_half": float(np.mean([m["reward_mean"] for m in history[:half]])),
        "reward_second_half": float(np.mean([m["reward_mean"] for m in history[half:]])),
        "probe": probes,
        "seconds_per_update": seconds / len(history),
    }


def _table(rows: list[dict], header: bool = True) -> str:
    lines = [
        "| lr:eta:passes | loss fell | loss before -> after | pairs toward better | backtracks | KL (last) "
        "| rollout reward 1st -> 2nd half | probe reward (greedy) | s/update |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ] if header else []
    for r in rows:
        probe = " -> ".join(f"{v:.4f}" for v in r["probe"])
        lines.append(
            f"| {r['setting']} | {r['loss_fell_share']:.0%} | {r['loss_before']:.3f} -> {r['loss_after']:.3f} "
            f"| {r['toward_better']:.0%} | {r['backtracks']:.2f} | {r['kl_last']:.3f} "
            f"| {r['reward_first_half']:.4f} -> {r['reward_second_half']:.4f} | {probe} | {r['seconds_per_update']:.0f} |"
        )
    return "\n".join(lines)


def _write(args: argparse.Namespace, rows: list[dict], runs: dict, dtype: str, users: int) -> None:
    command = "python bench/rl_sweep.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    flags = _cpu_flags()
    text_ = "\n".join([
        "# REBEL settings sweep (RL only, frozen base recommender)", "",
        f"`{command}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, CPU flags: {flags}; "
        f"model dtype {dtype}. {users} train users (first window each), {args.prompts} prompts x 2 samples "
        f"per update, probe = greedy profiles of {args.probe} fixed train users every {args.probe_every} updates.",
        "", _table(rows), "",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"rl_sweep_{dtype}.md").write_text(text_, encoding="utf-8")
    (RESULTS / f"rl_sweep_{dtype}.json").write_text(json.dumps({"rows": rows, "updates": runs}, indent=1), encoding="utf-8")
    print(f"wrote {RESULTS / f'rl_sweep_{dtype}.md'}")


def _cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="full")
    parser.add_argument("--settings", default="1e-4:1:4,1e-4:0.5:2")
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--probe", type=int, default=16)
    parser.add_argument("--probe-every", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    return parser.parse_args()


if __name__ == "__main__":
    main()
