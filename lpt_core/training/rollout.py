"""REBEL's rollouts: two sampled profiles per prompt, as the token tensors its regression reads.

`GenerateRolloutEngine` samples with transformers' `generate` on the policy itself (any device);
lpt_core.training.vllm_rollout.VLLMRolloutEngine samples on a colocated vLLM engine synced from
it. Both return the same `Rollout`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from lpt_core.config import GenerationConfig, RLConfig
from lpt_core.generation.base import GeneratedProfile, profile_from_tokens
from lpt_core.generation.hf_backend import hf_generation_config

if TYPE_CHECKING:
    from peft import PeftModel

SAMPLES_PER_PROMPT = 2  # REBEL's regression compares exactly two samples of the same prompt


@dataclass
class Rollout:
    """Two sampled profiles per prompt, rows 2i and 2i+1 for prompt i, as full token sequences.

    `completion_mask` marks the profile's tokens and the end-of-turn token that closed it (ending
    the turn is the policy's choice too, so it is trained on it); padding and the prompt are 0.
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    profiles: list[GeneratedProfile]


class RolloutEngine(Protocol):
    """What samples REBEL's rollouts: transformers' generate on the policy (GenerateRolloutEngine)
    or a colocated vLLM engine synced from it (lpt_core.training.vllm_rollout.VLLMRolloutEngine),
    as `training.rl.rollout_backend` says. Everything after the rollout is the same for both."""

    def rollout(self, prompts: Sequence[str], seed: int) -> Rollout:
        """SAMPLES_PER_PROMPT samples of each prompt from the policy as it is now, drawn with `seed`."""
        ...


class GenerateRolloutEngine:
    """Rollouts with transformers' `generate` on the policy itself (any device)."""

    def __init__(
        self,
        policy: PeftModel,
        tokenizer: Any,
        cfg: RLConfig,
        stop_ids: Sequence[int],
        autocast: Callable[[], contextlib.AbstractContextManager],
    ) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids)
        self._autocast = autocast
        # The seed is set per rollout (torch.manual_seed), not in this config.
        sampling = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature)
        # On CUDA a static KV cache gives the decode step fixed shapes, so transformers compiles it.
        self._generation_config = hf_generation_config(
            sampling, self.stop_ids, tokenizer.pad_token_id, static_cache=policy.device.type == "cuda"
        )

    def rollout(self, prompts: Sequence[str], seed: int) -> Rollout:
        """Two samples per prompt, rows 2i and 2i+1 for prompt i, stopped at the turn's end."""
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        paired = [ids for ids in encoded for _ in range(SAMPLES_PER_PROMPT)]
        batch = self.tokenizer.pad({"input_ids": paired}, padding=True, return_tensors="pt")
        batch = batch.to(self.policy.device)
        torch.manual_seed(seed)
        self.policy.eval()
        with torch.no_grad(), self._autocast():
            output = self.policy.generate(**batch, generation_config=self._generation_config)
        return rollout_from_generate(batch["attention_mask"], output, self.tokenizer, self.stop_ids)


def rollout_from_generate(
    prompt_attention_mask: Tensor, output: Tensor, tokenizer: Any, stop_ids: Sequence[int]
) -> Rollout:
    """The Rollout of `generate`'s `output` (left-padded prompts, then the generated tokens, padded
    after each row's stop): each row's completion is kept through its first stop token."""
    generated = output[:, prompt_attention_mask.shape[1] :]
    is_stop = torch.isin(generated, torch.tensor(list(stop_ids), device=generated.device))
    # Keep every token up to and including the first stop token.
    after_stop = (is_stop.long().cumsum(dim=1) - is_stop.long()) > 0
    generated_mask = (~after_stop).long()
    stop_set = set(stop_ids)
    profiles = [profile_from_tokens(tokenizer, row, stop_set) for row in generated.tolist()]
    return Rollout(
        input_ids=output,
        attention_mask=torch.cat([prompt_attention_mask, generated_mask], dim=1),
        completion_mask=torch.cat([torch.zeros_like(prompt_attention_mask), generated_mask], dim=1),
        profiles=profiles,
    )
