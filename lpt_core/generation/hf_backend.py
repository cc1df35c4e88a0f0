"""Profile generation with transformers `generate`: the default backend, on CPU or GPU.

Prompts are batched longest first, so each batch holds prompts of similar length and little compute
goes into padding; results are put back in input order. Several samples of one prompt (best-of-n)
share one prefill of it: its KV cache is copied to each sample, so a prompt costs its compute once
however many samples it gets (prefill is the larger part of a CPU batch,
bench/results/generation_cpu.md). Generation stops at the chat turn's end token rather than
running to a fixed length. On CUDA a static KV cache lets transformers compile
the decode step (about 10x faster per step than the dynamic cache at batch 32, see docs/method.md).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList
from transformers import GenerationConfig as HFGenerationConfig

from lpt_core import models
from lpt_core.config import GenerationConfig, ModelsConfig, SamplingConfig
from lpt_core.generation.base import GeneratedProfile, check_batch_tokenizer, profile_from_tokens, stop_token_ids

log = logging.getLogger(__name__)


class GenerationCancelled(RuntimeError):
    """Generation was ended by the generator's `cancelled` check; its profiles are incomplete."""


class TransformersGenerator:
    """A ProfileGenerator over an already loaded model and tokenizer.

    Training code builds one around the policy it is training (pass a `model_id` naming that
    checkpoint); `load` builds one from a model name in a recipe.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        gen_cfg: GenerationConfig,
        *,
        model_id: str,
        min_new_tokens: int = 0,
        static_cache: bool | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """`min_new_tokens` > 0 forbids ending a turn early; benchmarks use it to decode a fixed
        number of tokens. Profile generation leaves it at 0. `static_cache` None means: on CUDA
        only (a fixed-size KV cache gives the decode step static shapes, so transformers compiles
        it; on CPU the compile costs more than it saves). `cancelled`, checked after every
        decoding step, ends generation there when it returns True, with GenerationCancelled (the
        served model stops so on a server shutdown), so cut profiles never reach a caller."""
        check_batch_tokenizer(tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.gen_cfg = gen_cfg
        self.model_id = model_id
        self._stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
        if static_cache is None:
            static_cache = model.device.type == "cuda"
        self._hf_config = hf_generation_config(
            gen_cfg, self._stop_ids, tokenizer.pad_token_id, static_cache=static_cache
        )
        self._hf_config.min_new_tokens = min_new_tokens or None
        # Continuing from a prefilled cache needs that cache's (dynamic) kind.
        self._dynamic_cache_config = copy.deepcopy(self._hf_config)
        self._dynamic_cache_config.cache_implementation = None
        self._cancelled = cancelled
        self._stopping = StoppingCriteriaList([_Cancelled(cancelled)] if cancelled else [])

    @classmethod
    def load(
        cls, model_name: str, models_cfg: ModelsConfig, gen_cfg: GenerationConfig
    ) -> TransformersGenerator:
        """Load `model_name` (see models.resolve_model) and wrap it."""
        model, tokenizer = models.load_generator(model_name, models_cfg)
        folder = models.resolve_model(model_name)
        model_id = f"{model_name}@{models.weights_fingerprint(folder)}"
        return cls(model, tokenizer, gen_cfg, model_id=model_id)

    def close(self) -> None:
        """Nothing to release: the model is plain tensors in this process, freed with the object."""

    def generate(self, prompts: Sequence[str]) -> list[GeneratedProfile]:
        """One profile per prompt, in input order. Seeded per call: the same prompts, settings and
        batch size give the same profiles on rerun."""
        if not prompts:
            return []
        torch.manual_seed(self.gen_cfg.seed)
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        longest_first = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
        profiles: list[GeneratedProfile | None] = [None] * len(prompts)
        batch_size = self.gen_cfg.batch_size
        for start in range(0, len(longest_first), batch_size):
            indices = longest_first[start : start + batch_size]
            batch_profiles = self._generate_batch([encoded[i] for i in indices])
            for index, profile in zip(indices, batch_profiles, strict=True):
                profiles[index] = profile
        return profiles  # type: ignore[return-value]  # every slot was filled above

    def sample(self, prompts: Sequence[str], samples: int) -> list[list[GeneratedProfile]]:
        """`samples` profiles of each prompt (gen_cfg's decoding: sampling, for draws that differ),
        in input order. Each prompt is prefilled once and its KV cache copied to its samples.
        gen_cfg.batch_size counts sequences, so a batch holds batch_size // samples prompts.
        Seeded per call, as `generate`."""
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        if not prompts:
            return []
        torch.manual_seed(self.gen_cfg.seed)
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        longest_first = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
        drawn: list[list[GeneratedProfile]] = [[] for _ in prompts]
        prompts_per_batch = max(1, self.gen_cfg.batch_size // samples)
        for start in range(0, len(longest_first), prompts_per_batch):
            indices = longest_first[start : start + prompts_per_batch]
            batch_profiles = self._generate_batch([encoded[i] for i in indices], samples)
            for offset, index in enumerate(indices):
                drawn[index] = batch_profiles[offset * samples : (offset + 1) * samples]
        return drawn

    def _generate_batch(self, input_ids: list[list[int]], samples: int = 1) -> list[GeneratedProfile]:
        """The profiles of a batch of prompts, `samples` consecutive rows per prompt."""
        batch = self.tokenizer.pad({"input_ids": input_ids}, padding=True, return_tensors="pt")
        batch = batch.to(self.model.device)
        prompt_width = batch["input_ids"].shape[1]
        started = time.perf_counter()
        with torch.inference_mode():
            if samples == 1:
                output = self.model.generate(**batch, generation_config=self._hf_config, stopping_criteria=self._stopping)
            else:
                output = self._generate_from_shared_prefill(batch["input_ids"], batch["attention_mask"], samples)
        seconds = time.perf_counter() - started
        if self._cancelled is not None and self._cancelled():
            raise GenerationCancelled(f"generation cancelled after {seconds:.1f} s")
        stop_ids = set(self._stop_ids)
        profiles = [
            profile_from_tokens(self.tokenizer, row, stop_ids, finish=self.gen_cfg.finish_profiles)
            for row in output[:, prompt_width:].tolist()
        ]
        _log_batch_speed(profiles, prompt_width, seconds)
        return profiles

    def _generate_from_shared_prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, samples: int
    ) -> torch.Tensor:
        """Prefill every prompt but its last token once, copy the KV cache to `samples` rows per
        prompt, and let `generate` continue from it: it feeds only the tokens the cache lacks (the
        last one) and derives the positions from the full mask, as the prefill below does."""
        prefix_mask = attention_mask[:, :-1]
        positions = (prefix_mask.long().cumsum(-1) - 1).masked_fill(prefix_mask == 0, 0)
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=input_ids[:, :-1], attention_mask=prefix_mask, position_ids=positions,
                   past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(samples)
        return self.model.generate(
            input_ids=input_ids.repeat_interleave(samples, dim=0),
            attention_mask=attention_mask.repeat_interleave(samples, dim=0),
            past_key_values=cache,
            generation_config=self._dynamic_cache_config,
            stopping_criteria=self._stopping,
        )


class _Cancelled(StoppingCriteria):
    """Ends every sequence once `cancelled()` is true."""

    def __init__(self, cancelled: Callable[[], bool]) -> None:
        self.cancelled = cancelled

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.cancelled(), dtype=torch.bool, device=input_ids.device)


def hf_generation_config(
    sampling: SamplingConfig, stop_ids: list[int], pad_token_id: int, *, static_cache: bool = False
) -> HFGenerationConfig:
    """Our decoding settings, with every knob that would otherwise fall back to the model's own
    generation_config (top_k=50, no_repeat_ngram_size...) pinned, so that the stored settings
    describe the decoding completely and match the vLLM backend's.

    `static_cache` asks for a fixed-size KV cache, with which transformers compiles the decode step
    on CUDA (pass `model.device.type == "cuda"`; on CPU the compile is skipped and a static cache
    only costs memory). False leaves the choice to the model's generation_config (dynamic by default)."""
    drawing = (
        {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
        if sampling.do_sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    return HFGenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        eos_token_id=stop_ids,
        pad_token_id=pad_token_id,
        num_beams=1,
        repetition_penalty=sampling.repetition_penalty,
        cache_implementation="static" if static_cache else None,
        **drawing,
    )


def _log_batch_speed(profiles: list[GeneratedProfile], prompt_width: int, seconds: float) -> None:
    # The end-of-turn token was generated too; the padding after an early stop was not.
    new_tokens = sum(p.num_tokens + p.finished for p in profiles)
    log.info(
        "generated %d profiles (prompt width %d) in %.1f s: %.2f users/s, %.1f tokens/s, %d/%d ended their turn",
        len(profiles),
        prompt_width,
        seconds,
        len(profiles) / seconds,
        new_tokens / seconds,
        sum(p.finished for p in profiles),
        len(profiles),
    )
