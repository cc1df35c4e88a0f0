"""Best-of-n warm start on the tiny LM: the best sample of each prompt is what the LoRA learns."""

import pytest
import torch
from builders import chat_rl_examples

from lpt_core.config import BestOfNConfig, ModelsConfig, RLConfig
from lpt_core.generation.base import GeneratedProfile
from lpt_core.models import load_generator
from lpt_core.training import best_of_n as bon
from lpt_core.training.logprobs import sequence_logprobs
from lpt_core.training.policy import make_policy

pytestmark = pytest.mark.usefixtures("one_thread")
CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")
# (user turn, target, history, later targets): six prompts that differ, all with the same target.
RL_ROWS = [(f"The user rated movie {i}.", "toy", [], ()) for i in range(6)]
CFG = BestOfNConfig(iterations=1, samples=3, sampling={"max_new_tokens": 6}, batch_size=6, epochs=3, learning_rate=5e-3, micro_batch_size=2)


class _ScoreByWord:
    """A stand-in for the rank reward: 1 for a profile containing `word`, else 0 (what it
    pays for is the point here, not how a recommender ranks)."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[list[str]] = []  # the prompts of each call

    def __call__(self, prompts, completions, **columns):
        self.seen.append(list(prompts))
        return [float(self.word in text) for text in completions]


def test_the_lora_is_fine_tuned_towards_the_best_sample_of_each_prompt(tiny_lm_folder, tmp_path, monkeypatch):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, RLConfig(lora_r=4, lora_alpha=8))
    examples = chat_rl_examples(tokenizer, RL_ROWS[:2])
    # Samples are made deterministic so that the test knows which one wins: per prompt one
    # "enjoys comedies" among two "dislikes musicals".
    texts = ["dislikes musicals", "enjoys comedies", "dislikes musicals"]
    monkeypatch.setattr(
        "lpt_core.generation.hf_backend.TransformersGenerator.sample",
        lambda self, prompts, samples: [[GeneratedProfile(texts[i % 3], 2, True) for i in range(samples)] for _ in prompts],
    )
    winner = _completion_logprob(policy, tokenizer, examples[0].prompt, "enjoys comedies")
    before = _lora_state(policy)

    (metrics,) = bon.best_of_n(policy, tokenizer, examples, _ScoreByWord("comedies"), CFG, seed=0, output_dir=tmp_path)

    assert metrics["examples_kept"] == 2.0
    assert metrics["best_reward"] == 1.0 and metrics["sample_reward"] == pytest.approx(1 / 3)
    assert metrics["sft_loss"] > 0
    # Several epochs on the same two targets: the last epoch's loss is below the mean over all.
    assert metrics["sft_final_loss"] < metrics["sft_loss"]
    assert not policy.base_model.model.is_gradient_checkpointing  # TRL's default is not left behind
    assert all(not torch.equal(before[k], v) for k, v in _lora_state(policy).items() if "lora_B" in k)
    assert _completion_logprob(policy, tokenizer, examples[0].prompt, "enjoys comedies") > winner + 1.0


def test_examples_whose_samples_all_tie_are_not_trained_on(tiny_lm_folder, tmp_path):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, RLConfig(lora_r=4, lora_alpha=8))
    before = _lora_state(policy)

    (metrics,) = bon.best_of_n(policy, tokenizer, chat_rl_examples(tokenizer, RL_ROWS[:2]), _ScoreByWord("\x00"), CFG, 0, tmp_path)

    assert metrics["examples_kept"] == 0.0 and "sft_loss" not in metrics
    assert all(torch.equal(before[k], v) for k, v in _lora_state(policy).items())


def test_each_iteration_samples_a_new_seeded_draw_of_examples_per_iteration(tiny_lm_folder, tmp_path):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, RLConfig(lora_r=4, lora_alpha=8))
    examples = chat_rl_examples(tokenizer, RL_ROWS)
    reward = _ScoreByWord("\x00")
    cfg = CFG.model_copy(update={"iterations": 2, "examples_per_iteration": 2})

    history = bon.best_of_n(policy, tokenizer, examples, reward, cfg, seed=0, output_dir=tmp_path)

    draws = [set(prompts) for prompts in reward.seen]
    assert [m["examples"] for m in history] == [2.0, 2.0]
    assert all(len(draw) == 2 and draw <= {e.prompt for e in examples} for draw in draws)
    assert draws[0] != draws[1]  # seeded per iteration, not the same draw twice
    assert bon._draw(examples, 2, seed=1) == bon._draw(examples, 2, seed=1)
    assert bon._draw(examples, None, seed=1) == bon._draw(examples, 6, seed=1) == examples


def _lora_state(policy) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in policy.named_parameters() if "lora_" in name}


def _completion_logprob(policy, tokenizer, prompt: str, text: str) -> float:
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply = tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + reply])
    mask = torch.tensor([[0] * len(prompt_ids) + [1] * len(reply)])
    with torch.no_grad():
        return float(sequence_logprobs(policy.eval(), ids, torch.ones_like(ids), mask))
