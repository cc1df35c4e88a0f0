"""The runner of an algorithm that one of TRL's trainers runs (grpo.py, rloo.py): TRL's trainer
driven by lpt_core.training.trl_trainers, the algorithm's own settings passed as the TRL config's
keywords of the same names."""

from __future__ import annotations

from lpt_core.training.algorithms.base import RLPhase, Runner


def trl_runner(config_class: str, trainer_class: str) -> Runner:
    """The runner of TRL's `trainer_class` configured by its `config_class` (names in `trl`)."""

    def run(phase: RLPhase) -> list[dict]:
        import trl

        from lpt_core.training.trl_trainers import run_trl_updates

        return run_trl_updates((getattr(trl, config_class), getattr(trl, trainer_class)), phase)

    return run
