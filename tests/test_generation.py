"""Profile generation on a tiny random chat LM, and the profile store."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from tiny_lm import force_reply

from lpt_core.config import GenerationConfig, ModelsConfig
from lpt_core.generation import GeneratedProfile, make_generator
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.generation.store import ProfileStore
from lpt_core.models import load_generator, weights_fingerprint

CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")
CONTENTS = [
    "short",
    "The user rated (out of 5) the following movies, listed from oldest to newest. Toy Story",
    "a middling prompt about a slow-burn thriller",
    "x",
    "enjoys comedies and animated films, dislikes musicals and long dramas, rated 5.0",
]


@pytest.fixture(scope="module")
def tiny_folder(tiny_lm_folder) -> Path:
    return tiny_lm_folder


@pytest.fixture
def loaded(tiny_folder):
    return load_generator(str(tiny_folder), CPU_FP32)


def _prompts(tokenizer) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        for content in CONTENTS
    ]


def _generator(loaded, **settings) -> TransformersGenerator:
    model, tokenizer = loaded
    return TransformersGenerator(model, tokenizer, GenerationConfig(**settings), model_id="tiny")


def test_generation_stops_at_end_of_turn_and_returns_text_without_it(loaded):
    model, tokenizer = loaded
    reply_ids = tokenizer(" enjoys comedies", add_special_tokens=False)["input_ids"]
    force_reply(model, reply_ids, end_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    prompts = _prompts(tokenizer)[:3]

    finished = _generator(loaded, max_new_tokens=20, batch_size=2).generate(prompts)
    cut = _generator(loaded, max_new_tokens=1).generate(prompts)

    # <|im_end|> is not the tokenizer's eos here, so only the end-of-turn stop can end early.
    assert tokenizer.eos_token != "<|im_end|>"
    assert finished == [GeneratedProfile("enjoys comedies", len(reply_ids), True)] * 3
    assert all(p.num_tokens == 1 and not p.finished for p in cut)


def test_batched_generation_matches_one_by_one_in_input_order(loaded):
    _, tokenizer = loaded
    prompts = _prompts(tokenizer)
    generator = _generator(loaded, max_new_tokens=6, batch_size=2)

    batched = generator.generate(prompts)
    one_by_one = [generator.generate([prompt])[0] for prompt in prompts]

    assert batched == one_by_one
    assert len({p.text for p in batched}) > 1  # distinct prompts: order mistakes would show


def test_seeded_sampling_is_reproducible_and_depends_on_the_seed(loaded):
    prompts = _prompts(loaded[1])
    sampled = dict(max_new_tokens=8, do_sample=True, temperature=1.0, batch_size=3)

    first = _generator(loaded, seed=1, **sampled).generate(prompts)
    again = _generator(loaded, seed=1, **sampled).generate(prompts)
    other_seed = _generator(loaded, seed=2, **sampled).generate(prompts)

    assert first == again
    assert first != other_seed


def test_constructor_rejects_right_padding(loaded):
    model, tokenizer = loaded
    tokenizer.padding_side = "right"
    with pytest.raises(ValueError, match="padding_side"):
        TransformersGenerator(model, tokenizer, GenerationConfig(), model_id="tiny")


def test_make_generator_loads_the_transformers_backend_with_a_weights_fingerprint(tiny_folder):
    generator = make_generator(str(tiny_folder), CPU_FP32, GenerationConfig(max_new_tokens=2))
    assert isinstance(generator, TransformersGenerator)
    assert generator.model_id.startswith(f"{tiny_folder}@")
    assert len(generator.generate(["hello"])) == 1


def test_the_weights_fingerprint_follows_the_weights_not_the_file_dates(tiny_folder, tmp_path):
    copied = shutil.copytree(tiny_folder, tmp_path / "copied")  # new modification times
    weights = next(copied.glob("*.safetensors"))
    os.utime(weights, ns=(1, 1))

    assert weights_fingerprint(copied) == weights_fingerprint(tiny_folder)
    content = bytearray(weights.read_bytes())
    content[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(content))
    assert weights_fingerprint(copied) != weights_fingerprint(tiny_folder)


def test_vllm_backend_imports_without_vllm_and_fails_clearly_on_this_machine(tiny_folder):
    import lpt_core.generation.vllm_backend  # noqa: F401  # must import with no vllm installed

    assert "vllm" not in sys.modules
    with pytest.raises((RuntimeError, ImportError, ValueError), match="vllm"):
        make_generator(str(tiny_folder), CPU_FP32, GenerationConfig(backend="vllm"))


class CountingGenerator:
    """A real generator wrapped to record the prompts each call received."""

    def __init__(self, inner: TransformersGenerator, fail_on_call: int | None = None) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def generate(self, prompts: Sequence[str]) -> list[GeneratedProfile]:
        self.calls.append(list(prompts))
        if len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt  # what a user's Ctrl-C looks like mid-run
        return self.inner.generate(prompts)


def test_store_reuses_stored_profiles_and_keeps_input_order(loaded, tmp_path):
    decoding = GenerationConfig(max_new_tokens=4, batch_size=2)
    prompts = _prompts(loaded[1])
    store = ProfileStore(tmp_path / "profiles.parquet", chunk_size=2)
    generator = CountingGenerator(_generator(loaded, max_new_tokens=4, batch_size=2))
    progress: list[tuple[int, int]] = []

    first, generated = store.get_or_generate(
        prompts, generator, decoding, lambda done, total: progress.append((done, total))
    )
    reversed_again, regenerated = store.get_or_generate(prompts[::-1], generator, decoding)

    assert generated == len(prompts) and regenerated == 0
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert reversed_again == first[::-1]
    assert first == generator.inner.generate(prompts)


def test_store_regenerates_for_changed_prompt_decoding_or_model(loaded, tmp_path):
    decoding = GenerationConfig(max_new_tokens=4)
    prompts = _prompts(loaded[1])[:3]
    store = ProfileStore(tmp_path / "profiles.parquet")
    generator = CountingGenerator(_generator(loaded, max_new_tokens=4))
    store.get_or_generate(prompts, generator, decoding)

    changed_prompt = [prompts[0], prompts[1] + " ", prompts[2]]
    _, for_prompt = store.get_or_generate(changed_prompt, generator, decoding)
    _, for_decoding = store.get_or_generate(prompts, generator, decoding.model_copy(update={"seed": 7}))
    _, for_penalty = store.get_or_generate(prompts, generator, decoding.model_copy(update={"repetition_penalty": 1.3}))
    _, for_raw = store.get_or_generate(prompts, generator, decoding.model_copy(update={"finish_profiles": False}))
    generator.model_id = "tiny-retrained"
    _, for_model = store.get_or_generate(prompts, generator, decoding)

    assert (for_prompt, for_decoding, for_penalty, for_raw, for_model) == (1, 3, 3, 3, 3)
    assert generator.calls[1] == [prompts[1] + " "]


def test_a_setting_added_later_keeps_existing_store_keys_at_its_neutral_value(loaded, tmp_path):
    store = ProfileStore(tmp_path / "profiles.parquet")
    prompts = _prompts(loaded[1])[:1]
    raw = GenerationConfig(max_new_tokens=4, finish_profiles=False)
    store.get_or_generate(prompts, _generator(loaded, max_new_tokens=4, finish_profiles=False), raw)
    store.get_or_generate(prompts, _generator(loaded, max_new_tokens=4), GenerationConfig(max_new_tokens=4))

    # The decoding JSON that stores written before repetition_penalty and finish_profiles existed
    # hold: their profiles still match what they were (raw profiles), so adding a setting did not
    # make every stored profile stale; finished profiles (the default) are new keys.
    old = ('{"backend":"transformers","batch_size":16,"do_sample":false,"max_new_tokens":4,"seed":0,'
           '"temperature":1.0,"top_p":1.0}')
    assert pl.read_parquet(store.path)["decoding"].to_list() == [old, old.replace('false,', 'false,"finish_profiles":true,')]


def test_interrupted_run_keeps_finished_chunks_and_a_readable_store(loaded, tmp_path):
    decoding = GenerationConfig(max_new_tokens=3)
    prompts = _prompts(loaded[1])
    path = tmp_path / "profiles.parquet"
    store = ProfileStore(path, chunk_size=2)
    interrupted = CountingGenerator(_generator(loaded, max_new_tokens=3), fail_on_call=2)

    with pytest.raises(KeyboardInterrupt):
        store.get_or_generate(prompts, interrupted, decoding)

    assert pl.read_parquet(path).height == 2
    assert [p.name for p in tmp_path.iterdir()] == ["profiles.parquet"]  # no temp file left
    resumed = CountingGenerator(interrupted.inner)
    _, generated = store.get_or_generate(prompts, resumed, decoding)
    assert generated == 3
    assert resumed.calls == [prompts[2:4], prompts[4:]]


def test_store_refuses_a_file_that_is_not_a_profile_store(loaded, tmp_path):
    path = tmp_path / "profiles.parquet"
    pl.DataFrame({"key": ["k"]}).write_parquet(path)
    with pytest.raises(ValueError, match=r"profiles\.parquet.*columns"):
        ProfileStore(path).get_or_generate(["p"], _generator(loaded), GenerationConfig())
