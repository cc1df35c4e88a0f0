"""Can the real writer fit a fixed set of users? In-sample learning of SmolLM2 under the recipe's
frozen recommender reward, beside the same measure on users it never trained on.

16 fixed train users (their first windows, evenly spaced through the recipe's train split) are
the only prompts of each arm:
- REBEL: --updates updates of --prompts of those users (the recipe's other RL settings);
- best-of-n: --iterations iterations of --samples samples per user, SFT on each user's best.
Every --probe-every updates (every iteration for best-of-n) the greedy profiles of the 16 users
and of --probe other train users (the sweeps' yardstick users) are scored with the training reward itself (RewardProbe); each
group's change since the start has a paired user-bootstrap 95% interval. REBEL's per-update
diagnostics say why a curve does not rise: the share of updates whose batch loss fell, the share
of pairs that moved toward the better profile, the line search's step scale and backtracks, and
the reward spread between a prompt's two samples (0: the reward cannot tell them apart).

Writes bench/results/overfit_<dtype><--suffix>.md and .json after every probe, so a run stopped
early keeps what it measured.

    python bench/studies/overfit.py [--recipe full] [--dtype bfloat16] [--updates 40] [--iterations 4] [--arms rebel,best_of_n]
        [--sft-epochs 3] [--sft-lr 1e-3] [--temperature 0.7] [--beta 0] [--eta 10] [--lr 1e-3]
        [--reward-targets 4] [--seed 1]
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from rl_sweep import RESULTS, SweepSetup, _cpu_flags, command_line, yardstick_arguments

from lpt_core.config import RLConfig
from lpt_core.profile_quality.intervals import user_bootstrap
from lpt_core.training.best_of_n import best_of_n
from lpt_core.training.examples import RLExample, rl_examples
from lpt_core.training.reward import RankReward
from lpt_core.training.rl import RewardProbe, probe_set, run_rl_phase

GROUPS = ("trained", "unseen")


@dataclass
class Arm:
    """One arm's probe curve (per group: the per-user greedy rewards at each probe point) and,
    for REBEL, its per-update metrics."""

    name: str
    steps: list[int] = field(default_factory=list)
    rewards: dict[str, list[np.ndarray]] = field(default_factory=lambda: {group: [] for group in GROUPS})
    updates: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, step: int, probes: dict[str, RewardProbe]) -> None:
        self.steps.append(step)
        for group, probe in probes.items():
            self.rewards[group].append(probe.per_example())

    def change(self, group: str, point: int = -1) -> tuple[float, float, float]:
        """Mean change since the start at a probe point, with its paired 95% interval."""
        start, after = self.rewards[group][0], self.rewards[group][point]
        users = [str(i) for i in range(len(start))]
        _, diffs = user_bootstrap({"start": start, "after": after}, users, samples=2000, baseline="start")
        diff = diffs["after - start"]
        return diff.mean, diff.low, diff.high


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    bench = SweepSetup.build(args.recipe, args.dtype, args.probe, args.held_out_from)
    rl = bench.recipe.training.rl
    if args.reward_targets:
        rl = rl.model_copy(update={"reward_targets": args.reward_targets})
    # Trained: evenly spaced through the users outside the sweeps' yardstick; unseen: the
    # yardstick's users (--probe of them, evenly spaced), with the same reward targets.
    trained = probe_set(bench.training_examples(rl.reward_targets, rl.reward_targets_from), args.users)
    yardstick = {example.prompt for example in bench.yardstick.probe}
    unseen = [e for e in rl_examples(bench.rows, rl.reward_targets, rl.reward_targets_from) if e.prompt in yardstick]
    reward = RankReward(bench.encoder, bench.index, kind=rl.reward)
    print(f"{len(trained)} trained users, {len(unseen)} unseen, {len(bench.index)} items, dtype {bench.dtype}", flush=True)

    arms: list[Arm] = []
    for name in args.arms.split(","):
        arm = Arm(name)
        arms.append(arm)
        run_arm(arm, bench, rl, trained, unseen, reward, args, lambda: _write(args, arms, bench.dtype, rl))
        _write(args, arms, bench.dtype, rl)


def run_arm(arm: Arm, bench: SweepSetup, rl: RLConfig, trained: list[RLExample], unseen: list[RLExample],
            reward: RankReward, args, save) -> None:
    best_of_n_cfg = bench.recipe.training.best_of_n
    if args.temperature is not None:
        rl = rl.model_copy(update={"sampling": rl.sampling.model_copy(update={"temperature": args.temperature})})
        best_of_n_cfg = best_of_n_cfg.model_copy(update={
            "sampling": best_of_n_cfg.sampling.model_copy(update={"temperature": args.temperature}),
        })
    rl = rl.model_copy(update={
        "updates_per_round": args.updates, "prompts_per_update": args.prompts, "probe_examples": 0,
        **({"beta": args.beta} if args.beta is not None else {}),
        **({"algorithm": rl.algorithm.model_copy(update={"eta": args.eta})} if args.eta is not None else {}),
        **({"learning_rate": args.lr} if args.lr is not None else {}),
    })
    policy, tokenizer = bench.fresh_policy(rl)
    sampling = rl.sampling if arm.name == "rebel" else best_of_n_cfg.sampling
    probes = {group: RewardProbe(users, policy, tokenizer, reward, sampling) for group, users in zip(GROUPS, (trained, unseen))}
    arm.record(0, probes)
    save()
    started = time.perf_counter()

    def on_step(step: int, metrics: dict) -> None:
        arm.updates.append(metrics)
        print(f"{arm.name} step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
        last = args.updates if arm.name == "rebel" else args.iterations
        if arm.name != "rebel" or step % args.probe_every == 0 or step == last:
            arm.record(step, probes)
            arm.seconds = time.perf_counter() - started
            save()

    if arm.name == "rebel":
        run_rl_phase(policy, tokenizer, trained, reward, rl, seed=args.seed, output_dir=RESULTS, on_update=on_step)
    else:
        cfg = best_of_n_cfg.model_copy(update={
            "iterations": args.iterations, "samples": args.samples, "examples_per_iteration": None,
            **({"epochs": args.sft_epochs} if args.sft_epochs else {}),
            **({"learning_rate": args.sft_lr} if args.sft_lr else {}),
        })
        best_of_n(policy, tokenizer, trained, reward, cfg, seed=args.seed, output_dir=RESULTS, on_iteration=on_step)


def _diagnostics(arm: Arm, beta: float) -> str:
    if not arm.updates:
        return ""
    if arm.name == "best_of_n":
        return _best_of_n_diagnostics(arm)
    updates = arm.updates
    fell = np.mean([m["loss_after"] < m["loss_before"] for m in updates])
    toward = np.mean([m["pairs_toward_better"] for m in updates])
    return (
        f"REBEL diagnostics over {len(updates)} updates: batch loss fell in {fell:.0%}; pairs toward the "
        f"better profile {toward:.0%} on average; backtracks {np.mean([m['backtracks'] for m in updates]):.2f} "
        f"per update; final step scale {updates[-1]['step_scale']:.3g}; rollout reward std "
        f"{np.mean([m['reward_std'] for m in updates]):.4f}; KL (last) {updates[-1]['kl']:.3f}; "
        f"{_shaping(updates, beta)}{arm.seconds / max(len(updates), 1):.0f} s per update with its probes."
    )


def _shaping(updates: list[dict], beta: float) -> str:
    """The KL shaping's spread (beta times the per-sample log-ratio's std; beta the recipe's when
    the run turned it off) against the reward's, over the last 10 updates. Runs from before the
    metric existed have none."""
    last = [m for m in updates[-10:] if "kl_std" in m]
    if not last:
        return ""
    # Medians: one update whose samples happen to rank the item near the top inflates a mean.
    shaping, reward = beta * np.median([m["kl_std"] for m in last]), np.median([m["reward_std"] for m in last])
    return (f"over the last {len(last)} updates (medians) beta {beta:g} x the log-ratio's std, {shaping:.4f}, "
            f"against the reward's std {reward:.4f}; ")


def _best_of_n_diagnostics(arm: Arm) -> str:
    """Per iteration: what its samples offered (the mean best of each user's samples against their
    mean) and how far the fine-tune got to those targets (its last epoch's loss). If the greedy
    reward after an iteration stays far below its best, the fine-tune did not fit them."""
    rows = [
        f"{step}: samples {m['sample_reward']:.4f}, best {m['best_reward']:.4f}, SFT loss mean "
        f"{m.get('sft_loss', float('nan')):.3f}, last epoch {m.get('sft_final_loss', float('nan')):.3f}"
        for step, m in enumerate(arm.updates, start=1)
    ]
    return "best-of-n diagnostics by iteration: " + "; ".join(rows) + "."


def _table(arm: Arm, beta: float) -> list[str]:
    lines = [
        f"### {arm.name}", "",
        "| step | trained: greedy reward | trained: change [95%] | unseen: greedy reward | unseen: change [95%] |",
        "|---:|---:|---|---:|---|",
    ]
    for point, step in enumerate(arm.steps):
        cells = []
        for group in GROUPS:
            mean = float(arm.rewards[group][point].mean())
            change, low, high = arm.change(group, point)
            cells += [f"{mean:.4f}", f"{change:+.4f} [{low:+.4f}, {high:+.4f}]"]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    if len(arm.steps) > 1:
        gap = [arm.change(group)[0] for group in GROUPS]
        lines += ["", f"Generalisation gap (trained change - unseen change): {gap[0] - gap[1]:+.4f}."]
    diagnostics = _diagnostics(arm, beta)
    return [*lines, *([""] + [diagnostics] if diagnostics else []), ""]


def _write(args, arms: list[Arm], dtype: str, rl: RLConfig) -> None:
    lines = [
        f"# Overfit: the writer on a fixed set of {args.users} users ({dtype})", "",
        f"`{command_line('overfit.py', args)}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, CPU flags: {_cpu_flags()}; "
        f"model dtype {dtype}. Greedy reward = the training reward (rl.reward {rl.reward} over "
        f"{rl.reward_targets} target(s) per user, frozen base recommender) of each user's greedy profile; changes are after - start on the same users, paired "
        f"user-bootstrap 95% intervals. A probe row is written as soon as it is measured.", "",
    ]
    for arm in arms:
        lines += _table(arm, args.beta or rl.beta)
    name = f"overfit_{dtype}{args.suffix}"
    (RESULTS / f"{name}.md").write_text("\n".join(lines), encoding="utf-8")
    payload = {arm.name: {"steps": arm.steps, "updates": arm.updates,
                          "rewards": {g: [r.tolist() for r in arm.rewards[g]] for g in GROUPS}} for arm in arms}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")


def _arguments():
    # --probe: the unseen users, the sweeps' yardstick users (those with held-out windows).
    parser = yardstick_arguments(__doc__.splitlines()[0], probe=64)
    parser.add_argument("--users", type=int, default=16, help="the fixed users trained on")
    parser.add_argument("--arms", default="rebel,best_of_n")
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--probe-every", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0,
                        help="the training's seed (prompt order, sampling): a replicate on the same users")
    parser.add_argument("--sft-epochs", type=float, default=None,
                        help="best-of-n's SFT epochs per iteration (default: the recipe's)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="the arm's sampling temperature (default: the recipe's). REBEL's regression holds for "
                             "pairs sampled from any distribution, so a cooler one compares profiles nearer the greedy one")
    parser.add_argument("--beta", type=float, default=None,
                        help="REBEL's KL shaping coefficient (default: the recipe's)")
    parser.add_argument("--eta", type=float, default=None,
                        help="REBEL's eta (default: the recipe's): how far one update moves a pair's log-ratio gap")
    parser.add_argument("--lr", type=float, default=None,
                        help="REBEL's learning rate (default: the recipe's). AdamW moves each weight by about the "
                             "learning rate whatever the loss's scale, so a larger --eta alone barely moves further: "
                             "scale both to move a pair's log-ratio gap further per update")
    parser.add_argument("--sft-lr", type=float, default=None,
                        help="best-of-n's SFT learning rate (default: the recipe's)")
    parser.add_argument("--reward-targets", type=int, default=None,
                        help="rl.reward_targets for training and probes alike: the reward averaged over the "
                             "next item and the user's next N-1 window targets (default: the recipe's)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
