"""Model names to folders, GGUF conversion, dtype/device choice, loading generator and encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_lm import write_tiny_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

from lpt_core import models, paths
from lpt_core.config import ModelsConfig
from lpt_core.models import (
    ModelError,
    convert_gguf,
    load_encoder,
    load_generator,
    pick_device,
    pick_dtype,
    resolve_model,
)

CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")
REAL_SMOLLM2 = paths.models_dir() / "smollm2-135m-instruct"


@pytest.fixture
def work_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LPT_HOME", str(tmp_path / "work"))
    return tmp_path / "work"


def test_packaged_default_not_fetched_says_run_make_setup(work_dir):
    with pytest.raises(ModelError, match="make setup"):
        resolve_model("smollm2-135m-instruct")


def test_packaged_default_resolves_to_its_folder_once_fetched(work_dir, tiny_lm_folder):
    folder = work_dir / "models" / "smollm2-135m-instruct"
    folder.parent.mkdir(parents=True)
    folder.symlink_to(tiny_lm_folder)
    assert resolve_model("smollm2-135m-instruct") == folder


def test_local_folder_resolves_to_itself_and_must_hold_a_model(tiny_lm_folder, tmp_path):
    assert resolve_model(str(tiny_lm_folder)) == tiny_lm_folder
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize("name", ["./no/such/folder", "missing.gguf", "/abs/missing.gguf"])
def test_missing_local_paths_are_errors_naming_them(name, work_dir):
    with pytest.raises(ModelError, match="no such"):
        resolve_model(name)


def test_hub_id_while_offline_is_a_clear_error(work_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        resolve_model("someone/some-model")


def test_gguf_converts_once_to_an_equivalent_safetensors_model(work_dir, tiny_lm_folder, tmp_path):
    gguf_path = write_tiny_gguf(tiny_lm_folder, tmp_path / "tiny.gguf")

    converted = resolve_model(str(gguf_path))
    modified = converted.stat().st_mtime_ns
    again = resolve_model(str(gguf_path))

    assert again == converted and converted.stat().st_mtime_ns == modified
    assert converted.parent == work_dir / "models" and converted.name.startswith("gguf-tiny-")
    assert list(converted.glob("*.safetensors"))
    original = AutoModelForCausalLM.from_pretrained(tiny_lm_folder)
    roundtrip = AutoModelForCausalLM.from_pretrained(converted)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    ids = torch.tensor([tokenizer("Toy Story rated 5.0", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(roundtrip(ids).logits, original(ids).logits)
    # transformers' GGUF import names <|im_start|> as eos; the GGUF metadata says <|im_end|>.
    assert tokenizer.eos_token == "<|im_end|>"


def test_convert_gguf_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(ModelError, match="nope.gguf"):
        convert_gguf(tmp_path / "nope.gguf", tmp_path / "out")


def test_pick_dtype_explicit_and_auto(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_dtype("float16", cpu) == torch.float16
    assert pick_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(models, "_cpu_has_native_bf16", lambda: False)
    assert pick_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(models, "_cpu_has_native_bf16", lambda: True)
    assert pick_dtype("auto", cpu) == torch.bfloat16
    with pytest.raises(ModelError, match="int8"):
        pick_dtype("int8", cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_pick_device_without_cuda():
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ModelError, match="cuda"):
        pick_device("cuda")


def test_load_generator_is_ready_for_batched_generation(tiny_lm_folder):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None  # the tiny tokenizer ships without one
    assert model.dtype == torch.float32 and not model.training
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_load_encoder_from_a_local_folder(tiny_encoder_folder):
    encoder = load_encoder(str(tiny_encoder_folder), ModelsConfig(device="cpu", dtype="bfloat16"))
    embeddings = encoder.encode(["a thriller", "a comedy"])
    assert embeddings.shape[0] == 2
    assert next(encoder.parameters()).dtype == torch.float32  # kept fp32 for fine-tuning


@pytest.mark.slow
@pytest.mark.skipif(not REAL_SMOLLM2.is_dir(), reason="run `make setup` to fetch SmolLM2")
def test_real_smollm2_loads_and_ends_its_turn():
    from lpt_core.config import GenerationConfig
    from lpt_core.generation import make_generator

    generator = make_generator(
        "smollm2-135m-instruct", ModelsConfig(device="cpu"), GenerationConfig(max_new_tokens=48)
    )
    prompt = generator.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hello in three words."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    (profile,) = generator.generate([prompt])
    assert profile.finished and 0 < profile.num_tokens < 48
    assert "<|im_end|>" not in profile.text
