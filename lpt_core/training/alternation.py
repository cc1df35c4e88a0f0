"""The alternating schedule: decoder (contrastive) and encoder (RL) phases, checkpointed, resumable.

Each round runs, in order (docs/method.md, "Training"):
1. the decoder phase: the current LLM writes one profile per train user (and per monitored val
   user); with the profiles fixed, the recommender trains contrastively (lpt_core.training.
   contrastive), then, if the recipe has one, an item-side head is fitted afresh over the encoder's
   now frozen item embeddings on the same train profiles, stopped early on the val profiles
   (lpt_core.training.item_head); the val NDCG reported for the phase is then the one the head
   was selected on, slightly optimistic;
2. the encoder phase: every item is re-embedded by the current recommender (through the head if
   any) and frozen; the LLM's LoRA adapter trains with RL on the rank reward (lpt_core.training.rl).
Variant "cl_only" runs decoder phases only (the LLM stays the base model), "rl_only" encoder phases
only (the recommender stays the base encoder): the paper's two ablations.

Each phase builds its own optimizer for the one model it trains and drops it at the end: the idle
model never moves (one optimizer over both is a known fault of the reference), and since no
optimizer state outlives a phase, the phase checkpoints are all a resume needs: a run stopped
anywhere restarts at the phase after the last finished one, with the same seeds.

Profiles are written by a merged copy of the policy (LoRA folded into the weights,
lpt_core.training.policy.merged_copy): an un-merged LoRA model generates more slowly. The copy
costs one more set of weights while it exists; merging in place and unmerging after would not, but
in bf16 it does not restore the base weights exactly, and the policy would drift a little at every
phase.

Launched in several processes (lpt_core.training.distributed; docs/distributed_training.md), every
process holds both models and runs the same schedule: profiles and item embeddings are computed in
parts, one per process, and gathered; each phase's training shares its batches across processes;
only the main process reports to the callbacks and writes checkpoints, the others wait for it at
the end of each phase. All processes resume from the same (latest) checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl
import torch

from lpt_core import metrics, text
from lpt_core.config import Recipe, RLConfig, TrainingConfig
from lpt_core.data.splitting import train_item_counts
from lpt_core.generation.base import ProfileGenerator
from lpt_core.models import load_encoder, load_generator, load_tokenizer, pick_dtype, resolve_model, weights_fingerprint
from lpt_core.paths import Outputs
from lpt_core.profiles import first_users
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training import distributed
from lpt_core.training.checkpoints import PhaseCheckpoint, latest_phase, phase_folder, prune_earlier_phases, save_phase
from lpt_core.training.contrastive import ItemBias, train_recommender
from lpt_core.training.item_head import ItemHead, TextRows, build_item_index, fit_head_on_texts
from lpt_core.training.policy import load_adapter_weights, make_policy, merged_copy, policy_models
from lpt_core.training.variants import get_variant

log = logging.getLogger(__name__)

Variant = Literal["langptune", "cl_only", "rl_only"]
VARIANT_PHASES: dict[str, tuple[str, ...]] = {
    "langptune": ("decoder", "encoder"),
    "cl_only": ("decoder",),
    "rl_only": ("encoder",),
}
EXAMPLE_COLUMNS = ("user_id", "window", "prompt", "history_item_ids", "target_item_id")
VAL_METRIC = "val_ndcg@10"
# Val profiles written to each phase's artifact, for a reader to see how the profiles change.
SAMPLE_PROFILES = 5


@dataclass
class TrainingData:
    """Train and val EXAMPLES rows with a chat-templated "prompt" column, the item catalogue
    (item_id, text, ...) that targets and histories refer to, and the train split's interactions
    per item (the item head's popularity prior; None where no head starts from it)."""

    train: pl.DataFrame
    val: pl.DataFrame
    catalog: pl.DataFrame
    item_counts: dict[str, int] | None = None

    def __post_init__(self) -> None:
        for name in ("train", "val"):
            frame = getattr(self, name)
            missing = [c for c in EXAMPLE_COLUMNS if c not in frame.columns]
            if missing:
                raise ValueError(f"TrainingData.{name}: missing columns {missing}")
            if frame.is_empty():
                raise ValueError(f"TrainingData.{name}: no rows")
        missing = [c for c in ("item_id", "text") if c not in self.catalog.columns]
        if missing:
            raise ValueError(f"TrainingData.catalog: missing columns {missing}")

    @classmethod
    def from_tables(
        cls,
        user_examples: pl.DataFrame,
        items: pl.DataFrame,
        catalog: pl.DataFrame,
        cleaned_histories: pl.DataFrame,
        recipe: Recipe,
    ) -> TrainingData:
        """The train and val rows of the split (the user_examples table) with the recipe's prompts,
        written from `items` (cleaned_items), the catalogue (item_catalog), and the train users'
        interactions per item counted in cleaned_histories (as the popularity baseline counts them)."""
        tokenizer = load_tokenizer(recipe.models.generator)

        def with_prompts(split: str) -> pl.DataFrame:
            rows = user_examples.filter(pl.col("split") == split)
            prompts = text.build_prompts(rows, items, tokenizer, recipe.prompt, recipe.data.source)
            return rows.with_columns(pl.Series("prompt", prompts, dtype=pl.String))

        return cls(
            train=with_prompts("train"), val=with_prompts("val"), catalog=catalog,
            item_counts=train_item_counts(cleaned_histories, user_examples),
        )


class TrainingCallbacks(Protocol):
    """Where training reports to (the orchestrator logs these to MLflow, say)."""

    def metrics(self, phase: str, round_index: int, step: int, values: dict) -> None: ...

    def artifact_text(self, name: str, text: str) -> None: ...

    def log(self, message: str) -> None: ...


class _OtherProcessCallbacks:
    """What processes other than the main one report to: their own progress messages to this
    module's logger, so that every process's progress shows in the launcher's output; nothing else
    (the main process reports metrics and artifacts once for all)."""

    def metrics(self, phase: str, round_index: int, step: int, values: dict) -> None:
        pass

    def artifact_text(self, name: str, text: str) -> None:
        pass

    def log(self, message: str) -> None:
        log.info("%s", message)


class LoggingCallbacks:
    """TrainingCallbacks that only write to this module's logger."""

    def metrics(self, phase: str, round_index: int, step: int, values: dict) -> None:
        log.info("round %d %s step %d: %s", round_index, phase, step, values)

    def artifact_text(self, name: str, text: str) -> None:
        log.info("artifact %s (%d characters)", name, len(text))

    def log(self, message: str) -> None:
        log.info("%s", message)


@dataclass
class TrainingResult:
    """The last phase's checkpoint and its parts, the per-phase summaries, and where a resumed
    run started from (None for a fresh run)."""

    checkpoint: Path
    adapter_dir: Path
    encoder_dir: Path
    item_bias: Path | None
    item_head: Path | None
    history: list[dict]
    resumed_from: str | None


def phase_schedule(rounds: int, variant: str) -> list[tuple[int, str]]:
    """(round, phase) pairs in training order for `variant`."""
    if variant not in VARIANT_PHASES:
        raise ValueError(f"variant must be one of {sorted(VARIANT_PHASES)}, got {variant!r}")
    return [(r, phase) for r in range(rounds) for phase in VARIANT_PHASES[variant]]


def train_alternating(
    recipe: Recipe,
    variant: Variant,
    data: TrainingData,
    root: Path,
    callbacks: TrainingCallbacks | None = None,
    profile_store: Path | None = None,
) -> TrainingResult:
    """Run (or resume) the alternating training of `recipe` as `variant`, checkpointing every phase
    under `root`. A run whose last phase is already checkpointed returns at once.

    With `profile_store` (a ProfileStore file) the profiles written at each decoder phase are kept
    and reused: an untrained policy is the base model, so its profiles are shared with the zero-shot
    ones and across variants, and a resumed run reuses what the killed one wrote.

    Launched in several processes, every process calls this with the same arguments; `callbacks`
    is used by the main process only."""
    callbacks = callbacks or LoggingCallbacks()
    if not distributed.is_main():
        callbacks = _OtherProcessCallbacks()
    root = Path(root)
    schedule = phase_schedule(recipe.training.rounds, variant)
    recipe_hash = recipe.training_hash()
    latest = latest_phase(root, recipe_hash, variant)
    resumed_from = None if latest is None else str(latest.path)
    done = 0 if latest is None else schedule.index((latest.round, latest.phase)) + 1
    if latest is not None:
        callbacks.log(f"resuming {variant} after round {latest.round} {latest.phase} phase ({latest.path})")
    if latest is not None and done == len(schedule):
        return _result(latest, resumed_from)

    session = _TrainingSession(recipe, variant, data, latest, callbacks, profile_store)
    for round_index, phase in schedule[done:]:
        callbacks.log(f"round {round_index} {phase} phase: start")
        summary = session.run_phase(round_index, phase, root)
        latest = session.save(root, round_index, phase, summary, recipe_hash)
        callbacks.log(f"round {round_index} {phase} phase: done, checkpoint {latest.path}")
    assert latest is not None  # the schedule is never empty: rounds >= 1
    return _result(latest, resumed_from)


def rl_rows(train: pl.DataFrame, training: TrainingConfig) -> pl.DataFrame:
    """The train rows whose prompts RL trains on: the recommender's own users (the first
    training.max_train_users), or with training.rl_users that many users right after them."""
    if training.rl_users is None:
        return first_users(train, training.max_train_users)
    rows = first_users(train, training.rl_users, skip_users=training.max_train_users)
    if rows.is_empty():
        raise ValueError(
            f"training.rl_users: no train users after the first {training.max_train_users} "
            f"(the split has {train['user_id'].n_unique()})"
        )
    return rows


def reward_index(rl: RLConfig, recommender: ItemIndex, item_ids: Sequence[str], embeddings: np.ndarray) -> ItemIndex:
    """The index the writer's reward ranks with (rl.reward_ranking): the recommender's own, or
    plain cosine over the same item embeddings (no head, no bias)."""
    if rl.reward_ranking == "recommender":
        return recommender
    return ItemIndex.build(item_ids, embeddings)


class _TrainingSession:
    """The two models, the data in the shapes the phases use, and the history of phase summaries."""

    def __init__(
        self,
        recipe: Recipe,
        variant: str,
        data: TrainingData,
        resume: PhaseCheckpoint | None,
        callbacks: TrainingCallbacks,
        profile_store: Path | None = None,
    ) -> None:
        from lpt_core.generation.store import ProfileStore

        self.recipe = recipe
        self.variant = variant
        self.callbacks = callbacks
        chunk = 4 * recipe.generation.batch_size  # progress logged, and work saved, per chunk
        self.profile_store = None if profile_store is None else ProfileStore(profile_store, chunk_size=chunk)
        training = recipe.training
        # The first users, not a random draw: the evaluation's head rows fit on the same ones.
        self.train = first_users(data.train, training.max_train_users)
        self.val = first_users(data.val, training.max_val_users)
        self.rl_train = rl_rows(data.train, training)
        self.item_counts = data.item_counts
        self.item_ids = data.catalog["item_id"].to_list()
        self.item_texts = data.catalog["text"].to_list()
        position = {item_id: p for p, item_id in enumerate(self.item_ids)}
        self.train_positions = [position[i] for i in self.train["target_item_id"].to_list()]

        base, self.tokenizer = load_generator(recipe.models.generator, policy_models(recipe))
        # A resumed policy is built the same way as a fresh one, then given the saved LoRA weights,
        # so that whatever make_policy sets up (gradient checkpointing, say) is there either way.
        torch.manual_seed(training.seed)  # LoRA A starts random: a fresh run must be repeatable
        self.policy = make_policy(base, training.rl)
        if resume is None:
            self.encoder = load_encoder(recipe.models.encoder, recipe.models)
        else:
            load_adapter_weights(self.policy, resume.adapter_dir)
            self.encoder = load_encoder(str(resume.encoder_dir), recipe.models)
        self.item_bias = self._initial_item_bias(resume)
        self.item_head = None if resume is None else self._stored_item_head(resume)
        self.history: list[dict] = [] if resume is None else list(resume.state.get("history", []))

    def run_phase(self, round_index: int, phase: str, root: Path) -> dict:
        started = time.perf_counter()
        seed = _phase_seed(self.recipe.training.seed, round_index, phase)
        if phase == "decoder":
            summary, index, val_profiles = self._decoder_phase(round_index, seed)
        else:
            summary, index, val_profiles = self._encoder_phase(round_index, seed, root)
        summary[VAL_METRIC] = self._val_ndcg(index, val_profiles)
        summary["seconds"] = time.perf_counter() - started
        self.callbacks.metrics(phase, round_index, summary["steps"], {VAL_METRIC: summary[VAL_METRIC]})
        self.callbacks.artifact_text(
            f"profiles_round{round_index}_{phase}.md", self._profile_samples(round_index, phase, val_profiles)
        )
        return {"round": round_index, "phase": phase, **summary}

    def save(self, root: Path, round_index: int, phase: str, summary: dict, recipe_hash: str) -> PhaseCheckpoint:
        """The main process writes the phase's checkpoint (the models are the same in every
        process); the others wait until it is complete."""
        self.history.append(summary)
        bias = None if self.item_bias is None else self.item_bias.to_numpy()
        state = {"recipe_hash": recipe_hash, "variant": self.variant, "metrics": summary, "history": self.history}
        folder = phase_folder(root, recipe_hash, self.variant, round_index, phase)
        checkpoint = PhaseCheckpoint(folder, round_index, phase, {**state, "round": round_index, "phase": phase})
        if distributed.is_main():
            save_phase(root, round_index, phase, self.policy, self.encoder, bias, state, self.item_head)
            prune_earlier_phases(root, checkpoint)
        distributed.barrier()
        return checkpoint

    def _decoder_phase(self, round_index: int, seed: int) -> tuple[dict, ItemIndex, list[str]]:
        prompts = self.train["prompt"].to_list() + self.val["prompt"].to_list()
        profiles = self._write_profiles(prompts)
        train_profiles, val_profiles = profiles[: self.train.height], profiles[self.train.height :]
        targets = [self.item_texts[p] for p in self.train_positions]
        steps = train_recommender(
            self.encoder,
            train_profiles,
            targets,
            self.recipe.training.contrastive,
            seed,
            target_positions=self.train_positions,
            item_bias=self.item_bias,
            on_step=lambda step, values: self.callbacks.metrics("decoder", round_index, step, values),
            # Without the head: it is refitted over the encoder's new embeddings after the steps.
            validate=lambda: self._val_ndcg(self._item_index(with_head=False), val_profiles),
        )
        summary = {
            "steps": len(steps),
            "loss_first": steps[0]["loss"] if steps else None,
            "loss_last": steps[-1]["loss"] if steps else None,
            "seconds_per_step": float(np.mean([s["seconds"] for s in steps])) if steps else None,
        }
        embeddings = self._item_embeddings()
        if self.recipe.training.contrastive.head.kind != "none":
            summary.update(self._fit_item_head(round_index, seed, embeddings, train_profiles, val_profiles))
        return summary, self._item_index(embeddings), val_profiles

    def _fit_item_head(
        self, round_index: int, seed: int, embeddings: np.ndarray, train_profiles: list[str], val_profiles: list[str]
    ) -> dict:
        """Fit the head afresh over the current encoder (it changes the embeddings the head maps);
        every process fits the same head from the same inputs and seed."""
        fitted = fit_head_on_texts(
            TextEncoder(self.encoder),
            ItemIndex.build(self.item_ids, embeddings),
            TextRows.of(self.train, train_profiles),
            TextRows.of(self.val, val_profiles),
            self.recipe.training.contrastive.head,
            seed,
            on_epoch=lambda epoch, values: self.callbacks.metrics("head", round_index, epoch, values),
            item_counts=self.item_counts,
        )
        self.item_head = fitted.head
        return {
            "head_epochs": len(fitted.history) - 1,
            "head_best_epoch": fitted.best_epoch,
            "head_scale": fitted.start.scale,
            "head_bias_init": fitted.start.bias_init,
        }

    def _encoder_phase(self, round_index: int, seed: int, root: Path) -> tuple[dict, ItemIndex, list[str]]:
        from lpt_core.training.examples import rl_examples
        from lpt_core.training.reward import RankReward
        from lpt_core.training.rl import run_rl_phase

        rl = self.recipe.training.rl
        embeddings = self._item_embeddings()
        index = self._item_index(embeddings)
        # The bias travels inside the index; RankReward must not add it a second time.
        reward = RankReward(TextEncoder(self.encoder), reward_index(rl, index, self.item_ids, embeddings), kind=rl.reward)
        examples = rl_examples(self.rl_train, rl.reward_targets, rl.reward_targets_from)
        root.mkdir(parents=True, exist_ok=True)
        # TRL trainers want a folder; a hidden one, which checkpoint discovery skips.
        with tempfile.TemporaryDirectory(prefix=".rl-scratch-", dir=root) as scratch:
            warm_start = self._best_of_n(round_index, seed, examples, reward, Path(scratch))
            updates = run_rl_phase(
                self.policy,
                self.tokenizer,
                examples,
                reward,
                rl,
                seed,
                Path(scratch),
                on_update=lambda step, values: self.callbacks.metrics("encoder", round_index, step, values),
            )
        summary = {"steps": len(updates), "last_update": updates[-1] if updates else None}
        if warm_start:
            summary["best_of_n"] = warm_start
        val_profiles = self._write_profiles(self.val["prompt"].to_list())
        return summary, index, val_profiles

    def _best_of_n(self, round_index: int, seed: int, examples: list, reward: Any, scratch: Path) -> list[dict]:
        """The best-of-n warm start before the RL updates, against the same frozen reward (none
        when training.best_of_n.iterations is 0)."""
        cfg = self.recipe.training.best_of_n
        if not cfg.iterations:
            return []
        if distributed.world_size() > 1:
            raise ValueError("training.best_of_n runs in a single process: set iterations 0 under torchrun")
        from lpt_core.training.best_of_n import best_of_n
        from lpt_core.training.rl import RewardProbe, probe_set

        def on_iteration(step: int, values: dict) -> None:
            self.callbacks.metrics("best_of_n", round_index, step, values)

        rl = self.recipe.training.rl
        if rl.probe_examples:  # the same learning curve as RL's, after every iteration
            probe = RewardProbe(probe_set(examples, rl.probe_examples), self.policy, self.tokenizer, reward,
                                rl.sampling)
            on_iteration = probe.wrap(on_iteration, every=1, last=cfg.iterations)
        return best_of_n(self.policy, self.tokenizer, examples, reward, cfg, seed, scratch, on_iteration=on_iteration)

    def _write_profiles(self, prompts: Sequence[str]) -> list[str]:
        """One profile per prompt, in order; each process writes its own part of them, through the
        profile store if there is one. (Processes writing the store at once can drop each other's
        new rows from it, never corrupt it: those are regenerated when next asked for.)

        With generation.backend "vllm" the colocated vLLM engine (the one REBEL's rollouts use) is
        synced to the policy and writes them; otherwise a merged copy of the policy does."""
        gen_cfg = self.recipe.generation
        own = distributed.own_part(prompts)
        with self._profile_writer() as generator:
            if self.profile_store is None:
                generated = generator.generate(own)
            else:
                generated, _ = self.profile_store.get_or_generate(
                    own, generator, gen_cfg, progress=lambda done, total: self.callbacks.log(f"profiles {done}/{total}")
                )
        texts = [profile.text for profile in generated]
        return [text for part in distributed.gather_objects(texts) for text in part]

    @contextlib.contextmanager
    def _profile_writer(self) -> Iterator[ProfileGenerator]:
        gen_cfg = self.recipe.generation
        if gen_cfg.backend == "vllm":
            from lpt_core.generation.vllm_backend import VLLMGenerator

            yield VLLMGenerator.for_policy(
                self.policy, self.tokenizer, gen_cfg, model_id=self._policy_id(),
                gpu_memory_utilization=self.recipe.training.rl.vllm_gpu_memory_utilization,
                rank=distributed.rank(), world_size=distributed.world_size(),
            )
            return
        from lpt_core.generation.hf_backend import TransformersGenerator

        # Profiles are written in the recipe's dtype even where the policy trains in float32.
        with merged_copy(self.policy, pick_dtype(self.recipe.models.dtype, self.policy.device)) as merged:
            yield TransformersGenerator(merged, self.tokenizer, gen_cfg, model_id=self._policy_id())

    def _policy_id(self) -> str:
        """The base model's id while every LoRA B is zero (the policy IS the base model), else the
        base id plus a hash of the adapter's weights."""
        name = self.recipe.models.generator
        base_id = f"{name}@{weights_fingerprint(resolve_model(name))}"
        adapter = {n: p for n, p in self.policy.named_parameters() if "lora_" in n}
        if all(not p.any() for n, p in adapter.items() if "lora_B" in n):
            return base_id
        digest = hashlib.sha256()
        for key in sorted(adapter):
            digest.update(key.encode())
            digest.update(adapter[key].detach().float().cpu().numpy().tobytes())
        return f"{base_id}+lora@{digest.hexdigest()[:12]}"

    def _item_embeddings(self) -> np.ndarray:
        """All items embedded by the current encoder; each process embeds its own part."""
        part = distributed.own_part(self.item_texts)
        pieces = distributed.gather_objects(TextEncoder(self.encoder).encode(part) if part else None)
        return np.concatenate([piece for piece in pieces if piece is not None])

    def _item_index(self, embeddings: np.ndarray | None = None, with_head: bool = True) -> ItemIndex:
        """The current recommender's exact index (of `embeddings` when already computed): cosine
        plus the item bias, or the head's vectors and bias."""
        embeddings = self._item_embeddings() if embeddings is None else embeddings
        bias = None if self.item_bias is None else self.item_bias.to_numpy()
        head = self.item_head if with_head else None
        return build_item_index(self.item_ids, embeddings, kind="flat", item_bias=bias, head=head)

    def _val_ndcg(self, index: ItemIndex, val_profiles: list[str]) -> float:
        queries = TextEncoder(self.encoder).encode(val_profiles)
        ranks = index.target_ranks(
            queries, self.val["target_item_id"].to_list(), self.val["history_item_ids"].to_list()
        )
        return metrics.summarise(ranks, (10,))["ndcg@10"]

    def _profile_samples(self, round_index: int, phase: str, val_profiles: list[str]) -> str:
        lines = [f"# Val profiles after round {round_index}, {phase} phase", ""]
        rows = self.val.head(SAMPLE_PROFILES).iter_rows(named=True)
        for row, profile in zip(rows, val_profiles, strict=False):
            lines += [f"## user {row['user_id']} (next item {row['target_item_id']})", "", profile or "(empty)", ""]
        return "\n".join(lines)

    def _initial_item_bias(self, resume: PhaseCheckpoint | None) -> ItemBias | None:
        if not self.recipe.training.contrastive.item_bias:
            return None
        stored = None if resume is None else resume.load_item_bias()
        if stored is None:
            return ItemBias(len(self.item_ids))
        if len(stored) != len(self.item_ids):
            raise ValueError(
                f"{resume.item_bias_path}: {len(stored)} values for a catalogue of {len(self.item_ids)} items"
            )
        return ItemBias.from_numpy(stored)

    def _stored_item_head(self, resume: PhaseCheckpoint) -> ItemHead | None:
        head = resume.load_item_head()
        if head is not None and len(head) != len(self.item_ids):
            raise ValueError(
                f"{resume.item_head_path}: a head of {len(head)} items for a catalogue of {len(self.item_ids)}"
            )
        return head


def _phase_seed(seed: int, round_index: int, phase: str) -> int:
    return seed + 1000 * round_index + (0 if phase == "decoder" else 1)


def _result(checkpoint: PhaseCheckpoint, resumed_from: str | None) -> TrainingResult:
    return TrainingResult(
        checkpoint=checkpoint.path,
        adapter_dir=checkpoint.adapter_dir,
        encoder_dir=checkpoint.encoder_dir,
        item_bias=checkpoint.item_bias_path,
        item_head=checkpoint.item_head_path,
        history=list(checkpoint.state.get("history", [])),
        resumed_from=resumed_from,
    )


def train_variant(
    recipe: Recipe,
    name: str,
    data: TrainingData,
    outputs: Outputs,
    callbacks: TrainingCallbacks | None = None,
    checkpoints: Path | None = None,
) -> TrainingResult:
    """Train (or resume) variant `name` of `recipe` as the pipeline does: its checkpoints under
    outputs.training(name) (or `checkpoints`), its profiles through the outputs' profile store, so
    the training asset and `lpt train` pick up each other's finished phases."""
    variant = get_variant(name)
    return train_alternating(
        variant.recipe_for(recipe), variant.schedule, data, checkpoints or outputs.training(name), callbacks,
        profile_store=outputs.profile_store,
    )
