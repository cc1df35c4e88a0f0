"""Recipes: typed, strict, with errors that name the file and the field."""

import pytest

from lpt_core.config import RecipeError, load_recipe


def test_shipped_recipes_validate():
    assert load_recipe("quick").name == "quick"
    assert load_recipe("full").split.windows_per_user > 1


def test_unknown_and_mistyped_keys_name_the_file_and_field(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("split:\n  histroy_len: 3\ngeneration:\n  max_new_tokens: lots\n", encoding="utf-8")
    with pytest.raises(RecipeError) as error:
        load_recipe(str(path))
    message = str(error.value)
    assert str(path) in message
    assert "split.histroy_len: unknown key" in message
    assert "generation.max_new_tokens" in message


def test_missing_recipe_lists_the_available_ones():
    with pytest.raises(RecipeError, match="available: .*quick"):
        load_recipe("no_such_recipe")


def test_overrides_merge_into_nested_sections():
    recipe = load_recipe("quick", {"generation": {"max_new_tokens": 7}})
    assert recipe.generation.max_new_tokens == 7
    assert recipe.generation.batch_size == load_recipe("quick").generation.batch_size


def test_training_hash_ignores_sections_a_trained_model_does_not_depend_on():
    base = load_recipe("quick")
    unrelated = load_recipe(
        "quick",
        {
            "evaluation": {"bootstrap_samples": 20},
            "quality": {"max_users": 3},
            "training": {"variants": ["langptune_rebel"], "rl": {"vllm_gpu_memory_utilization": 0.5}},
            "registry": {"variant": "langptune_rebel"},
        },
    )
    related = load_recipe("quick", {"training": {"rl": {"learning_rate": 1e-3}}})
    assert unrelated.training_hash() == base.training_hash()
    assert unrelated.content_hash() != base.content_hash()
    assert related.training_hash() != base.training_hash()


def test_registry_variant_must_be_trained():
    with pytest.raises(RecipeError, match="registry.variant"):
        load_recipe("quick", {"training": {"variants": ["cl_only"]}})


def test_profile_mean_row_needs_sampled_profiles():
    with pytest.raises(RecipeError, match="sampled_profiles"):
        load_recipe("quick", {"evaluation": {"sampled_profiles": 0}})
