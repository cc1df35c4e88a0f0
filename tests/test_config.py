"""Recipes: typed, strict, with errors that name the file and the field."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from lpt_core.config import RecipeError, RLConfig, load_recipe
from lpt_core.training.variants import get_variant


def test_shipped_recipes_validate():
    assert load_recipe("quick").name == "quick"
    assert load_recipe("full").split.windows_per_user > 1


def test_the_full_recipes_trained_head_and_profile_head_fit_on_the_same_rows():
    """The report's LLM comparison (a trained variant vs profile_head) holds the recommender fixed
    only if the variant's head fits on profile_head's rows: the same train users, and every val
    row for early stopping (16 val users stopped a head at epoch 0, i.e. plain cosine: issue 12).
    RL trains on users neither head saw."""
    full = load_recipe("full")
    assert full.evaluation.baseline == "profile_head"
    assert full.training.max_train_users == full.evaluation.head_train_users
    assert full.training.max_val_users is None
    assert full.training.rl_users is not None
    assert full.training.seed == full.evaluation.seed
    trained = get_variant(full.registry.variant).recipe_for(full)
    assert trained.training.contrastive.head == full.evaluation.head


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
            "training": {"variants": ["langptune_rebel"], "rl": {"vllm_gpu_memory_utilization": 0.5},
                         "launch": {"processes": 2}},
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


# Issue 15.8: accepted at load, failing later or never.
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"evaluation": {"ks": [0]}}, "evaluation.ks.0: Input should be greater than 0"),
        ({"evaluation": {"ks": []}}, "evaluation.ks: "),
        ({"evaluation": {"methods": ["random", "profle"]}}, "unknown evaluation method(s) 'profle'; valid: random"),
        ({"evaluation": {"baseline": "sasrex"}}, "evaluation.baseline 'sasrex' is not a row of the report"),
        ({"training": {"variants": ["langptune_rebel", "rebel"]}}, "unknown training variant(s) 'rebel'; valid:"),
        ({"models": {"generator": "smollm2-135m-instrcut"}}, "models.generator: model 'smollm2-135m"),
        ({"quality": {"judge": "smollm"}}, "quality.judge: model 'smollm' is not a packaged default"),
        ({"data": {"source": "amazon_2023", "path": "r.jsonl"}}, "data.items_path (the items file) is required"),
        ({"data": {"source": "amazon_2023", "items_path": "m.jsonl"}}, "data.path is the MovieLens folder"),
        ({"data": {"k_core": True}}, "data.k_core: expected a number, got a boolean (got True)"),
    ],
)
def test_names_and_values_that_would_fail_later_fail_at_load(overrides, expected):
    with pytest.raises(RecipeError) as error:
        load_recipe("quick", overrides)
    assert expected in str(error.value)


def test_valid_names_pass_and_a_baseline_may_be_a_trained_variant(tmp_path):
    recipe = load_recipe(
        "quick",
        {
            "evaluation": {"baseline": "cl_only"},
            "models": {"generator": "HuggingFaceTB/SmolLM2-360M-Instruct", "encoder": str(tmp_path)},
            "data": {"source": "amazon_2023", "path": "r.jsonl", "items_path": "m.jsonl"},
        },
    )
    assert recipe.evaluation.baseline == "cl_only"


def test_the_methods_a_recipe_may_list_are_the_registered_ones():
    """config reads the method names from lpt_core.evaluation_methods; baselines registers each."""
    from lpt_core.baselines import METHODS, register
    from lpt_core.evaluation_methods import EVALUATION_METHODS

    assert set(METHODS) == set(EVALUATION_METHODS)
    with pytest.raises(ValueError, match="add its name to EVALUATION_METHODS"):
        register("not_listed")(lambda ctx: None)


def test_the_recipe_and_the_variants_load_without_torch():
    """The recipe checks training.variants against the registry itself, so that registry loads
    where torch does not (a fresh interpreter in which importing torch fails)."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from lpt_core.config import TrainingConfig\n"
        "from lpt_core.training.variants import VARIANTS\n"
        "assert TrainingConfig(variants=tuple(VARIANTS)).variants == tuple(VARIANTS)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]


def test_an_item_head_and_an_in_batch_item_bias_are_not_both_learned():
    with pytest.raises(RecipeError, match="both learn a per-item bias"):
        load_recipe("quick", {"training": {"contrastive": {"item_bias": True, "head": {"kind": "linear"}}}})
    with pytest.raises(RecipeError, match="residual_l2"):
        load_recipe("quick", {"training": {"contrastive": {"head": {"kind": "hybrid", "residual_l2": -1}}}})


def test_a_setting_the_algorithm_does_not_read_is_an_error_that_names_it():
    with pytest.raises(ValidationError, match=r"rl.algorithm 'grpo' \(GRPO.*\): eta: Extra inputs"):
        RLConfig(algorithm={"name": "grpo", "eta": 2.0}, samples_per_prompt=4)
    # quick.yaml sets REBEL's passes_per_batch and eta; RLOO reads neither.
    with pytest.raises(RecipeError, match="training.rl.algorithm: .*'rloo'.*passes_per_batch: Extra inputs"):
        load_recipe("quick", {"training": {"rl": {"algorithm": {"name": "rloo"}, "samples_per_prompt": 4}}})
    with pytest.raises(RecipeError, match="unknown rl.algorithm 'ppo'; valid: rebel, grpo, rloo"):
        load_recipe("quick", {"training": {"rl": {"algorithm": "ppo"}}})


def test_an_algorithm_is_a_name_for_its_defaults_or_its_section_and_dumps_whole():
    from lpt_core.training.algorithms.rebel import RebelSettings

    assert RLConfig(algorithm="rebel").algorithm == RebelSettings()
    cfg = RLConfig(algorithm={"name": "rebel", "eta": 2.0})
    assert cfg.model_dump()["algorithm"] == {**RebelSettings().model_dump(), "eta": 2.0}
    assert RLConfig.model_validate(cfg.model_dump()) == cfg

def test_head_rows_need_a_head_kind():
    methods = ["profile", "history_text_head"]
    with pytest.raises(RecipeError, match="set evaluation.head.kind"):
        load_recipe("quick", {"evaluation": {"methods": methods, "head": {"kind": "none"}}})
    assert load_recipe("quick", {"evaluation": {"methods": methods}}).evaluation.head.kind == "linear"


def test_rebel_takes_pairs_and_the_group_algorithms_are_variants_with_four_samples():
    with pytest.raises(RecipeError, match="samples_per_prompt 4: rebel takes exactly 2"):
        load_recipe("quick", {"training": {"rl": {"samples_per_prompt": 4}}})
    from lpt_core.training.variants import get_variant

    recipe = load_recipe("quick")
    for name, algorithm in (("langptune_grpo", "grpo"), ("langptune_rloo", "rloo")):
        rl = get_variant(name).recipe_for(recipe).training.rl
        assert (rl.algorithm.name, rl.samples_per_prompt) == (algorithm, 4)


def test_a_repeated_key_is_an_error_naming_its_line(tmp_path):
    """Issue 31.8: two `data:` sections loaded silently, the last one winning."""
    path = tmp_path / "twice.yaml"
    path.write_text("data:\n  k_core: 3\nsplit:\n  history_len: 4\ndata:\n  k_core: 5\n", encoding="utf-8")
    with pytest.raises(RecipeError) as error:
        load_recipe(str(path))
    assert "repeated key 'data' (first at line 1)" in str(error.value)
    assert f'in "{path}", line 5' in str(error.value)
    path.write_text("split:\n  history_len: 4\n  seed: 1\n  history_len: 5\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"repeated key 'history_len' \(first at line 2\)"):
        load_recipe(str(path))


def test_a_misspelt_baseline_metric_fails_at_load(tmp_path):
    """Issue 31.9: `baselines.metric: ndgc@10` passed validation, then failed the baseline step."""
    path = tmp_path / "metric.yaml"
    path.write_text("baselines:\n  metric: ndgc@10\n", encoding="utf-8")
    with pytest.raises(RecipeError) as error:
        load_recipe(str(path))
    assert "baselines.metric: metric must be one of ('recall', 'ndcg', 'mrr')" in str(error.value)
    assert "'ndgc@10'" in str(error.value)
    assert load_recipe("quick", {"baselines": {"metric": "mrr@20"}}).baselines.metric == "mrr@20"
