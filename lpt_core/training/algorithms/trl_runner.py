"""The runner of an algorithm that one of TRL's trainers runs (grpo.py, rloo.py): TRL's trainer
driven by lpt_core.training.trl_trainers, the algorithm's own settings passed as the TRL config's
keywords of the same names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lpt_core.training.algorithms.base import Runner, UpdateCallback

if TYPE_CHECKING:
    from peft import PeftModel

    from lpt_core.config import RLConfig
    from lpt_core.training.examples import RLExample
    from lpt_core.training.reward import RankReward


def trl_runner(config_class: str, trainer_class: str) -> Runner:
    """The runner of TRL's `trainer_class` configured by its `config_class` (names in `trl`)."""

    def run(
        policy: PeftModel,
        tokenizer: Any,
        examples: Sequence[RLExample],
        reward: RankReward,
        cfg: RLConfig,
        seed: int,
        output_dir: Path,
        on_update: UpdateCallback | None,
    ) -> list[dict]:
        import trl

        from lpt_core.training.trl_trainers import run_trl_updates

        trainer = (getattr(trl, config_class), getattr(trl, trainer_class))
        return run_trl_updates(trainer, policy, tokenizer, examples, reward, cfg, seed, output_dir, on_update)

    return run
