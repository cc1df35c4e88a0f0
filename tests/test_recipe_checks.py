"""The paper recipe's checks without a GPU (lpt_core.recipe_checks, `lpt check-recipe`): paths, the
writer's chat template, prompt lengths. The paper recipe's paths point at tiny models built in
code and an Amazon-format sample through overrides, so no gemma or mxbai is needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tiny_lm import build_tiny_lm

from lpt_core.cli import main
from lpt_core.config import CONFIGS_DIR, Recipe, load_recipe
from lpt_core.recipe_checks import check_recipe

# Gemma's chat template refuses a system turn in these words (google/gemma-2b-it).
GEMMA_LIKE_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def writer_2k(tmp_path_factory) -> Path:
    """The tiny chat LM with a 2,048-token context: room for the paper's 1,024-token prompts and
    512-token profiles."""
    return build_tiny_lm(tmp_path_factory.mktemp("writer_2k"), context=2048)


@pytest.fixture
def amazon_sample(tmp_path) -> tuple[Path, Path]:
    """An Amazon Reviews 2023 reviews file and metadata file, a line each."""
    reviews, meta = tmp_path / "Movies_and_TV.jsonl", tmp_path / "meta_Movies_and_TV.jsonl"
    reviews.write_text(json.dumps({"user_id": "U1", "parent_asin": "P1", "rating": 5.0, "text": "Loved it",
                                   "timestamp": 1588687728923}) + "\n", encoding="utf-8")
    meta.write_text(json.dumps({"parent_asin": "P1", "title": "A Film", "categories": ["Drama"]}) + "\n",
                    encoding="utf-8")
    return reviews, meta


@pytest.fixture
def on_tiny_models(writer_2k, tiny_encoder_folder, amazon_sample) -> dict:
    """Overrides pointing the paper recipe's data and models at what these tests build."""
    reviews, meta = amazon_sample
    return {
        "data": {"path": str(reviews), "items_path": str(meta)},
        "models": {"generator": str(writer_2k), "encoder": str(tiny_encoder_folder)},
        "quality": {"judge": str(writer_2k)},
    }


def _paper(overrides: dict, **changes: dict) -> Recipe:
    """The paper recipe with `overrides`, each keyword's section updated by its dict."""
    merged = {**overrides}
    for section, values in changes.items():
        merged[section] = {**merged.get(section, {}), **values}
    return load_recipe("paper", merged)


def _fields(check) -> list[str]:
    return [problem.field for problem in check.problems]


def test_the_paper_recipe_is_the_reference_configuration():
    recipe = load_recipe("paper")
    assert (recipe.data.source, recipe.data.k_core, recipe.data.max_item_tokens, recipe.data.max_prompt_tokens) == (
        "amazon_2023", 5, 512, 1024)
    assert (recipe.split.strategy, recipe.split.history_len, recipe.split.windows_per_user) == ("first_n", 4, 1)
    assert recipe.training.variants == ("langptune_rebel",) and recipe.training.rounds == 5
    assert recipe.generation.backend == "vllm"
    rl = recipe.training.rl
    assert (rl.lora_r, rl.lora_alpha, rl.learning_rate, rl.beta, rl.updates_per_round, rl.prompts_per_update) == (
        1024, 2048, 1e-7, 0.2, 200, 64)
    assert (rl.algorithm.name, rl.algorithm.passes_per_batch, rl.algorithm.eta, rl.sampling.max_new_tokens) == (
        "rebel", 4, 1.0, 512)
    assert (recipe.training.contrastive.steps_per_round, recipe.training.contrastive.learning_rate) == (800, 1e-7)


def test_the_paper_recipe_splits_over_the_gpu_counts_its_docs_launch():
    # docs/reproducing.md launches it with configs/accelerate/ddp.yaml on 1, 2, 4 or 8 GPUs; batches
    # are global and must split evenly over the processes.
    launch = yaml.safe_load((CONFIGS_DIR / "accelerate" / "ddp.yaml").read_text(encoding="utf-8"))
    assert launch["distributed_type"] == "MULTI_GPU"
    assert "configs/accelerate/ddp.yaml" in (CONFIGS_DIR.parent / "docs" / "reproducing.md").read_text(encoding="utf-8")
    recipe = load_recipe("paper")
    for processes in (1, 2, 4, 8):
        assert recipe.training.rl.prompts_per_update % processes == 0
        assert recipe.training.contrastive.batch_size % processes == 0


def test_the_paper_recipe_passes_its_checks_on_tiny_models_and_the_amazon_sample(on_tiny_models):
    check = check_recipe(_paper(on_tiny_models))
    assert check.ok, check.to_text()
    text = check.to_text()
    assert "data.items_path: file" in text and "models.generator: chat template present" in text
    # The prompt's measured sizes: fixed part, the shortest 4-item history, room per item.
    assert "shortest 4-item history" in text and "tokens per history item" in text
    assert "prompt 1024 + profile 512 tokens fit its context of 2048" in text


@pytest.mark.parametrize("field", ["data.path", "data.items_path"])
def test_a_missing_data_file_is_named_by_its_field_and_path(on_tiny_models, tmp_path, field):
    missing = tmp_path / "nowhere" / "reviews.jsonl.gz"
    key = field.split(".")[1]
    check = check_recipe(_paper(on_tiny_models, data={key: str(missing)}))
    assert _fields(check) == [field]
    assert str(missing) in str(check.problems[0]) and "does not exist" in str(check.problems[0])


def test_a_missing_model_folder_is_named_by_its_field(on_tiny_models, tmp_path):
    missing = tmp_path / "models" / "mxbai-embed-large-v1"
    check = check_recipe(_paper(on_tiny_models, models={"encoder": str(missing)}))
    assert _fields(check) == ["models.encoder"]
    assert str(missing) in str(check.problems[0])


def test_check_recipe_command_prints_the_field_and_fails(on_tiny_models, tmp_path, capsys):
    on_tiny_models["data"]["items_path"] = str(tmp_path / "meta_missing.jsonl")
    assert main(["check-recipe", "paper", "--overrides", json.dumps(on_tiny_models)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM data.items_path: {tmp_path / 'meta_missing.jsonl'} does not exist" in out


def test_check_recipe_command_passes_a_good_recipe(on_tiny_models, capsys):
    assert main(["check-recipe", "paper", "--overrides", json.dumps(on_tiny_models)]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_a_prompt_too_long_for_max_prompt_tokens_is_caught(on_tiny_models):
    # The paper's instruction and 4 items do not fit 40 tokens: every user would be dropped.
    check = check_recipe(_paper(on_tiny_models, data={"max_prompt_tokens": 40}))
    assert _fields(check) == ["data.max_prompt_tokens"]
    assert "cannot hold even the shortest prompt" in check.problems[0].message


def test_a_long_instruction_is_caught_against_the_limit(on_tiny_models):
    check = check_recipe(_paper(on_tiny_models, prompt={"instruction": "Describe the user. " * 300}))
    assert _fields(check) == ["data.max_prompt_tokens"]


def test_prompt_and_profile_past_the_writers_context_are_caught(on_tiny_models, tiny_lm_folder):
    # The shared tiny LM has a 1,024-token context: a 1,024-token prompt leaves no room for profiles.
    check = check_recipe(_paper(on_tiny_models, models={"generator": str(tiny_lm_folder)}))
    # Profiles for evaluation and REBEL's rollouts; best-of-n's length is not one langptune_rebel uses.
    assert len(check.problems) == 2 and _fields(check)[0] == "generation.max_new_tokens"
    assert all("= 1536, over the writer's context of 1024 tokens" in p.message for p in check.problems)


def test_a_system_turn_the_writers_template_refuses_is_named(on_tiny_models, writer_2k, tmp_path):
    gemma_like = shutil.copytree(writer_2k, tmp_path / "gemma_like")
    (gemma_like / "chat_template.jinja").write_text(GEMMA_LIKE_TEMPLATE, encoding="utf-8")
    writer = {"generator": str(gemma_like)}
    assert check_recipe(_paper(on_tiny_models, models=writer)).ok  # the paper recipe has no system turn
    check = check_recipe(_paper(on_tiny_models, models=writer, prompt={"system": "You write user profiles."}))
    assert _fields(check) == ["prompt.system"]
    assert "System role not supported" in check.problems[0].message


def test_a_writer_without_a_chat_template_is_named(on_tiny_models, writer_2k, tmp_path):
    base = shutil.copytree(writer_2k, tmp_path / "base_lm")
    (base / "chat_template.jinja").unlink()
    check = check_recipe(_paper(on_tiny_models, models={"generator": str(base)}))
    assert _fields(check) == ["models.generator"]
    assert "has no chat template" in check.problems[0].message



def test_a_writer_folder_without_a_tokenizer_is_named(on_tiny_models, writer_2k, tmp_path):
    weights_only = tmp_path / "weights_only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(writer_2k / name, weights_only / name)
    check = check_recipe(_paper(on_tiny_models, models={"generator": str(weights_only)}))
    assert _fields(check) == ["models.generator"]
    assert "its tokenizer does not load" in check.problems[0].message


def _write_histories(folder: Path, review: str, users: int = 12, items: int = 6) -> dict:
    """An Amazon-format dump where every user reviewed every item, one after the other (a 5-core
    that survives cleaning), and the data overrides that point the recipe at it."""
    reviews, meta = folder / "reviews.jsonl", folder / "meta.jsonl"
    start = 1588687728923
    reviews.write_text("".join(
        json.dumps({"user_id": f"U{u}", "parent_asin": f"P{i}", "rating": 4.0, "text": review,
                    "timestamp": start + 1000 * (items * u + i)}) + "\n"
        for u in range(users) for i in range(items)
    ), encoding="utf-8")
    meta.write_text("".join(
        json.dumps({"parent_asin": f"P{i}", "title": f"Film {i}", "categories": ["Drama"],
                    "description": ["A slow-burn thriller."]}) + "\n"
        for i in range(items)
    ), encoding="utf-8")
    return {"path": str(reviews), "items_path": str(meta)}


def test_reading_the_data_measures_every_prompt(on_tiny_models, tmp_path):
    data = _write_histories(tmp_path, "A slow-burn thriller with a great cast.")
    check = check_recipe(_paper(on_tiny_models, data=data), read_data=True)
    assert check.ok, check.to_text()
    assert "data: 12 examples of 12 users; prompt tokens median" in check.to_text()
    assert "0 over data.max_prompt_tokens 1024" in check.to_text()


def test_reading_the_data_catches_prompts_all_over_the_limit(on_tiny_models, tmp_path):
    # Four long reviews per history: every prompt is over 1,024 tokens, every user would be dropped.
    data = _write_histories(tmp_path, "Too long, and the ending fell flat for me. " * 40)
    check = check_recipe(_paper(on_tiny_models, data=data), read_data=True)
    assert _fields(check) == ["data.max_prompt_tokens"]
    assert "every example's prompt is over the limit (12 examples of 12 users" in check.problems[0].message


def test_reading_the_data_names_the_file_that_does_not_read(on_tiny_models, tmp_path):
    data = _write_histories(tmp_path, "Fine.")
    Path(data["path"]).write_text("not json\n", encoding="utf-8")
    check = check_recipe(_paper(on_tiny_models, data={**data, "bad_rows": "error"}), read_data=True)
    assert _fields(check) == ["data.path"]
    assert f"{data['path']}:1" in check.problems[0].message
