"""The RL ("encoder") phase of one round: LoRA on the profile writer, trained on the rank reward.

`run_rl_phase` runs cfg.updates_per_round updates with the algorithm the recipe names: REBEL (the
method's, lpt_core.training.rebel) or TRL's GRPO / RLOO (lpt_core.training.trl_trainers) with the
same reward, so the three can be compared on equal terms.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lpt_core.config import RLConfig
from lpt_core.rl_algorithms import RL_ALGORITHMS
from lpt_core.training.examples import RLExample, rewards_of
from lpt_core.training.policy import merged_copy

if TYPE_CHECKING:  # type hints only: the reward pulls in faiss, which rollouts never need
    from peft import PeftModel

    from lpt_core.training.reward import RankReward

log = logging.getLogger(__name__)

UpdateCallback = Callable[[int, dict], None]


def run_rl_phase(
    policy: PeftModel,
    tokenizer: Any,
    examples: Sequence[RLExample],
    reward: RankReward,
    cfg: RLConfig,
    seed: int,
    output_dir: Path,
    on_update: UpdateCallback | None = None,
) -> list[dict]:
    """cfg.updates_per_round updates of `policy` with cfg.algorithm; the per-update metrics.

    `on_update(step, metrics)` is called after each update (step counts from 1). `output_dir` is
    scratch space for TRL's trainer; REBEL writes nothing. Launched in several processes, every
    process draws the same batches and REBEL rolls out each process's share of them
    (lpt_core.training.rebel); TRL's trainers batch per process on their own.
    """
    if not examples:
        raise ValueError("run_rl_phase needs at least one example")
    if cfg.updates_per_round == 0:
        return []
    if cfg.probe_examples:
        probe = RewardProbe(probe_set(examples, cfg.probe_examples), policy, tokenizer, reward, cfg.max_new_tokens)
        on_update = probe.wrap(on_update, every=cfg.probe_every, last=cfg.updates_per_round)
    if RL_ALGORITHMS[cfg.algorithm].uses_trl:
        from lpt_core.training.trl_trainers import run_trl_updates

        return run_trl_updates(
            cfg.algorithm, policy, tokenizer, examples, reward, cfg, seed, output_dir, on_update
        )
    return _run_rebel(policy, tokenizer, examples, reward, cfg, seed, on_update)


def _run_rebel(
    policy: PeftModel,
    tokenizer: Any,
    examples: Sequence[RLExample],
    reward: RankReward,
    cfg: RLConfig,
    seed: int,
    on_update: UpdateCallback | None,
) -> list[dict]:
    from lpt_core.training.rebel import RebelTrainer

    trainer = RebelTrainer(policy, tokenizer, reward, cfg, seed)
    batches = prompt_batches(examples, cfg.prompts_per_update, seed)
    history = []
    for step in range(1, cfg.updates_per_round + 1):
        metrics = trainer.update(next(batches))
        log.info("REBEL update %d/%d: %s", step, cfg.updates_per_round, _brief(metrics))
        history.append(metrics)
        if on_update is not None:
            on_update(step, metrics)
    return history


def probe_set(examples: Sequence[RLExample], size: int) -> list[RLExample]:
    """`size` examples evenly spaced through `examples`: the same set in every round and variant
    trained on the same examples, whatever the seeds."""
    stride = max(1, len(examples) // size)
    return list(examples[::stride][:size])


class RewardProbe:
    """The RL phase's learning curve: the mean reward of GREEDY profiles of a fixed probe set,
    under the phase's (frozen) reward, before the first update (or best-of-n iteration) and every
    few after it.

    The sampled rollout reward is too noisy to show learning at a few prompts per update; the
    probe's greedy profiles move only when the policy does. Values are comparable within a phase
    (a later round's reward ranks with a retrained recommender)."""

    def __init__(
        self, examples: Sequence[RLExample], policy: PeftModel, tokenizer: Any, reward: RankReward, max_new_tokens: int
    ) -> None:
        from lpt_core.config import GenerationConfig

        self.examples = list(examples)
        self.reward = reward
        self.greedy = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, batch_size=len(self.examples))
        self.policy = policy
        self.tokenizer = tokenizer

    def __call__(self) -> float:
        """Mean reward of the probe set's greedy profiles under the policy as it is now."""
        return float(np.mean(self.per_example()))

    def per_example(self) -> np.ndarray:
        """The reward of each probe example's greedy profile, in the probe's order (for paired
        intervals between two points of a phase)."""
        from lpt_core.generation.hf_backend import TransformersGenerator

        # fork_rng: the probe must not move the sampling's random stream.
        with torch.random.fork_rng(), merged_copy(self.policy) as merged:
            generator = TransformersGenerator(merged, self.tokenizer, self.greedy, model_id="rl-probe")
            profiles = generator.generate([example.prompt for example in self.examples])
        return np.asarray(rewards_of(self.reward, [profile.text for profile in profiles], self.examples))

    def wrap(self, on_update: UpdateCallback | None, every: int, last: int) -> UpdateCallback:
        """`on_update` with "probe_reward" (after the step) added every `every` steps and after
        step `last`, and "probe_reward_start" (before any step) added to the first step."""
        start = self()
        log.info("probe: greedy reward %.4f before the first step (%d examples)", start, len(self.examples))

        def probed(step: int, metrics: dict) -> None:
            if step == 1:
                metrics["probe_reward_start"] = start
            if step % every == 0 or step == last:
                metrics["probe_reward"] = self()
                # A step is an RL update or a best-of-n iteration, whichever the phase wraps.
                log.info("probe: greedy reward %.4f after step %d", metrics["probe_reward"], step)
            if on_update is not None:
                on_update(step, metrics)

        return probed


def prompt_batches(examples: Sequence[RLExample], size: int, seed: int) -> Iterator[list[RLExample]]:
    """Endless batches of `size` examples: a seeded shuffle, reshuffled at each pass over the data,
    so every example is used once per pass (a batch may straddle two passes)."""
    rng = random.Random(seed)
    pending: list[RLExample] = []
    while True:
        while len(pending) < size:
            epoch = list(examples)
            rng.shuffle(epoch)
            pending.extend(epoch)
        yield pending[:size]
        pending = pending[size:]


def _brief(metrics: dict) -> str:
    return ", ".join(f"{key}={value:.4g}" for key, value in metrics.items())
