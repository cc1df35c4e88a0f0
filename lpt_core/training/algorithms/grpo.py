"""GRPO, as TRL's GRPOTrainer runs it (lpt_core.training.trl_trainers): its settings, passed to
TRL's config by name, and its runner."""

from __future__ import annotations

from typing import ClassVar, Literal

from lpt_core.training.algorithms.base import AlgorithmSettings, RLAlgorithm
from lpt_core.training.algorithms.trl_runner import trl_runner


class GRPOSettings(AlgorithmSettings):
    """`training.rl.algorithm: {name: grpo, ...}`: TRL's GRPOConfig keywords of the same names,
    at TRL's defaults."""

    description: ClassVar[str] = "GRPO (TRL's GRPOTrainer): group-normalised advantages"

    name: Literal["grpo"] = "grpo"
    # How rewards are scaled into advantages: by the std of the prompt's group, of the whole batch,
    # or not at all (Dr. GRPO's advice: the group std adds a question-difficulty bias).
    scale_rewards: Literal["group", "batch", "none"] = "group"
    # How token losses are aggregated; "dapo" normalises by the batch's active tokens (no length bias).
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"


ALGORITHM = RLAlgorithm(GRPOSettings, trl_runner("GRPOConfig", "GRPOTrainer"))
