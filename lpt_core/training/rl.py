"""The RL ("encoder") phase of one round: LoRA on the profile writer, trained on the rank reward.

`run_rl_phase` runs cfg.updates_per_round updates with the algorithm the recipe names, through its
registered runner (lpt_core.training.algorithms: REBEL, the method's, and TRL's GRPO and RLOO, with
the same reward, so they compare on equal terms), and measures the phase's learning curve
(RewardProbe).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lpt_core.config import RLConfig, SamplingConfig
from lpt_core.training.algorithms import rl_algorithm
from lpt_core.training.algorithms.base import RLPhase, UpdateCallback
from lpt_core.training.examples import RLExample, rewards_of
from lpt_core.training.policy import merged_copy

if TYPE_CHECKING:  # type hints only: the reward pulls in faiss, which rollouts never need
    from peft import PeftModel

    from lpt_core.training.reward import RankReward

log = logging.getLogger(__name__)


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
        probe = RewardProbe(probe_set(examples, cfg.probe_examples), policy, tokenizer, reward, cfg.sampling)
        on_update = probe.wrap(on_update, every=cfg.probe_every, last=cfg.updates_per_round)
    run = rl_algorithm(cfg.algorithm.name).run
    return run(RLPhase(policy, tokenizer, examples, reward, cfg, seed, output_dir, on_update))


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
        self, examples: Sequence[RLExample], policy: PeftModel, tokenizer: Any, reward: RankReward,
        sampling: SamplingConfig,
    ) -> None:
        from lpt_core.config import GenerationConfig

        self.examples = list(examples)
        self.reward = reward
        # The phase's own decoding, greedy: the probe measures the policy, not the sampling noise.
        self.greedy = GenerationConfig(**{**sampling.model_dump(), "do_sample": False}, batch_size=len(self.examples))
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
