"""The alternating schedule on tiny random models: phase order per variant, checkpoints, metrics
reported, resume after a failure, and one short run on the real default models (slow)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from builders import tiny_recipe
from safetensors.torch import load_file
from transformers import AutoTokenizer

from lpt_core import paths
from lpt_core.config import (
    ContrastiveConfig,
    GenerationConfig,
    ModelsConfig,
    Recipe,
    RLConfig,
    TrainingConfig,
    deep_merge,
)
from lpt_core.training.alternation import TrainingData, phase_schedule, reward_index, rl_rows, train_alternating
from lpt_core.training.checkpoints import latest_phase
from lpt_core.training.item_head import ItemHead
from lpt_core.training.variants import get_variant

GENRES = ["thriller", "comedy", "drama", "horror", "romance", "western", "fantasy", "crime"]


class Recorder:
    """TrainingCallbacks that remember everything; `fail_at` (phase, round) raises at that phase's
    end-of-phase report, before its checkpoint is written."""

    def __init__(self, fail_at: tuple[str, int] | None = None) -> None:
        self.fail_at = fail_at
        self.phases: list[tuple[int, str]] = []
        self.steps: list[tuple[int, str, int]] = []
        self.val_ndcg: list[float] = []
        self.artifacts: dict[str, str] = {}
        self.messages: list[str] = []

    def metrics(self, phase: str, round_index: int, step: int, values: dict) -> None:
        if "val_ndcg@10" not in values:
            self.steps.append((round_index, phase, step))
            return
        if (phase, round_index) == self.fail_at:
            raise RuntimeError("injected failure")
        self.phases.append((round_index, phase))
        self.val_ndcg.append(values["val_ndcg@10"])

    def artifact_text(self, name: str, text: str) -> None:
        self.artifacts[name] = text

    def log(self, message: str) -> None:
        self.messages.append(message)


def adapter_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(adapter_dir / "adapter_model.safetensors")


def training_data(tokenizer) -> TrainingData:
    catalog = pl.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(len(GENRES))],
            "text": [f"Title: a {g} movie\nCategory: {g}" for g in GENRES],
        }
    )

    def examples(split: str, users: int, offset: int) -> pl.DataFrame:
        rows = []
        for u in range(users):
            history = [f"i{(u + offset + k) % len(GENRES)}" for k in range(2)]
            target = f"i{(u + offset + 3) % len(GENRES)}"
            content = "The user rated: " + ", ".join(GENRES[int(i[1:])] for i in history)
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
            rows.append({"user_id": f"{split}{u}", "window": 0, "prompt": prompt, "history_item_ids": history,
                         "target_item_id": target})
        return pl.DataFrame(rows)

    train = examples("train", 8, 0)
    # The popularity prior's counts: each train row's history and target, one interaction each.
    counts = pl.concat([train["history_item_ids"].explode(), train["target_item_id"]]).value_counts()
    item_counts = dict(zip(counts[:, 0].to_list(), counts["count"].to_list()))
    return TrainingData(train=train, val=examples("val", 4, 1), catalog=catalog, item_counts=item_counts)


@pytest.fixture(scope="module")
def tiny(tiny_lm_folder, tiny_encoder_folder):
    return tiny_lm_folder, tiny_encoder_folder, training_data(AutoTokenizer.from_pretrained(tiny_lm_folder))


# The recipe sections of the alternation tests: two short rounds of every phase.
SECTIONS = {
    "generation": GenerationConfig(max_new_tokens=3, batch_size=8),
    "training": TrainingConfig(
        rounds=2,
        rl=RLConfig(
            algorithm={"name": "rebel", "passes_per_batch": 1}, updates_per_round=1, prompts_per_update=2,
            micro_batch_size=4, sampling={"max_new_tokens": 3}, lora_r=2, lora_alpha=4,
        ),
        contrastive=ContrastiveConfig(steps_per_round=2, batch_size=4, learning_rate=1e-3),
        max_train_users=5,
        max_val_users=3,
    ),
}
# The same, the recommender learning an item bias beside its encoder.
WITH_ITEM_BIAS = {
    **SECTIONS,
    "training": TrainingConfig.model_validate(
        deep_merge(SECTIONS["training"].model_dump(), {"contrastive": {"item_bias": True}})
    ),
}


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    lm, encoder, data = tiny
    recorder = Recorder()
    root = tmp_path_factory.mktemp("run")
    started = time.perf_counter()
    result = train_alternating(tiny_recipe(lm, encoder, **WITH_ITEM_BIAS), "langptune", data, root, recorder)
    print(f"tiny 2-round langptune alternation: {time.perf_counter() - started:.1f} s")
    return result, recorder


def test_langptune_alternates_decoder_then_encoder_and_checkpoints_every_phase(uninterrupted):
    result, recorder = uninterrupted
    expected = [(0, "decoder"), (0, "encoder"), (1, "decoder"), (1, "encoder")]
    assert recorder.phases == expected == phase_schedule(2, "langptune")
    # Per-step reports: 2 contrastive steps (from 0), 1 RL update (from 1), per round.
    assert [s for s in recorder.steps if s[1] == "decoder"] == [(r, "decoder", s) for r in (0, 1) for s in (0, 1)]
    assert [s for s in recorder.steps if s[1] == "encoder"] == [(0, "encoder", 1), (1, "encoder", 1)]
    assert all(0.0 <= v <= 1.0 for v in recorder.val_ndcg)
    assert set(recorder.artifacts) == {f"profiles_round{r}_{p}.md" for r, p in expected}
    assert "## user val" in recorder.artifacts["profiles_round1_encoder.md"]

    assert result.resumed_from is None
    assert [(h["round"], h["phase"]) for h in result.history] == expected
    assert result.checkpoint.name.endswith("round001-1-encoder")
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert (result.encoder_dir / "modules.json").is_file()
    assert result.item_bias is not None and result.item_bias.is_file()
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert state["variant"] == "langptune" and state["round"] == 1 and state["phase"] == "encoder"


@pytest.mark.parametrize(
    ("variant", "expected"),
    [("cl_only", [(0, "decoder"), (1, "decoder")]), ("rl_only", [(0, "encoder"), (1, "encoder")])],
)
def test_ablations_run_only_their_phases(tiny, tmp_path, variant, expected):
    lm, encoder, data = tiny
    recorder = Recorder()

    result = train_alternating(tiny_recipe(lm, encoder, **SECTIONS), variant, data, tmp_path, recorder)

    assert recorder.phases == expected
    assert {s[1] for s in recorder.steps} == {expected[0][1]}
    assert result.item_bias is None and len(result.history) == 2


def test_resume_after_a_failure_continues_from_the_saved_phase(tiny, tmp_path, uninterrupted):
    lm, encoder, data = tiny
    recipe = tiny_recipe(lm, encoder, **WITH_ITEM_BIAS)
    first = Recorder(fail_at=("encoder", 1))
    with pytest.raises(RuntimeError, match="injected failure"):
        train_alternating(recipe, "langptune", data, tmp_path, first)
    saved = latest_phase(tmp_path, recipe.training_hash(), "langptune")
    assert (saved.round, saved.phase) == (1, "decoder")

    second = Recorder()
    result = train_alternating(recipe, "langptune", data, tmp_path, second)

    baseline, baseline_recorder = uninterrupted
    assert result.resumed_from == str(saved.path)
    assert second.phases == [(1, "encoder")]
    assert first.phases + second.phases == baseline_recorder.phases
    assert [(h["round"], h["phase"]) for h in result.history] == [(h["round"], h["phase"]) for h in baseline.history]
    # Every phase starts from its checkpoint with fresh optimizers and fixed seeds: same numbers.
    assert first.val_ndcg + second.val_ndcg == pytest.approx(baseline_recorder.val_ndcg)
    resumed, straight = adapter_weights(result.adapter_dir), adapter_weights(baseline.adapter_dir)
    assert resumed.keys() == straight.keys()
    for name, weight in resumed.items():
        torch.testing.assert_close(weight, straight[name], msg=name)
    np.testing.assert_allclose(np.load(result.item_bias), np.load(baseline.item_bias), rtol=1e-6)

    third = Recorder()
    done = train_alternating(recipe, "langptune", data, tmp_path, third)
    assert done.resumed_from == str(result.checkpoint) and third.phases == []
    assert done.history == result.history
    # Only the last phase is kept: earlier ones are deleted once a later one is complete.
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == [result.checkpoint]


def test_the_item_head_is_fitted_checkpointed_and_loaded_on_resume(tiny, tmp_path):
    lm, encoder, data = tiny
    head = {"kind": "hybrid", "epochs": 3, "patience": 1, "batch_size": 4, "learning_rate": 0.05}
    recipe = Recipe.model_validate(deep_merge(
        tiny_recipe(lm, encoder, **SECTIONS).model_dump(),
        # The encoder's steps first (stopped early on val), then the head over its embeddings.
        {"training": {"rounds": 1, "contrastive": {"steps_per_round": 2, "val_every": 1, "head": head}}},
    ))
    first = Recorder(fail_at=("encoder", 0))
    with pytest.raises(RuntimeError, match="injected failure"):
        train_alternating(recipe, "langptune", data, tmp_path, first)
    saved = latest_phase(tmp_path, recipe.training_hash(), "langptune")
    assert saved.phase == "decoder" and saved.item_head_path is not None
    fitted = saved.load_item_head()
    assert len(fitted) == data.catalog.height and saved.load_item_bias() is None
    # The head reported one record per epoch (epoch 0 = untrained), then the phase its summary.
    epochs = saved.state["metrics"]["head_epochs"]
    assert [p for p in first.phases if p[1] == "head"] == [(0, "head")] * (epochs + 1)
    assert 1 <= saved.state["metrics"]["steps"] <= 2
    assert 0 <= saved.state["metrics"]["head_best_epoch"] <= epochs

    second = Recorder()
    result = train_alternating(recipe, "langptune", data, tmp_path, second)

    # The resumed encoder phase ranked with the loaded head, and its checkpoint keeps it.
    assert result.resumed_from == str(saved.path) and second.phases == [(0, "encoder")]
    kept = ItemHead.load(result.item_head)
    for name in ("transform", "residual", "bias"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(fitted, name))


def test_training_data_names_missing_columns(tiny):
    _, _, data = tiny
    with pytest.raises(ValueError, match=r"TrainingData.val: missing columns \['prompt'\]"):
        TrainingData(train=data.train, val=data.val.drop("prompt"), catalog=data.catalog)


@pytest.mark.slow
def test_one_short_round_on_the_default_models(tmp_path, tiny):
    models_dir = paths.models_dir()
    lm, encoder = models_dir / "smollm2-135m-instruct", models_dir / "all-minilm-l6-v2"
    if not (lm.is_dir() and encoder.is_dir()):
        pytest.skip(f"default models not fetched under {models_dir}")
    tokenizer = AutoTokenizer.from_pretrained(lm)
    data = training_data(tokenizer)
    recipe = Recipe(
        name="short",
        models=ModelsConfig(generator=str(lm), encoder=str(encoder), device="cpu"),
        generation=GenerationConfig(max_new_tokens=16, batch_size=8),
        training=TrainingConfig(
            rounds=1,
            rl=RLConfig(algorithm={"name": "rebel", "passes_per_batch": 1}, updates_per_round=1, prompts_per_update=2,
                        sampling={"max_new_tokens": 16}),
            contrastive=ContrastiveConfig(steps_per_round=2, batch_size=4, item_bias=True),
            max_train_users=4,
            max_val_users=2,
        ),
    )
    recorder = Recorder()
    started = time.perf_counter()

    result = train_alternating(recipe, "langptune", data, tmp_path, recorder)

    print(f"SmolLM2 + MiniLM, 1 round: {time.perf_counter() - started:.1f} s")
    assert recorder.phases == [(0, "decoder"), (0, "encoder")]
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert any(line.strip() for line in recorder.artifacts["profiles_round0_encoder.md"].splitlines()[2:])


def test_profiles_of_an_untrained_policy_are_shared_through_the_store(tiny, tmp_path):
    lm, encoder, data = tiny
    recipe = tiny_recipe(lm, encoder, **SECTIONS)
    store = tmp_path / "profiles.parquet"
    train_alternating(recipe, "cl_only", data, tmp_path / "cl_only", Recorder(), profile_store=store)
    stored = pl.read_parquet(store)
    # cl_only never trains the LLM: both rounds ask for the same prompts of the base model.
    assert stored["model_id"].n_unique() == 1 and "+lora@" not in stored["model_id"][0]
    rows = stored.height

    train_alternating(recipe, "langptune", data, tmp_path / "langptune", Recorder(), profile_store=store)
    stored = pl.read_parquet(store)
    trained = stored.filter(pl.col("model_id").str.contains("+lora@", literal=True))
    # Round 0's decoder phase reused the base profiles; later phases were written by trained adapters.
    assert stored.height - rows == trained.height > 0


def test_a_best_of_n_warm_start_runs_before_the_rl_updates_of_each_encoder_phase(tiny, tmp_path):
    lm, encoder, data = tiny
    recipe = tiny_recipe(lm, encoder, **SECTIONS)
    warm = {"iterations": 1, "samples": 2, "sampling": {"max_new_tokens": 3}, "batch_size": 8, "learning_rate": 1e-3}
    rl = {**recipe.training.rl.model_dump(), "probe_examples": 2}
    recipe = Recipe.model_validate({**recipe.model_dump(), "training": {
        **recipe.training.model_dump(), "rounds": 1, "best_of_n": warm, "rl": rl}})
    recorder = Recorder()

    result = train_alternating(recipe, "rl_only", data, tmp_path, recorder)

    assert [s for s in recorder.steps if s[1] in ("best_of_n", "encoder")] == [(0, "best_of_n", 1), (0, "encoder", 1)]
    (warm_start,) = result.history[0]["best_of_n"]
    # 2 samples per example: an example is kept only where its best beats its mean.
    assert 0 <= warm_start["examples_kept"] <= warm_start["examples"] > 0
    assert 0 <= warm_start["sample_reward"] <= warm_start["best_reward"] <= 1
    # The probe's learning curve covers the warm start too: before it, and after each iteration.
    assert 0 <= warm_start["probe_reward_start"] <= 1 and 0 <= warm_start["probe_reward"] <= 1


def test_best_of_n_hybrid_fine_tunes_the_writer_without_rl_over_a_fitted_hybrid_head(tiny, tmp_path):
    lm, encoder, data = tiny
    recipe = Recipe.model_validate(deep_merge(tiny_recipe(lm, encoder, **SECTIONS).model_dump(), {"training": {
        "rounds": 1, "rl": {"probe_examples": 2},
        "best_of_n": {"samples": 2, "sampling": {"max_new_tokens": 3}, "batch_size": 8, "learning_rate": 1e-3,
                      "examples_per_iteration": 3},
        "contrastive": {"head": {"epochs": 2, "batch_size": 4}},
    }}))
    variant = get_variant("best_of_n_hybrid")
    recorder = Recorder()

    result = train_alternating(variant.recipe_for(recipe), variant.schedule, data, tmp_path, recorder)

    decoder, encoder_phase = result.history
    assert decoder["steps"] == 0 and result.item_head is not None  # frozen encoder, a head fitted over it
    assert encoder_phase["steps"] == 0  # no RL update
    warm = encoder_phase["best_of_n"]
    assert [m["examples"] for m in warm] == [3.0, 3.0]
    assert "probe_reward_start" in warm[0] and all("probe_reward" in m for m in warm)


def test_on_a_cpu_the_policy_trains_in_float32_whatever_the_recipe_dtype(tiny):
    from lpt_core.training.policy import policy_models

    lm, encoder, _ = tiny
    recipe = tiny_recipe(lm, encoder, **SECTIONS)
    bf16 = Recipe.model_validate({**recipe.model_dump(), "models": {**recipe.models.model_dump(), "dtype": "bfloat16"}})

    assert policy_models(bf16).dtype == "float32"
    assert policy_models(bf16).generator == bf16.models.generator


def test_a_variant_reports_the_recipe_settings_it_overrides_and_keeps_its_own_algorithm_s_settings():
    from lpt_core.config import load_recipe
    from lpt_core.training.algorithms.grpo import GRPOSettings
    from lpt_core.training.variants import get_variant

    recipe = load_recipe("quick", {"training": {"rl": {"algorithm": {"passes_per_batch": 3, "eta": 2.0}}}})
    grpo = get_variant("langptune_grpo")

    rl = grpo.recipe_for(recipe).training.rl
    overridden = grpo.overridden_settings(recipe)

    # Another algorithm starts from its own defaults; the recipe's REBEL settings are not its.
    assert (rl.algorithm, rl.samples_per_prompt) == (GRPOSettings(), 4)
    assert overridden["training.rl.samples_per_prompt"] == (2, 4)
    assert overridden["training.rl.algorithm"] == ("rebel", "grpo")
    # A variant naming the recipe's own algorithm keeps the recipe's settings of it.
    rebel = get_variant("langptune_rebel")
    assert (rebel.recipe_for(recipe).training.rl.algorithm.passes_per_batch, rebel.recipe_for(recipe).training.rl.algorithm.eta) == (3, 2.0)
    assert "training.rl.algorithm" not in rebel.overridden_settings(recipe)
    assert "training.contrastive.item_bias" not in overridden  # the recipe already says False


def test_rl_trains_on_the_recommenders_users_or_on_the_users_right_after_them(tiny):
    """With training.rl_users the RL prompts are users the recommender never fitted on (issue 12:
    a reward on the head's own rows pays for matching what it memorised)."""
    train = tiny[2].train
    same = rl_rows(train, TrainingConfig(max_train_users=5))
    held_out = rl_rows(train, TrainingConfig(max_train_users=5, rl_users=2))

    assert same["user_id"].to_list() == [f"train{u}" for u in range(5)]
    assert held_out["user_id"].to_list() == ["train5", "train6"]
    with pytest.raises(ValueError, match="no train users after the first 8"):
        rl_rows(train, TrainingConfig(max_train_users=8, rl_users=2))
    with pytest.raises(ValueError, match="set training.max_train_users"):
        TrainingConfig(rl_users=2)


def test_the_reward_ranks_with_the_recommender_or_with_plain_cosine():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(6, 4)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    items = [f"i{n}" for n in range(6)]
    head = ItemHead.identity(6, 4, 1.0)
    # A bias that puts item i5 first for every query: what a popularity prior does.
    head = ItemHead(head.transform, head.residual, np.array([0, 0, 0, 0, 0, 100], dtype=np.float32), 1.0)
    recommender = head.index(items, embeddings)
    query = embeddings[:1]  # item i0's own embedding: first under plain cosine

    kept = reward_index(RLConfig(), recommender, items, embeddings)
    cosine = reward_index(RLConfig(reward_ranking="cosine"), recommender, items, embeddings)

    assert kept is recommender
    assert kept.target_ranks(query, ["i5"], [[]])[0] == 1.0
    assert cosine.target_ranks(query, ["i0"], [[]])[0] == 1.0 and cosine.bias is None
