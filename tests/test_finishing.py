"""Finished profiles: loops cut, a profile the token cap cut trimmed to its last complete sentence,
in the text rules and wherever ids become a profile (the transformers generator, REBEL's rollouts,
the reward of TRL's completions). The vLLM backend's twin test is in tests/real_vllm."""

from __future__ import annotations

import pytest
import torch
from tiny_lm import force_reply

from lpt_core.config import GenerationConfig, ModelsConfig
from lpt_core.generation.base import stop_token_ids
from lpt_core.generation.finishing import ends_sentence, finish_profile
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.models import load_generator
from lpt_core.profile_quality.readability import is_looping
from lpt_core.training.reward import on_finished_profiles
from lpt_core.training.rollout import rollout_from_generate

CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")
# What SmolLM2-135M wrote for test users of the quick recipe at the 64-token cap.
CUT = ("This user's movie preferences are a mix of classic horror, romance, and comedy. They're a fan of "
       "classic horror movies, particularly the iconic films of the 1990s, and they're also a fan of")
LIST_LOOP = ("This user's movie preferences are a mix of action, comedy, horror, adventure, sci-fi, horror, action, "
             "horror, comedy, horror, action, horror, comedy, horror, action, horror, comedy, horror, action")
SENTENCE_LOOP = ("They enjoy classic films with a dash of modern twists. They're particularly fond of classic films "
                 "with a dash of modern twists. They're also a fan of classic films with a dash of modern twists. They")


def test_a_profile_the_cap_cut_is_trimmed_to_its_last_complete_sentence():
    assert finish_profile(CUT, cut=True) == "This user's movie preferences are a mix of classic horror, romance, and comedy."


def test_a_profile_the_model_ended_is_left_as_it_is_unless_it_loops():
    assert finish_profile("Enjoys comedies and animated films", cut=False) == "Enjoys comedies and animated films"
    assert finish_profile(SENTENCE_LOOP, cut=False) == finish_profile(SENTENCE_LOOP, cut=True)


def test_a_loop_is_cut_at_its_third_repeat_and_trimmed_to_the_sentences_before_it():
    # "with a dash" occurs a third time in the third sentence: the two before it stay.
    assert finish_profile(SENTENCE_LOOP, cut=True) == (
        "They enjoy classic films with a dash of modern twists. "
        "They're particularly fond of classic films with a dash of modern twists."
    )


def test_a_loop_in_the_first_sentence_is_closed_where_it_started_repeating():
    finished = finish_profile(LIST_LOOP, cut=True)

    # "horror, comedy, horror" is the first trigram said three times; the text closes before its second.
    assert finished == ("This user's movie preferences are a mix of action, comedy, horror, adventure, sci-fi, horror, "
                        "action, horror, comedy.")
    assert ends_sentence(finished) and not is_looping(finished)


def test_a_first_sentence_the_cap_cut_closes_at_a_clause_without_a_dangling_word():
    assert finish_profile("The user enjoys dramas about families and the", cut=True) == "The user enjoys dramas about families."
    assert finish_profile("A fan of thrillers, especially those with", cut=True) == "A fan of thrillers."


def test_abbreviations_initials_and_ratings_do_not_end_a_sentence():
    assert not ends_sentence("They like the films of Mr.")
    assert not ends_sentence("Directed by J.")
    assert ends_sentence('They loved "Heat."')
    assert finish_profile("Loves noir. Rated 4.5 by Dr. Jones and", cut=True) == "Loves noir."


@pytest.mark.parametrize("text", [CUT, LIST_LOOP, SENTENCE_LOOP, "Loves noir. Rated 4.5 by Dr. Jones and", "x"])
def test_finishing_twice_changes_nothing(text):
    once = finish_profile(text, cut=True)
    assert finish_profile(once, cut=True) == once


@pytest.fixture
def loaded(tiny_lm_folder):
    return load_generator(str(tiny_lm_folder), CPU_FP32)


def _reply(tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(set(ids)) == len(ids), "force_reply needs distinct tokens"
    return ids


def _generate(loaded, max_new_tokens: int, **settings) -> str:
    model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, **settings)
    [profile] = TransformersGenerator(model, tokenizer, cfg, model_id="tiny").generate([prompt])
    return profile.text


def test_the_transformers_generator_trims_a_profile_the_cap_cut_unless_told_not_to(loaded):
    model, tokenizer = loaded
    reply = _reply(tokenizer, " A slow-burn thriller. Toy Story with")
    force_reply(model, reply, end_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))

    assert _generate(loaded, len(reply)) == "A slow-burn thriller."
    assert _generate(loaded, len(reply), finish_profiles=False) == "A slow-burn thriller. Toy Story with"
    # Ended by the model: left as it wrote it.
    assert _generate(loaded, len(reply) + 4) == "A slow-burn thriller. Toy Story with"


def test_the_transformers_generator_cuts_a_loop(loaded):
    model, tokenizer = loaded
    reply = _reply(tokenizer, " enjoys comedies,")
    force_reply(model, reply, end_id=reply[0])  # the reply's last token leads back to its first: a loop

    assert _generate(loaded, 6 * len(reply), finish_profiles=False) == ", ".join(["enjoys comedies"] * 6) + ","
    # "enjoys comedies enjoys" comes back a third time: closed before its second occurrence.
    assert _generate(loaded, 6 * len(reply)) == "enjoys comedies."


def test_rollouts_and_the_trl_reward_score_the_finished_profile(loaded):
    model, tokenizer = loaded
    stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
    cut = tokenizer(CUT, add_special_tokens=False)["input_ids"]
    ended = tokenizer("Enjoys comedies", add_special_tokens=False)["input_ids"] + [stop_ids[-1]]
    width = max(len(cut), len(ended))
    rows = [ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in (cut, ended)]
    prompt_mask = torch.ones(2, 3, dtype=torch.long)
    output = torch.cat([torch.zeros(2, 3, dtype=torch.long), torch.tensor(rows)], dim=1)
    expected = [finish_profile(CUT, cut=True), "Enjoys comedies"]

    rollout = rollout_from_generate(prompt_mask, output, tokenizer, stop_ids, samples_per_prompt=1)

    assert [profile.text for profile in rollout.profiles] == expected
    scored: list[str] = []

    def reward(prompts, completions, **columns):  # TRL's reward signature, recording what it scores
        scored.extend(completions)
        return [float(len(c)) for c in completions]

    reward.__name__ = "rank_reward"
    trl_reward = on_finished_profiles(reward, tokenizer, stop_ids)
    rewards = trl_reward(["p", "p"], [CUT, "Enjoys comedies"], completion_ids=[cut, ended], target_item_id=["a", "b"])
    assert scored == expected
    assert rewards == [float(len(text)) for text in expected]
    assert trl_reward.__name__ == "rank_reward"
