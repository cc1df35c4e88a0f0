"""The trained systems the report compares: the method and its ablations, by name.

Each variant is a schedule (which phases alternate) plus overrides of the recipe's training
section, so every variant's recipe, and with it its checkpoint folder and run parameters, says
exactly what was trained. A recipe value a variant overrides is reported (overridden_settings),
not silently replaced: the training asset logs it and shows it in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lpt_core.merging import deep_merge
from lpt_core.training.algorithms.base import AlgorithmSettings

# The config checks a recipe's training.variants against VARIANTS, so this module imports neither
# the config (which imports it) nor torch: the recipe's own types are read from the recipe.
if TYPE_CHECKING:
    from lpt_core.config import Recipe


@dataclass(frozen=True)
class TrainingVariant:
    name: str
    schedule: str  # lpt_core.training.alternation.Variant
    description: str
    overrides: dict = field(default_factory=dict)

    @property
    def trains_generator(self) -> bool:
        """False for CL only: its LLM stays the base model, so its profiles are the zero-shot ones."""
        return self.schedule != "cl_only"

    def recipe_for(self, recipe: Recipe) -> Recipe:
        """The recipe this variant trains with: `recipe` with the variant's overrides applied."""
        merged = deep_merge(recipe.model_dump(), self.overrides)
        merged["training"]["rl"]["algorithm"] = self._algorithm_section(recipe)
        return type(recipe).model_validate(merged)

    def _algorithm_section(self, recipe: Recipe) -> dict:
        """training.rl.algorithm of the variant's recipe. Naming the recipe's own algorithm keeps
        the recipe's settings of it; naming another starts from that one's defaults, since one
        recipe serves every variant and its settings (REBEL's passes, say) are another algorithm's."""
        current = recipe.training.rl.algorithm.model_dump()
        named = self.overrides.get("training", {}).get("rl", {}).get("algorithm")
        if named is None:
            return current
        section = {"name": named} if isinstance(named, str) else dict(named)
        return {**current, **section} if section["name"] == current["name"] else section

    def overridden_settings(self, recipe: Recipe) -> dict[str, tuple[Any, Any]]:
        """The recipe's settings this variant replaces with another value, by dotted key:
        (the recipe's value, the variant's). A recipe cannot set these for this variant."""
        changed = {}
        for key, value in _dotted(self.overrides):
            current: Any = recipe
            for part in key.split("."):
                current = getattr(current, part)
            if isinstance(current, AlgorithmSettings) and isinstance(value, str):
                current = current.name  # the variant names the algorithm: compare names
            if current != value:
                changed[key] = (current, value)
        return changed


def _dotted(overrides: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """{"a": {"b": 1}} -> [("a.b", 1)]."""
    pairs = []
    for name, value in overrides.items():
        key = f"{prefix}{name}"
        pairs.extend(_dotted(value, f"{key}.") if isinstance(value, dict) else [(key, value)])
    return pairs


VARIANTS: dict[str, TrainingVariant] = {
    v.name: v
    for v in (
        TrainingVariant(
            "langptune_rebel", "langptune", "LangPTune: CL and REBEL in alternation (the paper)",
            {"training": {"rl": {"algorithm": "rebel"}, "contrastive": {"item_bias": False}}},
        ),
        # GRPO and RLOO learn from a group of samples per prompt (each sample's baseline is the
        # others' mean): 4 per prompt, where REBEL compares exactly 2.
        TrainingVariant(
            "langptune_grpo", "langptune", "LangPTune with GRPO (TRL, 4 samples per prompt) in place of REBEL",
            {"training": {"rl": {"algorithm": "grpo", "samples_per_prompt": 4}, "contrastive": {"item_bias": False}}},
        ),
        TrainingVariant(
            "langptune_rloo", "langptune", "LangPTune with RLOO (TRL, 4 samples per prompt) in place of REBEL",
            {"training": {"rl": {"algorithm": "rloo", "samples_per_prompt": 4}, "contrastive": {"item_bias": False}}},
        ),
        # Rejection-sampling fine-tuning (lpt_core.training.best_of_n) at the start of each encoder
        # phase, alone or followed by REBEL.
        TrainingVariant(
            "best_of_n", "langptune",
            "Best-of-n fine-tuning of the LLM (4 samples per example, SFT on the best) in place of RL",
            {"training": {"rl": {"updates_per_round": 0}, "best_of_n": {"iterations": 1},
                          "contrastive": {"item_bias": False}}},
        ),
        TrainingVariant(
            "langptune_bon", "langptune", "LangPTune with a best-of-n warm start before the REBEL updates",
            {"training": {"rl": {"algorithm": "rebel"}, "best_of_n": {"iterations": 1},
                          "contrastive": {"item_bias": False}}},
        ),
        TrainingVariant(
            "cl_only", "cl_only", "CL only: recommender trained on zero-shot profiles, LLM frozen",
            {"training": {"contrastive": {"item_bias": False}}},
        ),
        TrainingVariant(
            "rl_only", "rl_only", "RL only (REBEL): LLM trained against the frozen base recommender",
            {"training": {"rl": {"algorithm": "rebel"}}},
        ),
        TrainingVariant(
            "langptune_item_bias", "langptune",
            "LangPTune (REBEL) with a learned per-item bias in the recommender (beyond the paper)",
            {"training": {"rl": {"algorithm": "rebel"}, "contrastive": {"item_bias": True, "head": {"kind": "none"}}}},
        ),
        # The head variants keep the encoder frozen (steps_per_round 0): fine-tuning the whole
        # encoder on a few users' profiles memorises them (issue 12); the head is fitted on all of
        # the session's train profiles and stopped early on the val ones.
        TrainingVariant(
            "langptune_head", "langptune",
            "LangPTune (REBEL) with a frozen encoder and a linear item-side head (beyond the paper)",
            {"training": {"rl": {"algorithm": "rebel"},
                          "contrastive": {"item_bias": False, "steps_per_round": 0, "head": {"kind": "linear"}}}},
        ),
        # Best-of-n alone, selecting by the mean log-rank of the next item and the user's next 3
        # window targets, over the hybrid head's frozen reward: on the RL sweep's yardstick (greedy
        # profiles of ~240 users it never trained on) two iterations lifted the NDCG of held-out
        # later items, +0.0050 [+0.0007, +0.0096], where 7 REBEL updates on the same probe moved it
        # +0.0002 [-0.0023, +0.0026] (bench/results/best_of_n_sweep_float32.md,
        # rl_sweep_float32_probe256.md). How many examples per iteration and the fine-tuning rate
        # are the recipe's (training.best_of_n).
        TrainingVariant(
            "best_of_n_hybrid", "langptune",
            "Best-of-n fine-tuning of the LLM (2 iterations, 4 samples, no RL) with a frozen encoder and a "
            "hybrid item-side head (beyond the paper)",
            {"training": {"rl": {"updates_per_round": 0, "reward": "log_rank", "reward_targets": 4},
                          "best_of_n": {"iterations": 2},
                          "contrastive": {"item_bias": False, "steps_per_round": 0, "head": {"kind": "hybrid"}}}},
        ),
        TrainingVariant(
            "langptune_hybrid", "langptune",
            "LangPTune (REBEL) with a frozen encoder and a hybrid item-side head: linear map plus "
            "per-item residual vectors (beyond the paper)",
            {"training": {"rl": {"algorithm": "rebel"},
                          "contrastive": {"item_bias": False, "steps_per_round": 0, "head": {"kind": "hybrid"}}}},
        ),
    )
}


def get_variant(name: str) -> TrainingVariant:
    if name not in VARIANTS:
        raise KeyError(f"unknown training variant {name!r} (known: {', '.join(VARIANTS)})")
    return VARIANTS[name]
