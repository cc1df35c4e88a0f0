"""The RL algorithms the profile writer trains with: one module each, registered here.

An algorithm's module (rebel.py, grpo.py, rloo.py beside this file) holds its settings model, the
recipe's `training.rl.algorithm` section, and its runner, and ends with `ALGORITHM =
RLAlgorithm(<Settings>, run)` (lpt_core.training.algorithms.base). Everything the runners share
(rollouts of k samples per prompt, prompt batches) is lpt_core.training.rollout's.

Entries are import paths, as package entry points are: the config reads an algorithm's settings
model through `rl_algorithm` without importing a trainer, and the trainers, which import the
config, stay out of the config's imports. An algorithm module therefore imports torch, TRL and the
trainers inside its runner, never at its top. Adding an algorithm is its module and one line here
(docs/extending.md).
"""

from __future__ import annotations

import importlib

from lpt_core.training.algorithms.base import RLAlgorithm

RL_ALGORITHM_MODULES: dict[str, str] = {
    "rebel": "lpt_core.training.algorithms.rebel",
    "grpo": "lpt_core.training.algorithms.grpo",
    "rloo": "lpt_core.training.algorithms.rloo",
}


def rl_algorithm(name: str) -> RLAlgorithm:
    """The registered algorithm called `name`; the error lists the valid names."""
    if name not in RL_ALGORITHM_MODULES:
        raise ValueError(f"unknown rl.algorithm {name!r}; valid: {', '.join(RL_ALGORITHM_MODULES)}")
    algorithm = importlib.import_module(RL_ALGORITHM_MODULES[name]).ALGORITHM
    if algorithm.name != name:
        raise ValueError(f"{RL_ALGORITHM_MODULES[name]} registers {algorithm.name!r}, listed as {name!r}")
    return algorithm
