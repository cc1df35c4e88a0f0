"""One library function per job, called by both the Dagster assets and `lpt train`: the trained
profile writer on the recipe's generation backend, and a variant's training data and folders."""

from __future__ import annotations

import polars as pl
import pytest
import torch
import yaml
from builders import example_row, examples_table, items_table, tiny_recipe

from lpt_core import cli, text
from lpt_core.config import GenerationConfig, RLConfig
from lpt_core.generation import make_generator
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.models import load_generator, load_tokenizer
from lpt_core.paths import Outputs
from lpt_core.training import alternation
from lpt_core.training.alternation import TrainingData
from lpt_core.training.policy import load_trained_generator, make_policy, trained_profile_writer

RL = RLConfig(lora_r=2, lora_alpha=4)


# The recipe sections of these tests: the tiny LM writes 4 tokens, 4 prompts a batch.
SECTIONS = {"generation": GenerationConfig(max_new_tokens=4, batch_size=4), "training": {"rl": RL.model_dump()}}


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_on_a_cpu_the_vllm_writer_fails_before_loading_with_the_factory_error(tiny_lm_folder, tmp_path, device):
    recipe = tiny_recipe(tiny_lm_folder, **{**SECTIONS, "generation": GenerationConfig(max_new_tokens=4, batch_size=4, backend="vllm")})
    recipe = recipe.model_copy(update={"models": recipe.models.model_copy(update={"device": device})})
    with pytest.raises(Exception) as factory:
        make_generator(recipe.models.generator, recipe.models, recipe.generation)
    # No adapter there: an error from loading it would mean the backend was not checked first.
    with pytest.raises(type(factory.value)) as writer:
        trained_profile_writer(recipe, tmp_path / "no_adapter", model_id="trained")
    assert str(writer.value) == str(factory.value)
    assert "generation.backend 'vllm'" in str(writer.value)


def test_the_transformers_writer_writes_with_the_trained_adapter(tiny_lm_folder, tmp_path):
    recipe = tiny_recipe(tiny_lm_folder, **SECTIONS)
    base, _ = load_generator(recipe.models.generator, recipe.models)
    policy = make_policy(base, recipe.training.rl)
    torch.manual_seed(0)
    for name, weight in policy.named_parameters():
        if "lora_B" in name:  # LoRA B starts at zero: move it, so the adapter changes the output
            weight.data.normal_(std=0.5)
    policy.save_pretrained(tmp_path / "adapter")

    writer = trained_profile_writer(recipe, tmp_path / "adapter", model_id="trained")

    assert isinstance(writer, TransformersGenerator) and writer.model_id == "trained"
    merged, tokenizer = load_trained_generator(recipe, tmp_path / "adapter")
    expected = TransformersGenerator(merged, tokenizer, recipe.generation, model_id="expected")
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": c}], tokenize=False,
                                             add_generation_prompt=True) for c in ("comedies", "westerns")]
    assert [p.text for p in writer.generate(prompts)] == [p.text for p in expected.generate(prompts)]
    base_text = [p.text for p in make_generator(recipe.models.generator, recipe.models, recipe.generation).generate(prompts)]
    assert base_text != [p.text for p in writer.generate(prompts)]


def split_tables() -> dict[str, pl.DataFrame]:
    items = items_table([f"m{i}" for i in range(6)], title=[f"Movie {i}" for i in range(6)], categories=[["Drama"]] * 6)
    rows = [("t1", "train"), ("t2", "train"), ("v1", "val"), ("s1", "test")]
    examples = examples_table(*[
        example_row(u, s, ["m0", "m1"], f"m{2 + n}", history_ratings=[4.0, 3.0]) for n, (u, s) in enumerate(rows)
    ])
    catalog = items.with_columns(text.item_texts(items).alias("text"))
    histories = pl.DataFrame(
        [{"user_id": u, "item_id": i} for u, _ in rows for i in ("m0", "m1")] + [{"user_id": "t1", "item_id": "m5"}]
    )
    return {"user_examples": examples, "cleaned_items": items, "item_catalog": catalog, "cleaned_histories": histories}


def training_tables(tables: dict[str, pl.DataFrame]) -> list[pl.DataFrame]:
    return [tables[name] for name in ("user_examples", "cleaned_items", "item_catalog", "cleaned_histories")]


def test_training_data_is_the_train_and_val_rows_with_the_recipes_prompts(tiny_lm_folder):
    recipe, tables = tiny_recipe(tiny_lm_folder, **SECTIONS), split_tables()
    data = TrainingData.from_tables(*training_tables(tables), recipe)
    assert data.train["user_id"].to_list() == ["t1", "t2"] and data.val["user_id"].to_list() == ["v1"]
    # The popularity prior counts the train users' interactions only (v1 and s1 are left out).
    assert data.item_counts == {"m0": 2, "m1": 2, "m5": 1}
    tokenizer = load_tokenizer(recipe.models.generator)
    expected = text.build_prompts(data.val.drop("prompt"), tables["cleaned_items"], tokenizer, recipe.prompt, "movielens_100k")
    assert data.val["prompt"].to_list() == expected
    assert data.catalog.equals(tables["item_catalog"])


def test_lpt_train_trains_what_the_asset_would_into_the_same_folders(tiny_lm_folder, tmp_path, monkeypatch):
    """`lpt train` reads the stored split tables and trains through train_variant, as the asset:
    the same data, the checkpoint folder outputs/training/<variant> and the shared profile store."""
    monkeypatch.setenv("LPT_HOME", str(tmp_path / "lpt"))
    recipe, tables = tiny_recipe(tiny_lm_folder, **SECTIONS), split_tables()
    outputs = Outputs.default()
    outputs.root.mkdir(parents=True)
    for name, frame in tables.items():
        frame.write_parquet(outputs.table(name))
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe.model_dump(mode="json")), encoding="utf-8")
    called = {}

    def train_alternating(recipe, variant, data, root, callbacks=None, profile_store=None):
        called.update(variant=variant, data=data, root=root, profile_store=profile_store)
        raise SystemExit(0)  # stop here: what matters is what it was asked to train

    monkeypatch.setattr(alternation, "train_alternating", train_alternating)
    with pytest.raises(SystemExit):
        cli.main(["train", "--recipe", str(recipe_file), "--variant", "cl_only"])

    expected = TrainingData.from_tables(*training_tables(tables), recipe)
    assert called["variant"] == "cl_only"
    assert called["root"] == outputs.training("cl_only") == tmp_path / "lpt" / "outputs" / "training" / "cl_only"
    assert called["profile_store"] == outputs.profile_store
    assert called["data"].train.equals(expected.train) and called["data"].val.equals(expected.val)
    assert called["data"].item_counts == expected.item_counts
