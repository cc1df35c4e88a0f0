"""The transformers backend's decoding settings: the KV-cache choice (static on request, otherwise
the model's default) and the repetition penalty."""

from __future__ import annotations

import pytest

from lpt_core.config import GenerationConfig, ModelsConfig
from lpt_core.generation.hf_backend import TransformersGenerator, hf_generation_config
from lpt_core.models import load_generator

CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")
PROMPTS = ["a slow-burn thriller fan", "x", "enjoys comedies and animated films, dislikes musicals"]


@pytest.fixture(scope="module")
def loaded(tiny_lm_folder):
    return load_generator(str(tiny_lm_folder), CPU_FP32)


def test_static_cache_is_requested_only_when_asked():
    settings = GenerationConfig(max_new_tokens=8)

    assert hf_generation_config(settings, [1], 0, static_cache=True).cache_implementation == "static"
    # Unset, not "dynamic": transformers then falls back to the model's own generation_config.
    assert hf_generation_config(settings, [1], 0).cache_implementation is None


def test_the_repetition_penalty_is_ours_not_the_models():
    assert hf_generation_config(GenerationConfig(), [1], 0).repetition_penalty == 1.0
    assert hf_generation_config(GenerationConfig(repetition_penalty=1.3), [1], 0).repetition_penalty == 1.3


def test_generator_uses_a_static_cache_on_cuda_only_unless_told(loaded):
    model, tokenizer = loaded
    settings = GenerationConfig(max_new_tokens=4)

    on_cpu = TransformersGenerator(model, tokenizer, settings, model_id="tiny")
    forced = TransformersGenerator(model, tokenizer, settings, model_id="tiny", static_cache=True)

    assert on_cpu._hf_config.cache_implementation is None
    assert forced._hf_config.cache_implementation == "static"


def test_static_and_dynamic_cache_write_the_same_greedy_profiles(loaded):
    model, tokenizer = loaded
    settings = GenerationConfig(max_new_tokens=6, batch_size=2)
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in PROMPTS
    ]

    dynamic = TransformersGenerator(model, tokenizer, settings, model_id="tiny", static_cache=False).generate(prompts)
    static = TransformersGenerator(model, tokenizer, settings, model_id="tiny", static_cache=True).generate(prompts)

    assert static == dynamic
    assert all(profile.num_tokens > 0 for profile in static)


def _chat_prompts(tokenizer) -> list[str]:
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in PROMPTS
    ]


def test_samples_from_a_shared_prefill_continue_each_prompt_as_plain_generation_does(loaded):
    model, tokenizer = loaded
    # Greedy, so every sample of a prompt must be the profile `generate` writes for it; batch 4 at
    # 2 samples puts two prompts of different lengths (left padding) in one shared prefill.
    settings = GenerationConfig(max_new_tokens=6, batch_size=4)
    generator = TransformersGenerator(model, tokenizer, settings, model_id="tiny")
    prompts = _chat_prompts(tokenizer)

    plain = generator.generate(prompts)
    drawn = generator.sample(prompts, 2)

    assert [len(samples) for samples in drawn] == [2, 2, 2]
    assert drawn == [[profile, profile] for profile in plain]


def test_shared_prefill_samples_differ_within_a_prompt_and_repeat_with_the_seed(loaded):
    model, tokenizer = loaded
    settings = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.0, batch_size=8, seed=3)
    generator = TransformersGenerator(model, tokenizer, settings, model_id="tiny")
    prompts = _chat_prompts(tokenizer)

    first, again = generator.sample(prompts, 4), generator.sample(prompts, 4)

    assert first == again
    assert all(len({profile.text for profile in samples}) > 1 for samples in first)
    with pytest.raises(ValueError, match="at least 1"):
        generator.sample(prompts, 0)
