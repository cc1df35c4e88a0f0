"""REBEL (the method's algorithm): its settings and its runner; the trainer is
lpt_core.training.rebel."""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

from pydantic import Field

from lpt_core.training.algorithms.base import AlgorithmSettings, RLAlgorithm, RLPhase

log = logging.getLogger(__name__)

RewardWhitening = Literal["batch", "within_prompt"]


class RebelSettings(AlgorithmSettings):
    """`training.rl.algorithm: {name: rebel, ...}`."""

    description: ClassVar[str] = "REBEL (the paper): regression of log-ratio gaps on reward gaps of 2 samples"
    # The regression compares exactly the two samples of one prompt.
    min_samples_per_prompt: ClassVar[int] = 2
    max_samples_per_prompt: ClassVar[int | None] = 2

    name: Literal["rebel"] = "rebel"
    # Optimizer steps on each rollout batch, each on the gradient of the whole batch's loss (the
    # reference's 4 passes with one mini-batch per pass).
    passes_per_batch: int = Field(4, ge=1)
    # A step that raises its own batch's loss is undone and retried at half the step size, up to
    # this many times per update (a backtracking line search; 0 turns the check off).
    max_backtracks: int = Field(4, ge=0)
    # The regression scale on the reward difference (reference 1).
    eta: float = Field(1.0, gt=0)
    # Standardise the shaped rewards over the whole batch (the reference) or each sample's deviation
    # from its prompt's mean (lpt_core.training.rebel.shape_and_whiten).
    reward_whitening: RewardWhitening = "batch"


def run(phase: RLPhase) -> list[dict]:
    """REBEL updates on batches of cfg.prompts_per_update prompts; REBEL writes nothing to
    phase.output_dir."""
    from lpt_core.training.rebel import RebelTrainer
    from lpt_core.training.rollout import prompt_batches

    cfg = phase.cfg
    trainer = RebelTrainer(phase.policy, phase.tokenizer, phase.reward, cfg, phase.seed)
    batches = prompt_batches(phase.examples, cfg.prompts_per_update, phase.seed)
    history = []
    for step in range(1, cfg.updates_per_round + 1):
        metrics = trainer.update(next(batches))
        log.info("REBEL update %d/%d: %s", step, cfg.updates_per_round,
                 ", ".join(f"{key}={value:.4g}" for key, value in metrics.items()))
        history.append(metrics)
        if phase.on_update is not None:
            phase.on_update(step, metrics)
    return history


ALGORITHM = RLAlgorithm(RebelSettings, run)
