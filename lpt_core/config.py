"""Experiment recipes: YAML files under configs/ validated into typed, frozen config objects.

A recipe says everything a run depends on (dataset, models, lengths, seeds, decoding, evaluation),
so changing scale or data never needs a code edit. Unknown keys are errors, not silently ignored,
because a misspelt key that falls back to a default is the classic way to run the wrong experiment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable
from pathlib import Path
from typing import IO, Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PositiveInt,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from lpt_core import evaluation_methods
from lpt_core.evaluation_methods import HEAD_METHODS
from lpt_core.merging import deep_merge
from lpt_core.metrics import metric_cutoff
from lpt_core.paths import resolve_repo_path
from lpt_core.sources import SOURCES
from lpt_core.strict_model import StrictModel
from lpt_core.training.algorithms import rl_algorithm
from lpt_core.training.algorithms.base import AlgorithmSettings
from lpt_core.training.variants import VARIANTS

# The recipe's allowed data sources: exactly those lpt_core.sources describes.
SourceName = Literal[tuple(SOURCES)]  # type: ignore[valid-type]

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

# The packaged default models: `lpt fetch` puts each in the models folder under its name, and
# lpt_core.models loads it from there.
PACKAGED_MODELS = ("smollm2-135m-instruct", "all-minilm-l6-v2")


class RecipeError(ValueError):
    """A recipe file that cannot be read or does not validate; the message names file and field."""


def _one_of(names: tuple[str, ...], valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return names


def _known_model(name: str) -> str:
    """A packaged default, a local folder or .gguf file, or a hub id (owner/name); a bare name that
    is none of these is a typo that would otherwise fail only when the model is loaded."""
    if name in PACKAGED_MODELS or "/" in name or name.endswith(".gguf"):
        return name
    # lpt_core.models.resolve_model looks in the working folder, then the repository root.
    if Path(name).expanduser().exists() or resolve_repo_path(name).exists():
        return name
    raise ValueError(
        f"model {name!r} is not a packaged default ({', '.join(PACKAGED_MODELS)}), an existing local "
        "folder or .gguf file, or a hub id written owner/name"
    )


ModelName = Annotated[str, AfterValidator(_known_model)]


def _metric_name(metric: str) -> str:
    metric_cutoff(metric)  # raises ValueError naming the valid metrics
    return metric


class DataConfig(StrictModel):
    """Where the raw data is and how it is cleaned."""

    source: SourceName = "movielens_100k"
    # movielens_100k: folder holding ml-100k.inter / ml-100k.item (relative to the repo root).
    # amazon_2023: the reviews file; tabular: the interactions file.
    path: str = "data/raw/ml-100k"
    # amazon_2023: the metadata file; tabular: the items file.
    items_path: str | None = None
    # tabular only: canonical column name -> column name in the file.
    column_map: dict[str, str] = Field(default_factory=dict)
    # tabular only: a CSV's cell separator (default: by suffix, "," for .csv, TAB for .tsv), and
    # whether its numbers are written with a decimal comma ("2,5").
    csv_separator: str | None = Field(None, min_length=1, max_length=1)
    decimal_comma: bool = False
    # The reference keeps duplicate (user, item) interactions; "first"/"last" keep one per pair.
    dedup: Literal["keep", "first", "last"] = "keep"
    # Malformed rows: "error" stops with file/line/field; "quarantine" sets them aside, counted.
    bad_rows: Literal["error", "quarantine"] = "error"
    k_core: int = Field(5, ge=1)
    # A file with more than this share of its rows quarantined, or of its kept rows with a value
    # read as null because it did not convert, fails the run: that many bad values mean a wrong
    # format or column mapping, not a few damaged lines.
    max_quarantine_share: float = Field(0.1, ge=0, le=1)
    max_item_tokens: int = Field(512, ge=1, description="encoder tokens per item text")
    max_prompt_tokens: int = Field(1024, ge=1, description="generator tokens per profile prompt")

    @model_validator(mode="after")
    def _paths_for_source(self) -> DataConfig:
        # The default path is the MovieLens folder: another source must name its own file.
        movielens_folder = type(self).model_fields["path"].default
        if self.source != "movielens_100k" and self.path == movielens_folder:
            raise ValueError(
                f"data.path is the MovieLens folder {movielens_folder!r}: name the {self.source} file"
            )
        source = SOURCES[self.source]
        if source.needs_items_path and self.items_path is None:
            raise ValueError(f"data.items_path (the items file) is required when data.source is {self.source!r}")
        if source.needs_column_map and not self.column_map:
            raise ValueError(f"data.column_map is required when data.source is {self.source!r}")
        return self


class PromptConfig(StrictModel):
    """How the profile prompt is laid out. The defaults are the paper's: instruction first, then one
    block per history item ("Title: ...", "Category: ...", the user's rating/review)."""

    # None: the paper's instruction for the data source (lpt_core.sources).
    instruction: str | None = None
    system: str | None = None
    instruction_position: Literal["before", "after"] = "before"
    # "lines": one compact line per item ("- Title (1995) [Genres]: rated 4/5"), for sources
    # without reviews, where small models tend to copy "Title:" blocks instead of summarising.
    history_format: Literal["blocks", "lines"] = "blocks"


class SplitConfig(StrictModel):
    """How users become train/val/test examples (docs/method.md, "Data and protocol")."""

    strategy: Literal["first_n", "leave_last_out"] = "first_n"
    history_len: int = Field(4, ge=1, description="N: history items per example")
    train_frac: float = Field(0.8, gt=0, lt=1)
    # The rest after train is shared between val and test in this proportion.
    val_share: float = Field(0.5, gt=0, lt=1)
    # Windows per user (history of N, next new item); 1 is the paper's one example per user.
    windows_per_user: int = Field(1, ge=1)
    # Windows per val/test user (None: windows_per_user). The report's paired intervals narrow with
    # the number of test rows, whatever their mix of users and windows (a user's windows are almost
    # uncorrelated: bench/results/interval_design.md), so more evaluation windows buy precision
    # without changing the train rows, which stay at windows_per_user.
    eval_windows_per_user: int | None = Field(None, ge=1)
    window_stride: int = Field(1, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _eval_windows_need_windows(self) -> SplitConfig:
        if self.eval_windows_per_user is not None and self.strategy != "first_n":
            raise ValueError("split.eval_windows_per_user counts first_n windows: leave it unset for leave_last_out")
        return self

    @property
    def evaluation_windows(self) -> int:
        """Windows per val/test user."""
        return self.windows_per_user if self.eval_windows_per_user is None else self.eval_windows_per_user


class ModelsConfig(StrictModel):
    """Model names: a packaged default, a local Hugging Face folder, a .gguf file or a hub id."""

    generator: ModelName = "smollm2-135m-instruct"
    encoder: ModelName = "all-minilm-l6-v2"
    # "auto" picks bf16 where the CPU supports it and it is faster, fp32 otherwise, bf16 on CUDA.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class SamplingConfig(StrictModel):
    """How profiles are decoded, one type for every phase that writes them: the decoder phase's
    (GenerationConfig is one), the RL rollouts' (training.rl.sampling) and best-of-n's samples'
    (training.best_of_n.sampling). Each engine turns it into its own arguments in one place:
    lpt_core.generation.hf_backend.hf_generation_config (transformers),
    lpt_core.generation.vllm_engine.vllm_sampling_arguments (vLLM) and
    lpt_core.training.trl_trainers.trl_sampling_arguments (TRL's trainers)."""

    max_new_tokens: int = Field(128, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    # > 1 divides the logit of every token already in the prompt or the profile (both backends'
    # semantics): against a small model's greedy loops ("the thrill of the unknown, the excitement
    # of the unknown"), at the price of also discouraging words the history uses.
    repetition_penalty: float = Field(1.0, gt=0)


class SampledConfig(SamplingConfig):
    """The sampling of a phase that learns from the differences between samples of one prompt
    (RL, best-of-n): always sampled."""

    do_sample: Literal[True] = True


def _over(default: StrictModel) -> BeforeValidator:
    """A recipe's partial section of this field is read over the field's default, not over the
    type's: `rl: {sampling: {temperature: 0.7}}` keeps RL's own max_new_tokens."""
    return BeforeValidator(lambda value: {**default.model_dump(), **value} if isinstance(value, dict) else value)


_RL_SAMPLING = SampledConfig(max_new_tokens=96)
_BEST_OF_N_SAMPLING = SampledConfig(max_new_tokens=64)


class GenerationConfig(SamplingConfig):
    """The decoder phase's profiles: how they are decoded (SamplingConfig's settings, flat under
    `generation:`) and how the phase runs. All are part of every stored profile's identity."""

    backend: Literal["transformers", "vllm"] = "transformers"
    # Cut a profile's loop where it starts repeating, and trim a profile cut by max_new_tokens (or
    # by the loop cut) back to its last complete sentence (lpt_core.generation.finishing): what a
    # person reads, the store keeps and a reward scores is a finished text. Off only to measure
    # what it changes (bench/results/profile_finishing_float32.md, bench/studies/prompt_sweep.py).
    finish_profiles: bool = True
    batch_size: int = Field(16, ge=1)
    seed: int = 0


class HeadStart(StrictModel):
    """Where an item-head fit starts: its scale and its bias (see ItemHeadConfig)."""

    scale: float = Field(gt=0)
    bias_init: Literal["zero", "popularity"]


class ItemHeadConfig(StrictModel):
    """The item-side head over frozen text embeddings (lpt_core.training.item_head): item vector
    v_i = scale * (M k_i + r_i), score = q . v_i + b_i, fitted with a full-catalogue softmax on all
    train rows and stopped early on val NDCG@10. "linear" learns M and b; "hybrid" adds r."""

    kind: Literal["none", "linear", "hybrid"] = "none"
    # Inverse softmax temperature, folded into the item vectors (the bias is in logit units); 10
    # (tau 0.1, as the contrastive phase) was best on val NDCG@10 of 10/20/40 on the full recipe.
    scale: float = Field(10.0, gt=0)
    epochs: int = Field(50, ge=1, description="epoch cap; stopped earlier by `patience`")
    patience: int = Field(3, ge=1, description="epochs without val NDCG@10 gain before stopping")
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=1)
    # AdamW decay of M - I: pulls the map towards plain cosine, not towards zero scores.
    weight_decay: float = Field(0.0, ge=0)
    # L2 weight on the per-item residuals (hybrid only), summed over items, added to the batch loss.
    residual_l2: float = Field(1e-3, ge=0)
    # Where the per-item bias starts: "popularity" = log of the items' smoothed train interaction
    # counts (the popularity baseline's counts), so the untrained head already ranks as popularity
    # plus cosine and early stopping cannot end below it; "zero" = plain cosine at the start.
    bias_init: Literal["zero", "popularity"] = "popularity"
    # Other starts fitted as well; the fit with the best val NDCG@10 is kept (a model selection on
    # val, per query kind). Which start wins depends on the queries: on the full recipe's first 128
    # train users, zero-shot profiles did best from the prior at scale 2 (val 0.039 vs 0.024 from
    # zero at scale 10), raw history texts from zero at scale 10 (0.052 vs 0.045 from the prior).
    other_starts: tuple[HeadStart, ...] = ()

    @property
    def starts(self) -> tuple[HeadStart, ...]:
        """Every start a fit tries, this config's own first."""
        return (HeadStart(scale=self.scale, bias_init=self.bias_init), *self.other_starts)


class EvaluationConfig(StrictModel):
    ks: tuple[PositiveInt, ...] = Field((5, 10, 20), min_length=1)
    bootstrap_samples: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0, lt=1)
    # Cap on train users given zero-shot profiles (contrastive training needs them); None = all.
    max_train_users: int | None = Field(None, ge=0)
    # The split the report ranks ("val" while tuning, "test" for the record).
    split: Literal["val", "test"] = "test"
    # Beyond the paper: each window's profile is ranked against the user's next N interactions, one
    # report row each (fewer at a user's last window; lpt_core.evaluation.evaluation_rows). 1 is
    # the paper's next-item protocol. N = split.window_stride ranks every interaction after the first
    # history once, and narrows the paired intervals at no cost in profiles (the per-row
    # difference of two rows is nearly independent from row to row:
    # bench/results/interval_design.md, report_rows_full.md).
    targets_per_window: int = Field(1, ge=1)
    # "flat" is exact (evaluation); "hnsw" is approximate, for catalogues too big for exact search.
    index_kind: Literal["flat", "hnsw"] = "flat"
    methods: tuple[str, ...] = ("random", "popularity", "last_item_text", "history_text", "profile")
    # The method every other one is compared with in the paired intervals.
    baseline: str = "profile"
    # Beyond the paper: profiles sampled per evaluated example (at `sample_temperature`) whose
    # scores are averaged, the "profile_mean" row; 0 leaves the row out.
    sampled_profiles: int = Field(0, ge=0)
    sample_temperature: float = Field(1.0, gt=0)
    # Beyond the paper: the rows history_text_head and profile_head fit this item-side head on the
    # history texts / zero-shot profiles of the SAME train examples (those of the first
    # `head_train_users` train users; None = all) and stop early on every val example.
    head: ItemHeadConfig = ItemHeadConfig(kind="linear")
    head_train_users: int | None = Field(None, ge=1)
    seed: int = 0

    @field_validator("methods")
    @classmethod
    def _methods_registered(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        return _one_of(methods, evaluation_methods.EVALUATION_METHODS, "evaluation method(s)")

    @model_validator(mode="after")
    def _profile_mean_needs_samples(self) -> EvaluationConfig:
        if "profile_mean" in self.methods and self.sampled_profiles == 0:
            raise ValueError("evaluation.methods lists profile_mean: set evaluation.sampled_profiles > 0")
        return self

    @model_validator(mode="after")
    def _head_rows_need_a_head(self) -> EvaluationConfig:
        rows = [m for m in self.methods if m in HEAD_METHODS]
        if rows and self.head.kind == "none":
            raise ValueError(f"evaluation.methods lists {rows}: set evaluation.head.kind to linear or hybrid")
        return self


# Where a reward's later targets come from: the targets of the user's next windows (with the full
# recipe's stride of 3, items 3 interactions apart) or every one of the user's next interactions
# after the target (lpt_core.training.examples.rl_examples).
RewardTargetsFrom = Literal["later_windows", "next_interactions"]


class RLConfig(StrictModel):
    """The LLM ("encoder") phase: RL on the profile writer, reward = rank of the next item."""

    # The algorithm and the settings only it reads (lpt_core.training.algorithms): a name, for its
    # defaults ("grpo"), or its section ({name: rebel, passes_per_batch: 2}).
    algorithm: SerializeAsAny[AlgorithmSettings] = Field("rebel", validate_default=True)
    updates_per_round: int = Field(8, ge=0)
    prompts_per_update: int = Field(8, ge=1)
    # How many samples of each prompt the algorithm compares (REBEL: 2, the reference's).
    samples_per_prompt: int = Field(2, ge=2)
    # Rows per forward/backward pass; gradients accumulate over micro-batches up to the whole batch.
    micro_batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    # A fixed probe set of train examples whose GREEDY profiles are scored with the phase's reward
    # every `probe_every` updates (and before the first): the learning curve of the RL phase.
    probe_examples: int = Field(0, ge=0)
    probe_every: int = Field(5, ge=1)
    # KL shaping coefficient: reward - beta * (log pi_old - log pi_ref) (reference 0.2 for Gemma).
    beta: float = Field(0.2, ge=0)
    # The rank reward (lpt_core.training.reward): the paper's ndcg or mrr, or log_rank.
    reward: Literal["ndcg", "mrr", "log_rank"] = "ndcg"
    # How many targets the reward averages over: the next item (1, the method's) and the targets
    # of the user's next reward_targets - 1 windows, or of their next reward_targets - 1
    # interactions after the next item (reward_targets_from; lpt_core.training.examples.rl_examples).
    reward_targets: int = Field(1, ge=1)
    reward_targets_from: RewardTargetsFrom = "later_windows"
    # What the reward ranks with: "recommender" (the method's: the phase's trained recommender, its
    # item head and bias included) or "cosine" (plain cosine between the profile and the item texts
    # under the current encoder: only what the profile carries, without the popularity prior that
    # no profile can move). Best-of-n under the full recipe's head taught the writer nothing
    # measurable, under cosine it lifted held-out NDCG (bench/results/adapter_yardstick_full.md).
    reward_ranking: Literal["recommender", "cosine"] = "recommender"
    # How rollouts are sampled. REBEL's log-probs are the policy's own (temperature 1): another
    # temperature, top_p or repetition penalty samples slightly off-policy (the reference: 1, 1, 1).
    sampling: Annotated[SampledConfig, _over(_RL_SAMPLING)] = _RL_SAMPLING
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

    @field_validator("algorithm", mode="before")
    @classmethod
    def _algorithm_settings(cls, value: object) -> AlgorithmSettings:
        if isinstance(value, AlgorithmSettings):
            return value
        section = {"name": value} if isinstance(value, str) else dict(value)  # type: ignore[call-overload]
        settings = rl_algorithm(str(section.get("name"))).settings
        try:
            return settings.model_validate(section)
        except ValidationError as error:
            # Raised as a ValueError, pydantic reports it under rl.algorithm.
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ValueError(f"rl.algorithm {settings.model_fields['name'].default!r} ({settings.description}): {fields}") from None

    @model_validator(mode="after")
    def _samples_the_algorithm_compares(self) -> RLConfig:
        low, high = self.algorithm.min_samples_per_prompt, self.algorithm.max_samples_per_prompt
        if self.samples_per_prompt < low or (high is not None and self.samples_per_prompt > high):
            allowed = f"exactly {low}" if low == high else f"at least {low}"
            raise ValueError(f"rl.samples_per_prompt {self.samples_per_prompt}: {self.algorithm.name} takes {allowed}")
        return self


class BestOfNConfig(StrictModel):
    """Best-of-n warm start at the start of each encoder phase (lpt_core.training.best_of_n):
    sample `samples` profiles per train example, fine-tune the LoRA on the best of each with TRL's
    SFTTrainer; `iterations` 0 turns it off."""

    iterations: int = Field(0, ge=0)
    examples_per_iteration: int | None = Field(
        None, ge=1, description="a new seeded draw of this many of the phase's RL examples each iteration; None: all"
    )
    samples: int = Field(4, ge=2)
    sampling: Annotated[SampledConfig, _over(_BEST_OF_N_SAMPLING)] = _BEST_OF_N_SAMPLING
    batch_size: int = Field(16, ge=1, description="sampling batch, in sequences (batch_size // samples prompts share a prefill)")
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(1e-4, gt=0)
    micro_batch_size: int = Field(4, ge=1)


class ContrastiveConfig(StrictModel):
    """The recommender ("decoder") phase: InfoNCE of profile -> target item text, in-batch negatives."""

    steps_per_round: int = Field(50, ge=0)
    batch_size: int = Field(32, ge=2)
    learning_rate: float = Field(5e-5, gt=0)
    # MultipleNegativesRankingLoss scale = 1 / temperature (reference tau = 0.1).
    scale: float = Field(10.0, gt=0)
    # Beyond the paper: a learned per-item bias added to the profile-item similarity.
    item_bias: bool = False
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    # Early stopping of the encoder's steps: val NDCG@10 checked before the first step and every
    # `val_every` steps, the best check's weights kept, stopped after `val_patience` checks without
    # a gain; 0 = off (every step runs, the last weights are kept).
    val_every: int = Field(0, ge=0)
    val_patience: int = Field(3, ge=1)
    # Beyond the paper: an item-side head fitted after the encoder's steps, over its frozen
    # embeddings; with steps_per_round 0 only the head trains.
    head: ItemHeadConfig = ItemHeadConfig()

    @model_validator(mode="after")
    def _one_item_bias(self) -> ContrastiveConfig:
        # The head learns its own per-item bias; two biases would both be added to every score.
        if self.item_bias and self.head.kind != "none":
            raise ValueError("contrastive.item_bias and contrastive.head both learn a per-item bias: use one")
        return self


class LaunchConfig(StrictModel):
    """How the training asset runs each variant's training (lpt_core.training.launch): in its own
    process (processes 1), or as `processes` processes, one per GPU, started by `launcher` as a
    subprocess running `lpt train`. Where training runs, not what it computes: it is left out of the
    training hash, so a run on 1 and one on N processes resume each other's checkpoints."""

    processes: int = Field(1, ge=1)
    launcher: Literal["torchrun", "accelerate"] = "torchrun"
    # accelerate launch's config file (relative to the repository root, or absolute): the strategy,
    # DDP (configs/accelerate/ddp.yaml) or DeepSpeed ZeRO-2 (zero2.yaml). Read with launcher accelerate only.
    accelerate_config: str = "configs/accelerate/ddp.yaml"


class TrainingConfig(StrictModel):
    """Alternation of decoder (contrastive) and encoder (RL) phases, decoder first."""

    rounds: int = Field(2, ge=1)
    # The trained systems to build and report (lpt_core.training.variants.VARIANTS).
    variants: tuple[str, ...] = ("langptune_rebel", "langptune_grpo", "cl_only", "rl_only", "langptune_item_bias")
    rl: RLConfig = RLConfig()
    best_of_n: BestOfNConfig = BestOfNConfig()
    contrastive: ContrastiveConfig = ContrastiveConfig()
    # Train / val users the training session uses: the first N in the split's order (the same rule
    # as evaluation.head_train_users, lpt_core.profiles.first_users); None = all.
    max_train_users: int | None = Field(None, ge=1)
    max_val_users: int | None = Field(None, ge=1)
    # Train users whose windows are the RL prompts. None: the recommender's own train users (the
    # paper). N: the N train users right after those, so the reward ranks through a recommender
    # that never saw these targets, as at test time; a head fitted on a few users memorises their
    # targets, and a reward on them pays profiles for matching what was memorised (issue 12).
    rl_users: int | None = Field(None, ge=1)
    seed: int = 0
    launch: LaunchConfig = LaunchConfig()

    @model_validator(mode="after")
    def _rl_users_need_a_cap(self) -> TrainingConfig:
        if self.rl_users is not None and self.max_train_users is None:
            raise ValueError(
                "training.rl_users takes the train users after the first max_train_users: "
                "set training.max_train_users, or leave rl_users unset to train RL on the same users"
            )
        return self

    @model_validator(mode="after")
    def _fits_the_processes(self) -> TrainingConfig:
        # Each process rolls out an equal share of an update's prompts (docs/distributed_training.md);
        # the contrastive batch rounds itself down to a multiple of the processes.
        processes = self.launch.processes
        if self.rl.prompts_per_update % processes:
            raise ValueError(
                f"training.rl.prompts_per_update {self.rl.prompts_per_update} does not split evenly over "
                f"training.launch.processes {processes}"
            )
        if processes > 1 and self.best_of_n.iterations:
            raise ValueError("training.best_of_n runs in a single process: set its iterations 0 or training.launch.processes 1")
        return self

    @field_validator("variants")
    @classmethod
    def _variants_known(cls, variants: tuple[str, ...]) -> tuple[str, ...]:
        return _one_of(variants, tuple(VARIANTS), "training variant(s)")


class SASRecGrid(StrictModel):
    """SASRec settings searched on the validation users (names are SASRecConfig fields)."""

    hidden: tuple[int, ...] = (32, 64)
    blocks: tuple[int, ...] = (1, 2)
    dropout: tuple[float, ...] = (0.2, 0.5)
    lr: tuple[float, ...] = (1e-3, 3e-3)
    max_len: tuple[int, ...] = (20, 50)


class BaselinesConfig(StrictModel):
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
    # What the search selects on (val users): a metric at a cutoff, checked here, not at the step.
    metric: Annotated[str, AfterValidator(_metric_name)] = "ndcg@10"
    time_budget_s: float | None = Field(None, gt=0, description="stop starting SASRec trials after")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while training")
    seed: int = 0


class QualityConfig(StrictModel):
    """The profile quality report (lpt_core.profile_quality): judge LLM, reader, steering edits."""

    judge: ModelName = "smollm2-135m-instruct"
    candidates: int = Field(5, ge=2)
    max_users: int | None = Field(50, ge=1)
    edits_per_user: int = Field(2, ge=0)
    judge_batch_size: int = Field(8, ge=1)
    seed: int = 0


class RegistryConfig(StrictModel):
    """Which trained variant is served, and under which registered model name."""

    variant: str = "langptune_rebel"  # one of training.variants
    model_name: str = "langptune"


class Recipe(StrictModel):
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
    def _check_report_rows(self) -> Recipe:
        # The report's rows are the evaluated methods and the trained variants.
        rows = (*self.evaluation.methods, *self.training.variants)
        if self.evaluation.baseline not in rows:
            raise ValueError(
                f"evaluation.baseline {self.evaluation.baseline!r} is not a row of the report: name "
                f"one of evaluation.methods or training.variants ({', '.join(rows)})"
            )
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
        GPU memory share of the vLLM engine, which changes no result, and the launch (how many
        processes train), which changes only which samples a rollout draws."""
        return _short_hash(self.model_dump(mode="json", include=TRAINING_INPUTS, exclude=HASH_EXCLUDED))


# The recipe sections a trained generator/recommender depends on (see Recipe.training_hash).
TRAINING_INPUTS = {"seed", "data", "split", "prompt", "models", "generation", "training"}
HASH_EXCLUDED = {"training": {"variants": True, "launch": True, "rl": {"vllm_gpu_memory_utilization": True}}}


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
        with path.open(encoding="utf-8") as stream:  # read from the file, so errors name it
            raw = read_yaml(stream) or {}
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key repeated in one mapping is an error naming both lines:
    YAML keeps the last one silently, so a second `data:` section would replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader's own error names it
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"repeated key {key!r} (first at line {first_line[key]})", key_node.start_mark
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(stream: str | IO[str]) -> object:
    """YAML as yaml.safe_load reads it, with a repeated key an error that names its line."""
    return yaml.load(stream, Loader=_UniqueKeyLoader)




def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown key")
        else:
            # A whole section or recipe as the input says nothing the message does not.
            got = "" if isinstance(error.get("input"), dict) else f" (got {error.get('input')!r})"
            lines.append(f"  {field}: {error['msg'].removeprefix('Value error, ')}{got}")
    return "\n".join(lines)
