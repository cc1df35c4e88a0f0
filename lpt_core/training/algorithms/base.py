"""What an RL algorithm is to the pipeline: its own settings model and its runner.

An algorithm's module defines both and ends with `ALGORITHM = RLAlgorithm(<Settings>, run)`;
lpt_core.training.algorithms registers the module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lpt_core.strict_model import StrictModel

if TYPE_CHECKING:
    from pathlib import Path

    from peft import PeftModel

    from lpt_core.config import RLConfig
    from lpt_core.training.examples import RLExample
    from lpt_core.training.reward import RankReward

UpdateCallback = Callable[[int, dict], None]


class AlgorithmSettings(StrictModel):
    """An algorithm's own section of a recipe, `training.rl.algorithm`: its `name` (a Literal
    default in each subclass) and the settings only it reads. The settings every algorithm reads
    (updates, prompts and samples, learning rate, KL, reward, sampling, LoRA) are RLConfig's."""

    name: str
    description: ClassVar[str]
    # rl.samples_per_prompt's bounds: how many samples of one prompt the algorithm compares.
    min_samples_per_prompt: ClassVar[int] = 2
    max_samples_per_prompt: ClassVar[int | None] = None  # None: no upper bound


@dataclass(frozen=True)
class RLPhase:
    """What an algorithm's runner trains: cfg.updates_per_round updates of `policy`'s LoRA on
    `examples` under `reward`, calling `on_update(step, metrics)` after each (step from 1).
    cfg.algorithm is the algorithm's own settings; `output_dir` is scratch space (TRL's trainers
    need one)."""

    policy: PeftModel
    tokenizer: Any
    examples: Sequence[RLExample]
    reward: RankReward
    cfg: RLConfig
    seed: int
    output_dir: Path
    on_update: UpdateCallback | None = None


# A runner: the phase's updates, one metrics dict per update.
Runner = Callable[[RLPhase], list[dict]]


@dataclass(frozen=True)
class RLAlgorithm:
    settings: type[AlgorithmSettings]
    run: Runner

    @property
    def name(self) -> str:
        return self.settings.model_fields["name"].default
