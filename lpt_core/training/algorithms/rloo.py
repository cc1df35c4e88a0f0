"""RLOO, as TRL's RLOOTrainer runs it (lpt_core.training.trl_trainers): its settings, passed to
TRL's config by name, and its runner."""

from __future__ import annotations

from typing import ClassVar, Literal

from lpt_core.training.algorithms.base import AlgorithmSettings, RLAlgorithm
from lpt_core.training.algorithms.trl_runner import trl_runner


class RLOOSettings(AlgorithmSettings):
    """`training.rl.algorithm: {name: rloo, ...}`: TRL's RLOOConfig keyword of the same name, at
    TRL's default."""

    description: ClassVar[str] = "RLOO (TRL's RLOOTrainer): leave-one-out baselines"

    name: Literal["rloo"] = "rloo"
    # Divide the leave-one-out advantages by their batch std.
    normalize_advantages: bool = False


ALGORITHM = RLAlgorithm(RLOOSettings, trl_runner("RLOOConfig", "RLOOTrainer"))
