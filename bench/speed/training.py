"""Seconds per RL (REBEL) update and per contrastive step with the default models, and where they go.

RL: lpt_core.training.rebel.RebelTrainer on SmolLM2-135M-Instruct with a fresh LoRA (the quick
recipe's RL settings unless overridden), rewarded by the real RankReward: all-MiniLM-L6-v2 ranking
a synthetic catalogue of --catalogue MovieLens-style items. The update splits into rollout
generation, the no-grad log-prob pass (pi_old and pi_ref), the reward (encode profiles + rank),
forward/backward of the passes, and their optimizer steps.

Contrastive: lpt_core.training.contrastive.train_recommender on all-MiniLM-L6-v2, profile -> item
text InfoNCE; a step splits into encoding (the forward pass of both sides) and the rest (loss,
backward, optimizer).

    python bench/speed/training.py                       # about 2 minutes on 2 shared cores
    python bench/speed/training.py --prompts 8 --new-tokens 64 --updates 3 --contrastive-batch 32

Prompts are synthetic MovieLens-style histories of about --prompt-tokens tokens. The machine's
cores may be shared with other work: figures are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from generation import TITLES, _movielens_prompts  # noqa: E402  bench/speed/generation.py, beside this script
from paper_scale import Report, Stopwatch, time_method, timed_updates  # noqa: E402  beside this script

from lpt_core import models  # noqa: E402
from lpt_core.config import RLConfig, load_recipe  # noqa: E402
from lpt_core.retrieval import ItemIndex, TextEncoder  # noqa: E402
from lpt_core.training import contrastive  # noqa: E402
from lpt_core.training.examples import RLExample  # noqa: E402
from lpt_core.training.policy import make_policy  # noqa: E402
from lpt_core.training.rebel import RebelTrainer  # noqa: E402
from lpt_core.training.reward import RankReward  # noqa: E402

HISTORY_ITEMS = 5  # items a synthetic user's history leaves out of the ranking


def main() -> None:
    args = _arguments()
    transformers.utils.logging.disable_progress_bar()  # per-shard load bars would drown the figures
    recipe = load_recipe(args.recipe)
    report = Report(args.out)
    device = models.pick_device(recipe.models.device)
    report.line(f"device {device}, {torch.get_num_threads()} threads; recipe {args.recipe}: generator "
                f"{recipe.models.generator}, encoder {recipe.models.encoder}, dtype {recipe.models.dtype}")
    started = time.perf_counter()
    encoder = models.load_encoder(recipe.models.encoder, recipe.models)
    item_ids, item_texts = _catalogue(args.catalogue)
    index = ItemIndex.build(item_ids, TextEncoder(encoder).encode(item_texts))
    report.line(f"encoder loaded and {len(item_ids)} catalogue items embedded in {time.perf_counter() - started:.1f} s")
    _bench_rl(report, recipe, args, RankReward(TextEncoder(encoder), index, kind=recipe.training.rl.reward), item_ids)
    _bench_contrastive(report, recipe, args, encoder, item_texts)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="quick", help="recipe whose models and training settings are used")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per RL update (2 samples each)")
    parser.add_argument("--prompt-tokens", type=int, default=200, help="approximate prompt length")
    parser.add_argument("--new-tokens", type=int, default=32, help="profile tokens (rows stop earlier at end of turn)")
    parser.add_argument("--passes", type=int, help="REBEL passes per rollout batch (default: the recipe's)")
    parser.add_argument("--micro-batch", type=int, help="sequences per forward/backward (default: the recipe's)")
    parser.add_argument("--updates", type=int, default=2, help="timed RL updates")
    parser.add_argument("--contrastive-steps", type=int, default=3)
    parser.add_argument("--contrastive-batch", type=int, default=16)
    parser.add_argument("--catalogue", type=int, default=256, help="synthetic catalogue items")
    return parser.parse_args()


def _bench_rl(report: Report, recipe: Any, args: argparse.Namespace, reward: RankReward, item_ids: list[str]) -> None:
    overrides = {"prompts_per_update": args.prompts, "sampling": {"max_new_tokens": args.new_tokens}}
    if args.passes is not None:
        overrides["algorithm"] = recipe.training.rl.algorithm.model_dump() | {"passes_per_batch": args.passes}
    if args.micro_batch is not None:
        overrides["micro_batch_size"] = args.micro_batch
    cfg = RLConfig.model_validate(recipe.training.rl.model_dump() | overrides)
    model, tokenizer = models.load_generator(recipe.models.generator, recipe.models)
    policy = make_policy(model, cfg)
    prompts = _movielens_prompts(tokenizer, args.prompts, args.prompt_tokens)
    prompt_tokens = sum(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]) / len(prompts)
    rng = random.Random(0)
    examples = [RLExample(prompt, *_target_and_history(item_ids, rng)) for prompt in prompts]
    report.line(
        f"RL: {args.prompts} prompts (~{prompt_tokens:.0f} tokens) x 2 samples x <= {cfg.sampling.max_new_tokens} tokens, "
        f"{cfg.algorithm.passes_per_batch} passes, micro-batch {cfg.micro_batch_size}, LoRA r={cfg.lora_r}, "
        f"{policy.get_base_model().dtype}"
    )
    trainer = RebelTrainer(policy, tokenizer, reward, cfg, seed=0)
    watch = Stopwatch(policy.device)
    for target, method, label in (
        (trainer, "rollout", "generation"),
        (trainer, "_old_and_ref_logprobs", "log-prob pass (old + ref)"),
        (trainer, "reward", "reward (encode + rank)"),
        (trainer, "_regress", "passes: forward/backward"),
        (trainer.optimizer, "step", "passes: optimizer steps"),
    ):
        time_method(report, watch, target, method, label)
    metrics: list[dict] = []
    timed_updates(report, "RL", lambda: metrics.append(trainer.update(examples)), watch, args.updates, warmups=0)
    tokens = sum(m["profile_tokens"] for m in metrics) / len(metrics)
    report.line(f"RL: profiles averaged {tokens:.1f} tokens; "
                f"{100 * sum(m['finished_share'] for m in metrics) / len(metrics):.0f}% ended their turn")


def _bench_contrastive(report: Report, recipe: Any, args: argparse.Namespace, encoder: Any, item_texts: list[str]) -> None:
    cfg = recipe.training.contrastive.model_copy(
        update={"steps_per_round": args.contrastive_steps, "batch_size": args.contrastive_batch}
    )
    rng = random.Random(1)
    users = max(4 * cfg.batch_size, 64)
    targets = [rng.choice(item_texts) for _ in range(users)]
    profiles = [_synthetic_profile(rng) for _ in range(users)]
    watch = Stopwatch(encoder.device)
    with _wrapped(contrastive, "_embed", lambda embed: watch.wrap("encode (forward, both sides)", embed)):
        history = contrastive.train_recommender(encoder, profiles, targets, cfg, seed=0)
    steps = [record["seconds"] for record in history]
    mean = sum(steps) / len(steps)
    encode = watch.seconds.get("encode (forward, both sides)", 0.0) / len(steps)
    report.line(f"contrastive: {len(steps)} steps of batch {cfg.batch_size}: " + ", ".join(f"{s:.2f}" for s in steps) + " s")
    report.line(f"contrastive: {mean:.2f} s per step = encode (forward, both sides) {encode:.2f} s "
                f"({100 * encode / mean:.0f}%), loss + backward + optimizer {mean - encode:.2f} s "
                f"({100 * (mean - encode) / mean:.0f}%)")


@contextlib.contextmanager
def _wrapped(module: ModuleType, name: str, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """Replace `module.name` by wrap(it) for the duration (the contrastive step's encoding is a
    module-level function: timing it from outside needs no change to the library)."""
    original = getattr(module, name)
    setattr(module, name, wrap(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def _catalogue(size: int) -> tuple[list[str], list[str]]:
    """MovieLens-style item texts: the benchmark titles with a numbered edition, their genres."""
    ids, texts = [], []
    for position in range(size):
        title, genres = TITLES[position % len(TITLES)]
        ids.append(f"item{position}")
        texts.append(f"Title: {title}, edition {position // len(TITLES) + 1}\nCategory: {genres}")
    return ids, texts


def _target_and_history(item_ids: list[str], rng: random.Random) -> tuple[str, list[str]]:
    chosen = rng.sample(item_ids, HISTORY_ITEMS + 1)
    return chosen[0], chosen[1:]


def _synthetic_profile(rng: random.Random) -> str:
    likes = rng.sample([genres for _, genres in TITLES], 2)
    return (f"This user enjoys {likes[0].lower()} films and often rates {likes[1].lower()} movies highly. "
            f"They prefer well-paced stories with memorable characters and avoid long, slow dramas.")


if __name__ == "__main__":
    sys.exit(main())
