"""REBEL settings swept on the default models and data: does each update lower its own batch's
loss, and does the greedy reward of a fixed probe set rise?

For each setting (learning rate x eta x passes, optionally x reward x targets x whitening), a
fresh LoRA policy on SmolLM2 runs --updates
REBEL updates of --prompts train prompts of the recipe's split (default `full`), rewarded by the
frozen base all-MiniLM-L6-v2 (the RL-only setting: no decoder phase, so the reward is the same
function throughout and the probe values are comparable across updates and settings). Every
--probe-every updates the greedy profiles of --probe train users (the same for every setting,
and never among the prompts trained on) are scored on two yardsticks, each change since the start
with a paired user-bootstrap interval: the next item's NDCG (the
method's reward, no cutoff) and the mean NDCG of the user's held-out later targets (windows
--held-out-from and after, which no reward setting here reaches). Prints and writes a table to
bench/results/rl_sweep_<dtype><--suffix>.md, the per-update metrics in the .json beside it.

    python bench/studies/rl_sweep.py [--recipe full] [--updates 8] [--settings 1e-4:1:4,1e-4:0.5:2] [--dtype float32]

Settings are lr:eta:passes[:reward:targets:whitening] (training.rl.reward, reward_targets,
reward_whitening; the recipe's where left out), e.g. 1e-4:1:2:log_rank:4:within_prompt. Each RL
example is a train user's first window; its later targets are those of its next windows. The
model dtype is the recipe's ("auto": bf16 where the CPU has native bf16 instructions, float32
elsewhere); --dtype forces one.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from lpt_core import text
from lpt_core.catalog_index import index_catalog
from lpt_core.config import GenerationConfig, ModelsConfig, Recipe, RewardTargetsFrom, RLConfig, load_recipe
from lpt_core.data.preparation import prepare_data
from lpt_core.generation.base import GeneratedProfile
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.models import load_encoder, load_generator, load_tokenizer, pick_dtype
from lpt_core.profile_quality.intervals import user_bootstrap
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.examples import RLExample, rewards_of, rl_examples
from lpt_core.training.policy import make_policy, merged_copy
from lpt_core.training.reward import RankReward
from lpt_core.training.rl import probe_set, run_rl_phase

RESULTS = Path(__file__).resolve().parents[1] / "results"  # bench/results, beside this folder
PROBE_KEYS = ("probe_next_ndcg", "probe_held_out_ndcg")


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    bench = SweepSetup.build(args.recipe, args.dtype, args.probe, args.held_out_from)
    print(f"{len(bench.first_windows)} train users, {len(bench.index)} items, dtype {bench.dtype}, {args.threads} threads")

    rows, runs = [], {}
    for setting in args.settings.split(","):
        cfg = _setting(bench.recipe.training.rl, setting).model_copy(update={
            "updates_per_round": args.updates, "prompts_per_update": args.prompts, "probe_examples": 0,
        })
        train_examples = bench.training_examples(cfg.reward_targets)
        reward = RankReward(bench.encoder, bench.index, kind=cfg.reward)
        policy, tokenizer = bench.fresh_policy(cfg)
        started = time.perf_counter()
        probes = bench.yardstick.curve(policy, tokenizer, cfg.sampling.max_new_tokens, args.probe_every, args.updates)
        history = run_rl_phase(policy, tokenizer, train_examples, reward, cfg, seed=0, output_dir=RESULTS, on_update=probes)
        seconds = time.perf_counter() - started - probes.seconds
        runs[setting] = history
        rows.append(_row(setting, history, seconds))
        print(_table(rows[-1:], header=len(rows) == 1), flush=True)
    _write(args, rows, runs, bench.dtype, len(bench.first_windows))


@dataclass
class SweepSetup:
    """What every setting of a sweep shares: the recipe's split (every train window, the first
    window's prompt per user), the frozen base recommender and the yardstick's probe users."""

    recipe: Recipe
    rows: pl.DataFrame
    catalog: pl.DataFrame
    encoder: TextEncoder
    index: ItemIndex
    yardstick: Yardstick
    models: ModelsConfig
    dtype: str

    @classmethod
    def build(cls, recipe_name: str, dtype: str | None, probe: int, held_out_from: int) -> SweepSetup:
        recipe = load_recipe(recipe_name)
        split = prepare_data(recipe)[1]
        examples, catalog = split.examples, split.catalog
        rows = _first_window_prompts(examples.filter(pl.col("split") == "train"), catalog, recipe)
        models = recipe.models.model_copy(update={"device": "cpu", **({"dtype": dtype} if dtype else {})})
        encoder = TextEncoder(load_encoder(recipe.models.encoder, ModelsConfig(device="cpu", dtype="float32")))
        index = index_catalog(catalog, encoder).index
        yardstick = Yardstick(probe_set(_first_windows(rows, 1), probe), _held_out(rows, held_out_from),
                              RankReward(encoder, index, kind="ndcg"))
        picked = str(pick_dtype(models.dtype, torch.device("cpu"))).removeprefix("torch.")
        return cls(recipe, rows, catalog, encoder, index, yardstick, models, picked)

    @property
    def first_windows(self) -> list[RLExample]:
        return _first_windows(self.rows, 1)

    def training_examples(self, reward_targets: int, targets_from: RewardTargetsFrom = "later_windows") -> list[RLExample]:
        """The first window of every train user outside the probe: the yardstick measures users
        that no setting trains on."""
        probe = {example.prompt for example in self.yardstick.probe}
        examples = rl_examples(self.rows, reward_targets, targets_from)
        return [example for example in examples if example.prompt and example.prompt not in probe]

    def any_window_examples(self, reward_targets: int, targets_from: RewardTargetsFrom, seed: int) -> list[RLExample]:
        """One window per train user outside the probe, drawn uniformly (seeded), in the users'
        order: examples drawn like the report's, which reads every window of its users, where
        training_examples holds only the first ones."""
        probe = {example.prompt for example in self.yardstick.probe}
        users = self.rows.filter((pl.col("window") == 0) & ~pl.col("prompt").is_in(list(probe)))["user_id"]
        rows = self.rows.filter(pl.col("user_id").is_in(users.implode())).drop("prompt")
        rng = np.random.default_rng(seed)
        windows = rows.group_by("user_id", maintain_order=True).agg("window")
        drawn = pl.DataFrame(
            {"user_id": windows["user_id"], "window": [int(rng.choice(w)) for w in windows["window"].to_list()]},
            schema={"user_id": rows.schema["user_id"], "window": rows.schema["window"]},
        )
        prompted = _with_prompts(rows, drawn, self.catalog, self.recipe)
        return [example for example in rl_examples(prompted, reward_targets, targets_from) if example.prompt]

    def fresh_policy(self, cfg: RLConfig) -> tuple[Any, Any]:
        """A new LoRA policy on the base generator, seeded alike for every setting."""
        model, tokenizer = load_generator(self.recipe.models.generator, self.models)
        torch.manual_seed(0)
        return make_policy(model, cfg), tokenizer


def _first_window_prompts(train: pl.DataFrame, catalog: pl.DataFrame, recipe: Recipe) -> pl.DataFrame:
    """Every train window, with the chat prompt of each user's first window (the RL prompts; one
    per user, so batches and the probe hold distinct users) and "" for the later ones."""
    return _with_prompts(train, train.filter(pl.col("window") == 0).select("user_id", "window"), catalog, recipe)


def _with_prompts(rows: pl.DataFrame, prompted: pl.DataFrame, catalog: pl.DataFrame, recipe: Recipe) -> pl.DataFrame:
    """`rows` with a "prompt" column: the chat prompt of the windows keyed in `prompted`
    (user_id, window), "" for the others."""
    chosen = rows.join(prompted, on=["user_id", "window"], how="semi", maintain_order="left")
    tokenizer = load_tokenizer(recipe.models.generator)
    prompts = text.build_prompts(chosen, catalog, tokenizer, recipe.prompt, recipe.data.source)
    chosen = chosen.select("user_id", "window").with_columns(pl.Series("prompt", prompts, dtype=pl.String))
    return rows.join(chosen, on=["user_id", "window"], how="left", maintain_order="left").with_columns(
        pl.col("prompt").fill_null("")
    )


def _first_windows(rows: pl.DataFrame, reward_targets: int) -> list[RLExample]:
    """The first window's RL example of every user, with the targets of its next windows."""
    return [example for example in rl_examples(rows, reward_targets) if example.prompt]


def _held_out(rows: pl.DataFrame, held_out_from: int) -> dict[str, RLExample]:
    """Per first-window prompt: an example whose targets are those of the user's windows
    held_out_from and later, in window order, without repeats or items of the first window's
    history (scored as one mean NDCG); users with no such target have none."""
    later = dict(
        rows.filter(pl.col("window") >= held_out_from).sort("window")
        .group_by("user_id", maintain_order=True).agg("target_item_id").iter_rows()
    )
    held = {}
    for row in rows.filter(pl.col("window") == 0).iter_rows(named=True):
        history = list(row["history_item_ids"])
        targets = [t for t in dict.fromkeys(later.get(row["user_id"], [])) if t not in set(history)]
        if targets:
            held[row["prompt"]] = RLExample(row["prompt"], targets[0], history, tuple(targets[1:]))
    return held


def _setting(rl: RLConfig, setting: str) -> RLConfig:
    """lr:eta:passes[:reward:targets:whitening] over the recipe's RL settings."""
    fields = setting.split(":")
    if len(fields) not in (3, 6):
        raise SystemExit(f"setting {setting!r}: expected lr:eta:passes[:reward:targets:whitening]")
    rebel = rl.algorithm.model_dump() | {"eta": float(fields[1]), "passes_per_batch": int(fields[2])}
    update = {"learning_rate": float(fields[0])}
    if len(fields) == 6:
        update |= {"reward": fields[3], "reward_targets": int(fields[4])}
        rebel |= {"reward_whitening": fields[5]}
    return RLConfig.model_validate(rl.model_dump() | update | {"algorithm": rebel})


class Yardstick:
    """Greedy profiles of fixed probe users scored on the next item's NDCG and on the mean NDCG of
    their held-out later targets, whatever reward a setting trains on."""

    def __init__(self, probe: list[RLExample], held_out: dict[str, RLExample], ndcg: RankReward) -> None:
        self.probe = [example for example in probe if example.prompt in held_out]
        self.held_out = [held_out[example.prompt] for example in self.probe]
        self.ndcg = ndcg

    def scores(self, policy, tokenizer, max_new_tokens: int) -> dict[str, float]:
        return {key: float(values.mean()) for key, values in self.per_user(policy, tokenizer, max_new_tokens).items()}

    def per_user(self, policy, tokenizer, max_new_tokens: int) -> dict[str, np.ndarray]:
        """Each probe user's two yardstick values for the policy's greedy profiles, in the probe's order."""
        return self.per_text(self.profiles(policy, tokenizer, max_new_tokens))

    def profiles(self, policy, tokenizer, max_new_tokens: int) -> list[str]:
        """The policy's greedy (finished) profile of each probe user."""
        return [profile.text for profile in self.generated(policy, tokenizer, max_new_tokens)]

    def generated(self, policy, tokenizer, max_new_tokens: int, repetition_penalty: float = 1.0,
                  finish: bool = True) -> list[GeneratedProfile]:
        """The policy's greedy profile of each probe user, finished as generation.finish_profiles
        does unless `finish` is False."""
        greedy = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, batch_size=32,
                                  repetition_penalty=repetition_penalty, finish_profiles=finish)
        with torch.random.fork_rng(), merged_copy(policy) as merged:
            return TransformersGenerator(merged, tokenizer, greedy, model_id="yardstick").generate(
                [example.prompt for example in self.probe]
            )

    def per_text(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Each probe user's two yardstick values when `texts` (one per probe user) are the queries."""
        return {
            "probe_next_ndcg": np.asarray(rewards_of(self.ndcg, texts, self.probe)),
            "probe_held_out_ndcg": np.asarray(rewards_of(self.ndcg, texts, self.held_out)),
        }

    def curve(self, policy, tokenizer, max_new_tokens: int, every: int, last: int) -> _Curve:
        return _Curve(self, policy, tokenizer, max_new_tokens, every, last)


class _Curve:
    """run_rl_phase's on_update: the yardstick before the first update ("..._start" keys on update
    1) and every `every` updates, with the change since the start and its paired interval;
    `seconds` spent on it, to leave out of the per-update time."""

    def __init__(self, yardstick: Yardstick, policy, tokenizer, max_new_tokens: int, every: int, last: int) -> None:
        self.measure = lambda: yardstick.per_user(policy, tokenizer, max_new_tokens)
        self.every, self.last, self.seconds = every, last, 0.0
        self.start = self._timed()

    def _timed(self) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        scores = self.measure()
        self.seconds += time.perf_counter() - started
        return scores

    def __call__(self, step: int, metrics: dict) -> None:
        if step == 1:
            metrics.update({f"{key}_start": float(values.mean()) for key, values in self.start.items()})
        if step % self.every == 0 or step == self.last:
            metrics.update(paired_change(self.start, self._timed()))


def paired_change(start: dict[str, np.ndarray], after: dict[str, np.ndarray], seed: int = 0) -> dict[str, float]:
    """Per yardstick: its mean after, and after - start with a paired user-bootstrap 95% interval
    (the same probe users before and after)."""
    out = {}
    for key in PROBE_KEYS:
        users = [str(i) for i in range(len(start[key]))]
        _, diffs = user_bootstrap({"start": start[key], key: after[key]}, users, samples=2000, seed=seed, baseline="start")
        diff = diffs[f"{key} - start"]
        out |= {key: float(after[key].mean()), f"{key}_change": diff.mean,
                f"{key}_change_low": diff.low, f"{key}_change_high": diff.high}
    return out


def change_cell(metrics: dict, key: str) -> str:
    """"mean, change [low, high]" of one yardstick in one probe's metrics."""
    return (f"{metrics[key]:.4f}, {metrics[f'{key}_change']:+.4f} "
            f"[{metrics[f'{key}_change_low']:+.4f}, {metrics[f'{key}_change_high']:+.4f}]")


def _row(setting: str, history: list[dict], seconds: float) -> dict:
    fell = [m["loss_after"] < m["loss_before"] for m in history]
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
        **{key: [history[0][f"{key}_start"]] + [m[key] for m in history if key in m] for key in PROBE_KEYS},
        "last_probe": next(m for m in reversed(history) if PROBE_KEYS[0] in m),
        "seconds_per_update": seconds / len(history),
    }


def _table(rows: list[dict], header: bool = True) -> str:
    lines = [
        "| setting | loss fell | loss before -> after | pairs toward better | backtracks | KL (last) "
        "| rollout reward 1st -> 2nd half | probe next-item NDCG (greedy) | probe held-out NDCG (greedy) "
        "| last probe: next-item, change [95%] | last probe: held-out, change [95%] | s/update |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|",
    ] if header else []
    for r in rows:
        curves = " | ".join(" -> ".join(f"{v:.4f}" for v in r[key]) for key in PROBE_KEYS)
        curves += " | " + " | ".join(change_cell(r["last_probe"], key) for key in PROBE_KEYS)
        lines.append(
            f"| {r['setting']} | {r['loss_fell_share']:.0%} | {r['loss_before']:.3f} -> {r['loss_after']:.3f} "
            f"| {r['toward_better']:.0%} | {r['backtracks']:.2f} | {r['kl_last']:.3f} "
            f"| {r['reward_first_half']:.4f} -> {r['reward_second_half']:.4f} | {curves} | {r['seconds_per_update']:.0f} |"
        )
    return "\n".join(lines)


def _write(args: argparse.Namespace, rows: list[dict], runs: dict, dtype: str, users: int) -> None:
    command = command_line("rl_sweep.py", args)
    flags = _cpu_flags()
    text_ = "\n".join([
        "# REBEL settings sweep (RL only, frozen base recommender)", "",
        f"`{command}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, CPU flags: {flags}; "
        f"model dtype {dtype}. {users} train users (first window each), {args.prompts} prompts x 2 samples "
        f"per update, probe = greedy profiles of {args.probe} fixed train users every {args.probe_every} updates, "
        f"scored on the next item's NDCG and on the mean NDCG of the targets of windows {args.held_out_from} "
        f"and later (no cutoff). Settings: lr:eta:passes[:reward:targets:whitening].",
        "", _table(rows), "",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"rl_sweep_{dtype}{args.suffix}"
    (RESULTS / f"{name}.md").write_text(text_, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps({"rows": rows, "updates": runs}, indent=1), encoding="utf-8")
    print(f"wrote {RESULTS / f'{name}.md'}")


def _cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512"


def command_line(script: str, args: argparse.Namespace) -> str:
    """The command that reproduces a sweep: every argument that has a value."""
    return f"python bench/studies/{script} " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "")
    )


def yardstick_arguments(description: str, probe: int) -> argparse.ArgumentParser:
    """The arguments every sweep on this yardstick takes: recipe, probe size, held-out windows,
    the result files' suffix, threads and dtype."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--recipe", default="full")
    parser.add_argument("--probe", type=int, default=probe)
    parser.add_argument("--held-out-from", type=int, default=4, help="first window whose target is held out")
    parser.add_argument("--suffix", default="", help="appended to the result files' names")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    return parser


def _arguments() -> argparse.Namespace:
    parser = yardstick_arguments(__doc__.splitlines()[0], probe=16)
    parser.add_argument("--settings", default="1e-4:1:4,1e-4:0.5:2")
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--probe-every", type=int, default=4)
    return parser.parse_args()


if __name__ == "__main__":
    main()
