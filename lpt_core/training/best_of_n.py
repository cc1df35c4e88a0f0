"""Best-of-n warm start (rejection-sampling fine-tuning) of the profile writer.

For every train example the current policy samples n profiles; the rank reward (the same frozen
recommender the RL phase uses) scores them, and the LoRA adapter is fine-tuned with TRL's
SFTTrainer on the best profile of each example whose best beats the mean of its n (an example
whose samples all tie teaches nothing). Optionally iterated: each iteration samples from the
policy the previous one left.

Why: at a few prompts per RL update on a CPU, REBEL sees a handful of reward comparisons per
minute, most of them between two mediocre samples. Sampling n per prompt and imitating the best
spends the same generation on a direct signal (the winner's text), which moves the policy in far
fewer optimizer steps; RL then refines from there. It runs at the start of the encoder phase,
against that phase's frozen reward.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lpt_core.config import BestOfNConfig, GenerationConfig
from lpt_core.generation.base import END_OF_TURN_TOKENS
from lpt_core.training.examples import rewards_of
from lpt_core.training.policy import merged_copy

if TYPE_CHECKING:
    from peft import PeftModel

    from lpt_core.training.examples import RLExample
    from lpt_core.training.reward import RankReward

log = logging.getLogger(__name__)


def best_of_n(
    policy: PeftModel,
    tokenizer: Any,
    examples: Sequence[RLExample],
    reward: RankReward,
    cfg: BestOfNConfig,
    seed: int,
    output_dir: Path,
    on_iteration: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """cfg.iterations rounds of sample-n / keep-the-best / SFT on `policy`'s adapter (in place);
    one metrics dict per iteration."""
    history = []
    for iteration in range(1, cfg.iterations + 1):
        drawn = _draw(examples, cfg.examples_per_iteration, seed + iteration)
        chosen, metrics = _best_profiles(policy, tokenizer, drawn, reward, cfg, seed + iteration)
        if chosen:
            metrics.update(_fine_tune(policy, tokenizer, chosen, cfg, seed + iteration, output_dir))
        log.info("best-of-%d iteration %d: %s", cfg.samples, iteration, metrics)
        history.append(metrics)
        if on_iteration is not None:
            on_iteration(iteration, metrics)
    return history


def _draw(examples: Sequence[RLExample], size: int | None, seed: int) -> list[RLExample]:
    """`size` of the examples, drawn without replacement with `seed` (all of them if size is None
    or not smaller): sampling n profiles of every RL example of a phase can cost more than the RL
    updates after it, so each iteration may see a different part of them instead."""
    if size is None or size >= len(examples):
        return list(examples)
    return random.Random(seed).sample(list(examples), size)


def _best_profiles(
    policy: PeftModel, tokenizer: Any, examples: Sequence[RLExample], reward: RankReward, cfg: BestOfNConfig, seed: int
) -> tuple[list[tuple[str, str]], dict]:
    """(prompt, best profile) of every example whose best sample beats its samples' mean."""
    from lpt_core.generation.hf_backend import TransformersGenerator

    sampling = GenerationConfig(**cfg.sampling.model_dump(), batch_size=cfg.batch_size, seed=seed)
    with torch.random.fork_rng(), merged_copy(policy) as merged:
        generator = TransformersGenerator(merged, tokenizer, sampling, model_id="best-of-n")
        drawn = generator.sample([example.prompt for example in examples], cfg.samples)
    profiles = [profile for samples in drawn for profile in samples]
    rows = [example for example in examples for _ in range(cfg.samples)]
    scores = np.asarray(rewards_of(reward, [p.text for p in profiles], rows)).reshape(len(examples), cfg.samples)
    best = scores.argmax(axis=1)
    useful = scores.max(axis=1) > scores.mean(axis=1)
    chosen = [
        (example.prompt, profiles[i * cfg.samples + int(best[i])].text)
        for i, example in enumerate(examples)
        if useful[i] and profiles[i * cfg.samples + int(best[i])].text
    ]
    metrics = {
        "examples": float(len(examples)),
        "sample_reward": float(scores.mean()),
        "best_reward": float(scores.max(axis=1).mean()),
        "examples_kept": float(len(chosen)),
    }
    return chosen, metrics


def _fine_tune(
    policy: PeftModel, tokenizer: Any, chosen: list[tuple[str, str]], cfg: BestOfNConfig, seed: int, output_dir: Path
) -> dict[str, float]:
    """SFTTrainer on (prompt, profile + end of turn) pairs, loss on the completion only. Returns the
    mean training loss (sft_loss) and the mean loss of the last epoch's steps (sft_final_loss):
    how far the adapter got to its targets, which the mean over all epochs hides."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    end_of_turn = _end_of_turn_token(tokenizer)
    # SFTTrainer appends the tokenizer's eos to each completion unless it ends with it: a copy whose
    # eos is the end-of-turn token makes the completion end exactly where a profile ends, and leaves
    # the caller's tokenizer and the model's generation config untouched.
    sft_tokenizer = copy.deepcopy(tokenizer)
    sft_tokenizer.eos_token = end_of_turn
    dataset = Dataset.from_list([{"prompt": p, "completion": text + end_of_turn} for p, text in chosen])
    on_cuda = policy.device.type == "cuda"
    args = SFTConfig(
        output_dir=str(output_dir),
        seed=seed,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        per_device_train_batch_size=cfg.micro_batch_size,
        completion_only_loss=True,
        max_length=None,
        # TRL turns it on by default, and would leave it on in the policy the RL updates train.
        gradient_checkpointing=False,
        use_cpu=not on_cuda,
        bf16=on_cuda and policy.dtype == torch.bfloat16,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=1,
    )
    policy.train()
    trainer = SFTTrainer(model=policy, args=args, train_dataset=dataset, processing_class=sft_tokenizer)
    result = trainer.train()
    policy.eval()
    return {"sft_loss": float(result.training_loss), "sft_final_loss": _last_epoch_loss(trainer.state.log_history, cfg.epochs)}


def _last_epoch_loss(log_history: list[dict], epochs: float) -> float:
    """Mean of the per-step losses logged in the last epoch (TRL logs every step here)."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry and entry["epoch"] > epochs - 1 + 1e-9]
    return float(np.mean(losses)) if losses else float("nan")


def _end_of_turn_token(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in vocab:
            return token
    raise ValueError(f"the tokenizer has none of the end-of-turn tokens {END_OF_TURN_TOKENS}")
