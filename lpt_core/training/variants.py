"""The trained systems the report compares: the method and its ablations, by name.

Each variant is a schedule (which phases alternate) plus overrides of the recipe's training
section, so every variant's recipe, and with it its checkpoint folder and run parameters, says
exactly what was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lpt_core.config import Recipe, RecipeError, deep_merge


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
        return Recipe.model_validate(deep_merge(recipe.model_dump(), self.overrides))


VARIANTS: dict[str, TrainingVariant] = {
    v.name: v
    for v in (
        TrainingVariant(
            "langptune_rebel", "langptune", "LangPTune: CL and REBEL in alternation (the paper)",
            {"training": {"rl": {"algorithm": "rebel"}, "contrastive": {"item_bias": False}}},
        ),
        TrainingVariant(
            "langptune_grpo", "langptune", "LangPTune with GRPO (TRL) in place of REBEL",
            {"training": {"rl": {"algorithm": "grpo"}, "contrastive": {"item_bias": False}}},
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
            {"training": {"rl": {"algorithm": "rebel"}, "contrastive": {"item_bias": True}}},
        ),
    )
}


def get_variant(name: str) -> TrainingVariant:
    if name not in VARIANTS:
        raise RecipeError(f"training.variants: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    return VARIANTS[name]
