"""The RL algorithms the profile writer can be trained with, in one place.

Each entry says how many samples per prompt the algorithm compares and which `training.rl`
settings it does not read, so a recipe that sets one of those gets an error instead of a value
that is silently ignored. config.RLConfig.algorithm accepts exactly these names; the runner is
chosen in lpt_core.training.rl. Adding an algorithm is an entry here plus its runner.
"""

from __future__ import annotations

from dataclasses import dataclass

# Settings only REBEL's own loop reads (lpt_core.training.rebel): TRL's trainers take one
# optimizer step per batch, with no line search and no regression scale, and normalise rewards
# their own way.
_REBEL_ONLY = ("passes_per_batch", "max_backtracks", "eta", "reward_whitening")


@dataclass(frozen=True)
class RLAlgorithm:
    name: str
    description: str
    min_samples_per_prompt: int
    max_samples_per_prompt: int | None  # None: no upper bound
    unused_settings: tuple[str, ...]  # training.rl fields it does not read
    uses_trl: bool  # run by TRL's trainer (lpt_core.training.trl_trainers), not our own loop


RL_ALGORITHMS: dict[str, RLAlgorithm] = {
    algorithm.name: algorithm
    for algorithm in (
        RLAlgorithm("rebel", "REBEL (the paper): regression of log-ratio gaps on reward gaps of 2 samples",
                    2, 2, (), uses_trl=False),
        RLAlgorithm("grpo", "GRPO (TRL's GRPOTrainer): group-normalised advantages", 2, None, _REBEL_ONLY,
                    uses_trl=True),
        RLAlgorithm("rloo", "RLOO (TRL's RLOOTrainer): leave-one-out baselines", 2, None, _REBEL_ONLY,
                    uses_trl=True),
    )
}
