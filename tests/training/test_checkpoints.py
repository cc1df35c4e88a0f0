"""Phase checkpoints: a round trip restores adapter, encoder and bias; half-written folders and
other recipes' or variants' folders are never picked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from peft import PeftModel
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForCausalLM

from lpt_core.config import RLConfig
from lpt_core.training.checkpoints import latest_phase, prune_earlier_phases, save_phase
from lpt_core.training.policy import make_policy

RL = RLConfig(lora_r=2, lora_alpha=4)


@pytest.fixture
def models(tiny_lm_folder, tiny_encoder_folder):
    policy = make_policy(AutoModelForCausalLM.from_pretrained(tiny_lm_folder), RL)
    with torch.no_grad():  # a trained-looking adapter: B away from its zero start
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    encoder = SentenceTransformer(str(tiny_encoder_folder), device="cpu", local_files_only=True)
    return policy, encoder


def state(recipe_hash: str = "abc123", variant: str = "langptune", **extra) -> dict:
    return {"recipe_hash": recipe_hash, "variant": variant, **extra}


def test_round_trip_restores_adapter_encoder_bias_and_state(tmp_path, tiny_lm_folder, models):
    policy, encoder = models
    bias = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    save_phase(tmp_path, 1, "encoder", policy, encoder, bias, state(metrics={"val_ndcg@10": np.float32(0.25)}))

    found = latest_phase(tmp_path, "abc123", "langptune")

    assert (found.round, found.phase) == (1, "encoder")
    assert found.state["metrics"] == {"val_ndcg@10": 0.25} and found.state["completed_at"]
    np.testing.assert_array_equal(found.load_item_bias(), bias)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_folder)
    restored = PeftModel.from_pretrained(base, str(found.adapter_dir), is_trainable=True)
    ids = torch.tensor([[1, 5, 9, 20]])
    torch.testing.assert_close(restored(ids).logits, policy(ids).logits)
    assert any(p.requires_grad for p in restored.parameters())
    reloaded = SentenceTransformer(str(found.encoder_dir), device="cpu", local_files_only=True)
    np.testing.assert_allclose(reloaded.encode(["a thriller"]), encoder.encode(["a thriller"]), rtol=1e-6)


def test_latest_is_the_last_phase_in_training_order_without_a_bias_file(tmp_path, models):
    policy, encoder = models
    for round_index, phase in [(0, "decoder"), (1, "decoder"), (0, "encoder")]:
        save_phase(tmp_path, round_index, phase, policy, encoder, None, state())

    found = latest_phase(tmp_path, "abc123", "langptune")

    assert (found.round, found.phase) == (1, "decoder")
    assert found.item_bias_path is None and found.load_item_bias() is None


def test_half_written_and_foreign_checkpoints_are_never_loaded(tmp_path, models):
    policy, encoder = models
    good = save_phase(tmp_path, 0, "decoder", policy, encoder, None, state())
    # A later phase without state.json (copied by hand, say), and an interrupted atomic write.
    without_state = shutil.copytree(good, tmp_path / "langptune-abc123-round005-0-decoder")
    (without_state / "state.json").unlink()
    part = shutil.copytree(good, tmp_path / ".langptune-abc123-round004-0-decoder.x1y2.part")
    (part / "state.json").write_text(json.dumps({**state(), "round": 4, "phase": "decoder"}))
    # Other recipes' and variants' later phases, and an unreadable state.
    save_phase(tmp_path, 3, "encoder", policy, encoder, None, state(recipe_hash="other"))
    save_phase(tmp_path, 3, "encoder", policy, encoder, None, state(variant="rl_only"))
    broken = shutil.copytree(good, tmp_path / "broken")
    (broken / "state.json").write_text("{not json")

    found = latest_phase(tmp_path, "abc123", "langptune")

    assert found.path == good
    assert latest_phase(tmp_path, "abc123", "cl_only") is None
    assert latest_phase(tmp_path / "absent", "abc123", "langptune") is None


def test_failed_save_leaves_no_checkpoint(tmp_path, models):
    policy, encoder = models
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_phase(tmp_path, 0, "decoder", policy, encoder, None, state(metrics={"bad": object()}))
    assert latest_phase(tmp_path, "abc123", "langptune") is None
    assert list(tmp_path.iterdir()) == []


def test_state_must_name_recipe_and_variant_and_phase_must_be_known(tmp_path, models):
    policy, encoder = models
    with pytest.raises(ValueError, match="recipe_hash"):
        save_phase(tmp_path, 0, "decoder", policy, encoder, None, {"variant": "langptune"})
    with pytest.raises(ValueError, match="phase must be one of"):
        save_phase(tmp_path, 0, "warmup", policy, encoder, None, state())


def test_pruning_keeps_the_latest_phase_and_other_runs(tmp_path, models):
    policy, encoder = models
    first = save_phase(tmp_path, 0, "decoder", policy, encoder, None, state())
    other_variant = save_phase(tmp_path, 0, "decoder", policy, encoder, None, state(variant="rl_only"))
    other_recipe = save_phase(tmp_path, 0, "decoder", policy, encoder, None, state(recipe_hash="other"))
    save_phase(tmp_path, 0, "encoder", policy, encoder, None, state())
    latest = latest_phase(tmp_path, "abc123", "langptune")

    assert prune_earlier_phases(tmp_path, latest) == [first]
    assert not first.exists()
    assert latest.path.exists() and other_variant.exists() and other_recipe.exists()
    assert latest_phase(tmp_path, "abc123", "langptune").path == latest.path
