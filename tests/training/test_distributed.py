"""Training in two CPU processes (gloo) against the single-process computation: cross-process
whitening, the contrastive step with gathered negatives, a whole alternating run (one checkpoint
per phase, resume) and the one-pass pi_old/pi_ref log-probs.

Two processes are started once for the module (spawn, as a launcher would, with the environment
torchrun sets) and run every multi-process job; the tests then compare what they wrote with the
single-process results computed here.
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from builders import tiny_recipe
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForCausalLM, AutoTokenizer

from lpt_core.config import ContrastiveConfig, RLConfig
from lpt_core.training import alternation, distributed
from lpt_core.training.alternation import train_alternating
from lpt_core.training.contrastive import ItemBias, train_recommender
from lpt_core.training.logprobs import sequence_logprobs
from lpt_core.training.policy import make_policy
from lpt_core.training.rebel import BASE_MODEL, shape_and_whiten

from .test_alternation import SECTIONS, Recorder, training_data

PROCESSES = 2
# Six rewards and log-probs, three per process.
RAW = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.8, 0.05])
LOGP_OLD = torch.tensor([-3.0, -5.0, -2.0, -4.0, -1.0, -6.0])
LOGP_REF = torch.tensor([-2.5, -5.5, -2.0, -3.0, -2.0, -6.5])
BETA = 0.3
CONTRASTIVE = ContrastiveConfig(steps_per_round=3, batch_size=4, learning_rate=1e-2)
ITEM_TEXTS = [
    "a thriller", "a comedy", "a drama", "a horror movie", "a western", "a romance", "a war film", "a musical"
]
PROFILES = [f"the user likes {text}" for text in ITEM_TEXTS]


def _run_recipe(lm: Path, encoder: Path):
    # One round, four prompts per RL update (two per process), four rows per contrastive batch.
    recipe = tiny_recipe(lm, encoder, **SECTIONS)
    training = recipe.training.model_copy(
        update={"rounds": 1, "rl": recipe.training.rl.model_copy(
            update={"prompts_per_update": 4, "sampling": recipe.training.rl.sampling.model_copy(update={"max_new_tokens": 4})}
        )}
    )
    return recipe.model_copy(update={"training": training})


def _no_dropout(encoder: SentenceTransformer) -> SentenceTransformer:
    # Dropout masks differ with the batch split; without them both runs compute the same thing.
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return encoder


def _contrastive_run(encoder_dir: Path, item_bias: bool) -> dict:
    encoder = _no_dropout(SentenceTransformer(str(encoder_dir), device="cpu", local_files_only=True))
    start = torch.cat([p.detach().flatten() for p in encoder.parameters()])
    bias = ItemBias(len(ITEM_TEXTS)) if item_bias else None
    cfg = CONTRASTIVE.model_copy(update={"item_bias": item_bias})
    steps = train_recommender(
        encoder, PROFILES, ITEM_TEXTS, cfg, seed=3, target_positions=list(range(len(ITEM_TEXTS))), item_bias=bias
    )
    moved = torch.cat([p.detach().flatten() for p in encoder.parameters()]) - start
    return {
        "losses": [s["loss"] for s in steps],
        "moved": moved.tolist(),
        "bias": None if bias is None else bias.to_numpy().tolist(),
    }


def _worker(rank: int, port: int, folders: dict[str, str], out: str) -> None:
    """One of the two processes: join the group the way the CLI does, run every job, write results."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(PROCESSES), LOCAL_WORLD_SIZE=str(PROCESSES),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    distributed.init_process_group()
    share, pair = slice(rank * 3, rank * 3 + 3), slice(rank * 2, rank * 2 + 2)
    results: dict = {
        "world_size": distributed.world_size(),
        "whitened": shape_and_whiten(RAW[share], LOGP_OLD[share], LOGP_REF[share], BETA).tolist(),
        # Within prompts: each process holds whole pairs (rows 2i, 2i+1), one pair each here.
        "whitened_within_prompt": shape_and_whiten(
            RAW[pair], LOGP_OLD[pair], LOGP_REF[pair], BETA, whiten="within_prompt"
        ).tolist(),
        "parts": distributed.gather_objects(distributed.own_part(list(range(5)))),
        "contrastive": _contrastive_run(Path(folders["encoder"]), item_bias=False),
        "contrastive_biased": _contrastive_run(Path(folders["encoder"]), item_bias=True),
    }

    saves: list[str] = []
    real_save = alternation.save_phase

    def counting_save(*args, **kwargs):
        saves.append(f"{args[1]}-{args[2]}")
        return real_save(*args, **kwargs)

    alternation.save_phase = counting_save
    lm, encoder = Path(folders["lm"]), Path(folders["encoder"])
    data = training_data(AutoTokenizer.from_pretrained(lm))
    recorder = Recorder()
    fresh = train_alternating(_run_recipe(lm, encoder), "langptune", data, Path(folders["fresh_root"]), recorder)
    resumed = train_alternating(_run_recipe(lm, encoder), "langptune", data, Path(folders["resume_root"]))
    results.update(
        saves=saves,
        reported_phases=recorder.phases,
        fresh={"checkpoint": str(fresh.checkpoint), "history": fresh.history},
        resumed={"resumed_from": resumed.resumed_from, "history": resumed.history},
    )
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_lm_folder, tiny_encoder_folder) -> dict:
    """Single-process baselines computed here, then the same jobs in two processes."""
    root = tmp_path_factory.mktemp("distributed")
    lm, encoder = tiny_lm_folder, tiny_encoder_folder
    data = training_data(AutoTokenizer.from_pretrained(lm))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = {
            "contrastive": _contrastive_run(encoder, item_bias=False),
            "contrastive_biased": _contrastive_run(encoder, item_bias=True),
            "run": train_alternating(_run_recipe(lm, encoder), "langptune", data, root / "single"),
        }
        # A single-process run stopped after its first phase: the two processes resume it.
        with pytest.raises(RuntimeError, match="injected failure"):
            train_alternating(_run_recipe(lm, encoder), "langptune", data, root / "resume", Recorder(("encoder", 0)))
    finally:
        torch.set_num_threads(threads)
    single["stopped_at"] = str(next(p for p in (root / "resume").iterdir() if not p.name.startswith(".")))
    folders = {
        "lm": str(lm), "encoder": str(encoder),
        "fresh_root": str(root / "fresh"), "resume_root": str(root / "resume"),
    }
    out = root / "out"
    out.mkdir()
    mp.spawn(_worker, args=(_free_port(), folders, str(out)), nprocs=PROCESSES)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(PROCESSES)]
    return {"single": single, "ranks": ranks, "fresh_root": root / "fresh"}


def test_whitening_across_processes_equals_the_single_process_formula_on_the_gathered_batch(runs):
    expected = shape_and_whiten(RAW, LOGP_OLD, LOGP_REF, BETA)  # one process, the whole batch
    gathered = torch.tensor(runs["ranks"][0]["whitened"] + runs["ranks"][1]["whitened"])
    assert [r["world_size"] for r in runs["ranks"]] == [2, 2]
    torch.testing.assert_close(gathered, expected)
    # Each process alone would have whitened its own three rows to mean 0: the gathered ones do not.
    assert abs(sum(runs["ranks"][0]["whitened"])) > 0.1
    within = shape_and_whiten(RAW[:4], LOGP_OLD[:4], LOGP_REF[:4], BETA, whiten="within_prompt")
    gathered = torch.tensor(runs["ranks"][0]["whitened_within_prompt"] + runs["ranks"][1]["whitened_within_prompt"])
    torch.testing.assert_close(gathered, within)


def test_parts_of_a_list_cover_it_once_in_order(runs):
    for rank in runs["ranks"]:
        assert rank["parts"] == [[0, 1, 2], [3, 4]]


@pytest.mark.parametrize("job", ["contrastive", "contrastive_biased"])
def test_contrastive_steps_in_two_processes_equal_the_one_process_steps(runs, job):
    """Negatives gathered from both processes and DDP-averaged gradients: the same loss and the
    same update as one process on the whole batch (encoder and item bias)."""
    single = runs["single"][job]
    single_moved = np.array(single["moved"])
    for rank in runs["ranks"]:
        assert rank[job]["losses"] == pytest.approx(single["losses"], rel=1e-4)
        difference = np.linalg.norm(np.array(rank[job]["moved"]) - single_moved)
        assert difference < 1e-3 * np.linalg.norm(single_moved)
        if single["bias"] is not None:
            np.testing.assert_allclose(rank[job]["bias"], single["bias"], atol=1e-5)
            assert np.abs(single["bias"]).max() > 1e-3  # the bias did train


def test_two_process_run_writes_each_phase_once_and_reports_once(runs):
    main, other = runs["ranks"]
    # The fresh run's two phases, then the resumed run's encoder phase; never by the other process.
    assert main["saves"] == ["0-decoder", "0-encoder", "0-encoder"] and other["saves"] == []
    assert main["reported_phases"] == [[0, "decoder"], [0, "encoder"]] and other["reported_phases"] == []
    assert main["fresh"]["checkpoint"] == other["fresh"]["checkpoint"]
    # Both processes end with the same models, so the same val metric and whole-batch RL metrics.
    for ours, theirs in zip(main["fresh"]["history"], other["fresh"]["history"], strict=True):
        assert ours["val_ndcg@10"] == theirs["val_ndcg@10"]
    shared = ("reward_mean", "reward_std", "kl", "loss", "profile_tokens")
    last = [rank["fresh"]["history"][-1]["last_update"] for rank in runs["ranks"]]
    assert {k: last[0][k] for k in shared} == pytest.approx({k: last[1][k] for k in shared})
    kept = [p.name for p in runs["fresh_root"].iterdir()]
    assert kept == [Path(main["fresh"]["checkpoint"]).name]  # no half-written or duplicate folder


def test_two_processes_resume_from_the_same_checkpoint(runs):
    main, other = runs["ranks"]
    assert main["resumed"]["resumed_from"] == other["resumed"]["resumed_from"] == runs["single"]["stopped_at"]
    assert [(h["round"], h["phase"]) for h in main["resumed"]["history"]] == [(0, "decoder"), (0, "encoder")]


def test_two_process_rebel_rewards_match_the_single_process_run_within_noise(runs):
    single = runs["single"]["run"].history[-1]["last_update"]
    for rank in runs["ranks"]:
        update = rank["fresh"]["history"][-1]["last_update"]
        samples = 4 * 2  # prompts_per_update x two samples, in both runs
        noise = math.sqrt((update["reward_std"] ** 2 + single["reward_std"] ** 2) / samples)
        assert abs(update["reward_mean"] - single["reward_mean"]) <= 3 * noise + 1e-6
        assert 0.0 < update["reward_mean"] <= 1.0
        # The first RL update samples from the base model: pi_old = pi_ref in both.
        assert update["kl"] == pytest.approx(0.0, abs=1e-4) and single["kl"] == pytest.approx(0.0, abs=1e-4)


def test_one_mixed_adapter_pass_equals_the_two_separate_passes(tiny_lm_folder):
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_folder)
    policy = make_policy(base, RLConfig(lora_r=2, lora_alpha=4))
    with torch.no_grad():  # an adapter away from its zero start, so the two passes differ
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    policy.eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (3, 9), generator=generator)
    attention = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 0], [1] * 9, [0, 1, 1, 1, 1, 1, 1, 0, 0]])
    completion = torch.zeros_like(attention)
    completion[:, 5:] = attention[:, 5:]

    with torch.no_grad():
        with_adapter = sequence_logprobs(policy, ids, attention, completion)
        with policy.disable_adapter():
            without = sequence_logprobs(policy, ids, attention, completion)
        both = sequence_logprobs(
            policy, torch.cat([ids, ids]), torch.cat([attention, attention]), torch.cat([completion, completion]),
            adapter_names=[policy.active_adapter] * 3 + [BASE_MODEL] * 3,
        )

    assert not torch.allclose(with_adapter, without)
    torch.testing.assert_close(both[:3], with_adapter, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[3:], without, atol=1e-5, rtol=1e-5)
