"""Experiment recipes: YAML files under configs/ validated into typed, frozen config objects.

A recipe says everything a run depends on (dataset, models, lengths, seeds, decoding, evaluation),
so changing scale or data never needs a code edit. Unknown keys are errors, not silently ignored,
because a misspelt key that falls back to a default is the classic way to run the wrong experiment.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


class RecipeError(ValueError):
    """A recipe file that cannot be read or does not validate; the message names file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the raw data is and how it is cleaned."""

    source: Literal["movielens_100k", "amazon_2023", "tabular"] = "movielens_100k"
    # movielens_100k: folder holding ml-100k.inter / ml-100k.item (relative to the repo root).
    # amazon_2023: the reviews file; tabular: the interactions file.
    path: str = "data/raw/ml-100k"
    # amazon_2023: the metadata file; tabular: the items file.
    items_path: str | None = None
    # tabular only: canonical column name -> column name in the file.
    column_map: dict[str, str] = Field(default_factory=dict)
    # The reference keeps duplicate (user, item) interactions; "first"/"last" keep one per pair.
    dedup: Literal["keep", "first", "last"] = "keep"
    # Malformed rows: "error" stops with file/line/field; "quarantine" sets them aside, counted.
    bad_rows: Literal["error", "quarantine"] = "error"
    k_core: int = Field(5, ge=1)
    max_item_tokens: int = Field(512, ge=1, description="encoder tokens per item text")
    max_prompt_tokens: int = Field(1024, ge=1, description="generator tokens per profile prompt")


class PromptConfig(_Strict):
    """How the profile prompt is laid out. The defaults are the paper's: instruction first, then one
    block per history item ("Title: ...", "Category: ...", the user's rating/review)."""

    # None: the paper's instruction for the data source (lpt_core.text.DEFAULT_INSTRUCTIONS).
    instruction: str | None = None
    system: str | None = None
    instruction_position: Literal["before", "after"] = "before"
    # "lines": one compact line per item ("- Title (1995) [Genres]: rated 4/5"), for sources
    # without reviews, where small models tend to copy "Title:" blocks instead of summarising.
    history_format: Literal["blocks", "lines"] = "blocks"


class SplitConfig(_Strict):
    """How users become train/val/test examples (method.md, "Data and protocol")."""

    strategy: Literal["first_n", "leave_last_out"] = "first_n"
    history_len: int = Field(4, ge=1, description="N: history items per example")
    train_frac: float = Field(0.8, gt=0, lt=1)
    # The rest after train is shared between val and test in this proportion.
    val_share: float = Field(0.5, gt=0, lt=1)
    # Windows per user (history of N, next new item); 1 is the paper's one example per user.
    windows_per_user: int = Field(1, ge=1)
    window_stride: int = Field(1, ge=1)
    seed: int = 0


class ModelsConfig(_Strict):
    """Model names: a packaged default, a local Hugging Face folder, a .gguf file or a hub id."""

    generator: str = "smollm2-135m-instruct"
    encoder: str = "all-minilm-l6-v2"
    # "auto" picks bf16 where the CPU supports it and it is faster, fp32 otherwise, bf16 on CUDA.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class GenerationConfig(_Strict):
    """Profile decoding settings; they are part of every stored profile's identity."""

    backend: Literal["transformers", "vllm"] = "transformers"
    max_new_tokens: int = Field(128, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(16, ge=1)
    seed: int = 0


class EvaluationConfig(_Strict):
    ks: tuple[int, ...] = (5, 10, 20)
    bootstrap_samples: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0, lt=1)
    # Cap on train users given zero-shot profiles (contrastive training needs them); None = all.
    max_train_users: int | None = Field(None, ge=0)
    # The split the report ranks ("val" while tuning, "test" for the record).
    split: Literal["val", "test"] = "test"
    # "flat" is exact (evaluation); "hnsw" is approximate, for catalogues too big for exact search.
    index_kind: Literal["flat", "hnsw"] = "flat"
    methods: tuple[str, ...] = ("random", "popularity", "last_item_text", "history_text", "profile")
    # The method every other one is compared with in the paired intervals.
    baseline: str = "profile"
    # Beyond the paper: profiles sampled per evaluated example (at `sample_temperature`) whose
    # scores are averaged, the "profile_mean" row; 0 leaves the row out.
    sampled_profiles: int = Field(0, ge=0)
    sample_temperature: float = Field(1.0, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _profile_mean_needs_samples(self) -> EvaluationConfig:
        if "profile_mean" in self.methods and self.sampled_profiles == 0:
            raise ValueError("evaluation.methods lists profile_mean: set evaluation.sampled_profiles > 0")
        return self


class RLConfig(_Strict):
    """The LLM ("encoder") phase: RL on the profile writer, reward = rank of the next item."""

    algorithm: Literal["rebel", "grpo", "rloo"] = "rebel"
    updates_per_round: int = Field(8, ge=0)
    prompts_per_update: int = Field(8, ge=1)
    # REBEL compares two samples per prompt (the reference); GRPO/RLOO can take more.
    samples_per_prompt: int = Field(2, ge=2)
    # REBEL: passes over each rollout batch (reference 4).
    passes_per_batch: int = Field(4, ge=1)
    micro_batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    # KL shaping coefficient: reward - beta * (log pi_old - log pi_ref) (reference 0.2 for Gemma).
    beta: float = Field(0.2, ge=0)
    # REBEL's regression scale on the reward difference (reference 1).
    eta: float = Field(1.0, gt=0)
    reward: Literal["ndcg", "mrr"] = "ndcg"
    max_new_tokens: int = Field(96, ge=1)
    temperature: float = Field(1.0, gt=0)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    gradient_checkpointing: bool = False
    # Who samples the rollouts (and, with generation.backend "vllm", writes the decoder phase's
    # profiles): transformers' generate on the policy itself, or a vLLM engine colocated on the same
    # CUDA GPU whose weights are synced from the policy at every update (docs/vllm.md; the `vllm`
    # extra). vllm_gpu_memory_utilization is the share of GPU memory that engine may take; the rest
    # is left to training.
    rollout_backend: Literal["transformers", "vllm"] = "transformers"
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, lt=1)


class ContrastiveConfig(_Strict):
    """The recommender ("decoder") phase: InfoNCE of profile -> target item text, in-batch negatives."""

    steps_per_round: int = Field(50, ge=0)
    batch_size: int = Field(32, ge=2)
    learning_rate: float = Field(5e-5, gt=0)
    # MultipleNegativesRankingLoss scale = 1 / temperature (reference tau = 0.1).
    scale: float = Field(10.0, gt=0)
    # Beyond the paper: a learned per-item bias added to the profile-item similarity.
    item_bias: bool = False
    warmup_ratio: float = Field(0.0, ge=0, lt=1)


class TrainingConfig(_Strict):
    """Alternation of decoder (contrastive) and encoder (RL) phases, decoder first."""

    rounds: int = Field(2, ge=1)
    # The trained systems to build and report (lpt_core.training.variants.VARIANTS).
    variants: tuple[str, ...] = ("langptune_rebel", "langptune_grpo", "cl_only", "rl_only", "langptune_item_bias")
    rl: RLConfig = RLConfig()
    contrastive: ContrastiveConfig = ContrastiveConfig()
    # Train users used for training (None = all); val users monitored at each phase's end.
    max_train_users: int | None = Field(None, ge=1)
    max_val_users: int | None = Field(None, ge=1)
    seed: int = 0


class SASRecGrid(_Strict):
    """SASRec settings searched on the validation users (names are SASRecConfig fields)."""

    hidden: tuple[int, ...] = (32, 64)
    blocks: tuple[int, ...] = (1, 2)
    dropout: tuple[float, ...] = (0.2, 0.5)
    lr: tuple[float, ...] = (1e-3, 3e-3)
    max_len: tuple[int, ...] = (20, 50)


class BaselinesConfig(_Strict):
    """History baselines (SASRec, item-kNN): search space and budget, selected on val users
    (lpt_core.recommenders.tuning.BaselineSearch has the same fields and defaults)."""

    sasrec_grid: SASRecGrid = SASRecGrid()
    sasrec_trials: int = Field(3, ge=1, description="SASRec settings drawn from the grid")
    epochs: int = Field(15, ge=1, description="epoch cap per SASRec trial")
    patience: int = Field(2, ge=1, description="epochs without val improvement before stopping")
    batch_size: int = Field(128, ge=1)
    heads: int = Field(1, ge=1)
    knn_neighbours: tuple[int, ...] = (20, 50, 100, 200)
    knn_similarities: tuple[Literal["cosine", "cooccurrence"], ...] = ("cosine", "cooccurrence")
    metric: str = "ndcg@10"
    time_budget_s: float | None = Field(None, gt=0, description="stop starting SASRec trials after")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while training")
    seed: int = 0


class QualityConfig(_Strict):
    """The profile quality report (lpt_core.profile_quality): judge LLM, reader, steering edits."""

    judge: str = "smollm2-135m-instruct"
    candidates: int = Field(5, ge=2)
    max_users: int | None = Field(50, ge=1)
    edits_per_user: int = Field(2, ge=0)
    judge_batch_size: int = Field(8, ge=1)
    seed: int = 0


class RegistryConfig(_Strict):
    """Which trained variant is served, and under which registered model name."""

    variant: str = "langptune_rebel"  # one of training.variants
    model_name: str = "langptune"


class Recipe(_Strict):
    name: str
    seed: int = 0
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    models: ModelsConfig = ModelsConfig()
    prompt: PromptConfig = PromptConfig()
    generation: GenerationConfig = GenerationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    training: TrainingConfig = TrainingConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    registry: RegistryConfig = RegistryConfig()
    quality: QualityConfig = QualityConfig()

    @model_validator(mode="after")
    def _check_sources(self) -> Recipe:
        if self.data.source == "tabular" and not self.data.column_map:
            raise ValueError("data.column_map is required when data.source is 'tabular'")
        if self.registry.variant not in self.training.variants:
            raise ValueError(
                f"registry.variant {self.registry.variant!r} is not among training.variants "
                f"{list(self.training.variants)}"
            )
        return self

    def content_hash(self) -> str:
        """Stable short hash of the whole resolved recipe, used to tag runs."""
        return _short_hash(self.model_dump(mode="json"))

    def training_hash(self) -> str:
        """Hash of only what a trained model depends on: a change to evaluation, baselines,
        quality or registry settings must not invalidate training checkpoints. The list of variants
        is left out too: it says which systems to build, not how (each variant's checkpoints live
        in a folder of its own), so adding or dropping one keeps the others' checkpoints; so is the
        GPU memory share of the vLLM engine, which changes no result."""
        return _short_hash(self.model_dump(mode="json", include=TRAINING_INPUTS, exclude=HASH_EXCLUDED))


# The recipe sections a trained generator/recommender depends on (see Recipe.training_hash).
TRAINING_INPUTS = {"seed", "data", "split", "prompt", "models", "generation", "training"}
HASH_EXCLUDED = {"training": {"variants": True, "rl": {"vllm_gpu_memory_utilization": True}}}


def _short_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def recipe_path(name_or_path: str) -> Path:
    """A recipe name ("quick") means configs/quick.yaml; anything else is taken as a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        return candidate
    return CONFIGS_DIR / f"{name_or_path}.yaml"


def load_recipe(name_or_path: str, overrides: dict | None = None) -> Recipe:
    """Read and validate a recipe; `overrides` is a nested dict merged over the file's content."""
    path = recipe_path(name_or_path)
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
        raise RecipeError(f"recipe {name_or_path!r}: no file {path} (available: {available})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: the top level must be a mapping of sections")
    raw.setdefault("name", path.stem)
    merged = deep_merge(raw, overrides or {})
    try:
        return Recipe.model_validate(merged)
    except ValidationError as exc:
        raise RecipeError(f"{path}: invalid recipe:\n{_describe(exc)}") from exc


def deep_merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown key")
        else:
            lines.append(f"  {field}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)
