"""The profile writer as a policy: LoRA on the base generator, how it is loaded for training, and
the trained writer for inference on the recipe's generation backend (serving and the
trained_profiles asset import this module, not the alternation loop)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lpt_core.config import ModelsConfig, Recipe, RLConfig
from lpt_core.generation.factory import check_backend, generator_for_policy
from lpt_core.models import load_generator, pick_device

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel

    from lpt_core.generation.base import ProfileGenerator


def make_policy(base_model: PreTrainedModel, cfg: RLConfig) -> PeftModel:
    """Wrap `base_model` (in place) with a fresh LoRA adapter on all linear layers.

    LoRA B starts at zero, so the new policy equals the base model, which stays reachable as the
    KL reference with `policy.disable_adapter()`.
    """
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    if cfg.gradient_checkpointing:
        base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # With frozen embeddings nothing before the first block needs grad; checkpointed blocks
        # still must see an input that does, or their LoRA weights get none.
        base_model.enable_input_require_grads()
    return get_peft_model(base_model, lora)


@contextlib.contextmanager
def merged_copy(policy: PeftModel, dtype: torch.dtype | None = None) -> Iterator[PreTrainedModel]:
    """A copy of `policy` with its LoRA folded into the weights (cast to `dtype` if given), for the
    duration of a bulk generation: an un-merged adapter adds two small matmuls to every linear
    layer at every decode step (measured in float32 on 2 cores: the merged copy, merge included,
    generates 1.09x as fast at batch 16 and 1.24x at batch 32; bench/results/generation_cpu.md).
    The policy itself is left as it is (merging in place and unmerging after does not restore
    bf16 weights exactly, so the policy would drift at every merge)."""
    merged = copy.deepcopy(policy).merge_and_unload().eval()
    if dtype is not None:
        merged.to(dtype)
    try:
        yield merged
    finally:
        del merged


def load_adapter_weights(policy: Any, adapter_dir: Path) -> None:
    """Copy a saved adapter's weights into `policy`'s adapter; every saved weight must find its place."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    loaded = set_peft_model_state_dict(policy, load_peft_weights(str(adapter_dir), device=str(policy.device)))
    if loaded.unexpected_keys:
        raise ValueError(f"{adapter_dir}: weights with no place in the policy: {loaded.unexpected_keys[:5]}")


def policy_models(recipe: Recipe) -> ModelsConfig:
    """The models settings the policy is loaded with: on a CPU it trains in float32 whatever
    models.dtype says. In bf16 a LoRA delta small enough not to overshoot REBEL's regression is
    rounded away when added to the bf16 activations, so many updates could keep no step (measured
    on SmolLM2: the batch loss fell in 75% of bf16 updates vs 100% in float32, and the two log-prob
    passes disagreed by 0.4 nat vs 1e-5; docs/rl_step.md). On CUDA the recipe's dtype is kept
    (bf16 autocast with float32 adapter weights), as measured at the paper's shape."""
    if pick_device(recipe.models.device).type != "cpu":
        return recipe.models
    return recipe.models.model_copy(update={"dtype": "float32"})


def load_trained_policy(recipe: Recipe, adapter_dir: Path) -> tuple[PeftModel, Any]:
    """The base generator with the saved LoRA adapter loaded into it (not merged), and its tokenizer."""
    base, tokenizer = load_generator(recipe.models.generator, recipe.models)
    policy = make_policy(base, recipe.training.rl)
    load_adapter_weights(policy, Path(adapter_dir))
    return policy, tokenizer


def load_trained_generator(recipe: Recipe, adapter_dir: Path) -> tuple[Any, Any]:
    """The trained profile writer for inference: base model + saved LoRA, merged (generation with
    an un-merged adapter runs at about half the speed)."""
    policy, tokenizer = load_trained_policy(recipe, adapter_dir)
    return policy.merge_and_unload().eval(), tokenizer


def trained_profile_writer(recipe: Recipe, adapter_dir: Path, *, model_id: str) -> ProfileGenerator:
    """The trained profile writer on the backend the recipe's generation.backend names. A backend
    that cannot run here fails before the model is loaded, with make_generator's error."""
    check_backend(recipe.models, recipe.generation)
    policy, tokenizer = load_trained_policy(recipe, adapter_dir)
    return generator_for_policy(
        policy, tokenizer, recipe.models, recipe.generation, model_id=model_id,
        gpu_memory_utilization=recipe.training.rl.vllm_gpu_memory_utilization,
    )
