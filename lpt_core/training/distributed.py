"""Process-group helpers for training in several processes (one per GPU) at once.

Launch: `accelerate launch --config_file configs/accelerate/ddp.yaml -m lpt_core.cli train ...`
(or `torchrun --nproc_per_node N -m lpt_core.cli train ...`, which is what accelerate's multi-GPU
launcher runs underneath; on CPU accelerate has no local multi-process launcher, torchrun does).
The entry point calls `init_process_group()` once. Every other helper here only READS
torch.distributed's state, so library code that is not launched that way (Dagster, tests, a
notebook) sees one process and behaves exactly as before: each helper is then the identity or a
no-op.

Why accelerate for setting up, torch.distributed for the collectives: accelerate's PartialState
reads whatever environment its launcher or torchrun set (ranks, rendezvous, which GPU is this
process's) and picks the backend (NCCL on GPUs, gloo on CPU), and its Accelerator.prepare wraps a
model for the strategy the launch config names (DDP; DeepSpeed ZeRO-2, untested; FSDP is refused,
see `prepare_training`). The collectives themselves (gather, barrier) are a few lines of
torch.distributed: they need only an initialised process group, whoever set it up, and cost
nothing to read when there is none.

What is shared across processes (docs/distributed_training.md): the global prompt batch of an RL
update and the contrastive batch are cut into one equal share per process; REBEL's rewards are
shaped per sample and whitened over the GATHERED batch; the contrastive loss sees every process's
item embeddings as negatives; gradients are averaged by DDP; checkpoints are written by the main
process only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def init_process_group() -> None:
    """Join the process group that a launcher (accelerate launch, torchrun) describes in the
    environment; with no launcher, do nothing. Also makes "cuda" mean this process's own GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    """Processes training together (1 when not launched multi-process)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's index in the group, 0 when not launched multi-process."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True in the process that writes checkpoints and reports metrics."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if world_size() > 1:
        dist.barrier()


def own_share(items: Sequence[T], what: str) -> list[T]:
    """This process's equal, contiguous share of a batch that every process holds in full.

    `what` names the setting that sized the batch, for the error when it does not split evenly
    (REBEL's whitening and the contrastive loss assume equal shares)."""
    count = world_size()
    if len(items) % count:
        raise ValueError(f"{what}: a batch of {len(items)} does not split evenly over {count} processes")
    size = len(items) // count
    return list(items[rank() * size : (rank() + 1) * size])


def own_part(items: Sequence[T]) -> list[T]:
    """This process's contiguous part of `items` for work whose results are gathered back in order
    (profile writing, item embedding): parts differ by at most one item."""
    count, index = world_size(), rank()
    base, extra = divmod(len(items), count)
    start = index * base + min(index, extra)
    return list(items[start : start + base + (index < extra)])


def gather_objects(value: T) -> list[T]:
    """Every process's `value` (picklable), in rank order: [value] in a single process."""
    if world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gather(tensor: Tensor) -> Tensor:
    """Every process's `tensor` concatenated along dim 0 in rank order, no grad; shapes must match.

    Collectives run on the group's device (CUDA for NCCL); the result comes back where `tensor` was."""
    if world_size() == 1:
        return tensor
    device = _collective_device()
    local = tensor.detach().to(device).contiguous()
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(tensor.device)


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Like `gather`, but gradients flow back to every process's own part (the all-gather's backward
    sums each part's gradient over the processes), for a loss over the gathered batch."""
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()))


def mean_across(value: float) -> float:
    """The mean of a per-process number over all processes."""
    if world_size() == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return float(total) / world_size()


def whiten_across_processes(values: Tensor) -> Tensor:
    """(x - mean) / (std + 1e-8), mean and population std over ALL processes' values; returns
    this process's rows. Every process must hold the same number of values."""
    gathered = gather(values)
    whitened = (gathered - gathered.mean()) / (gathered.std(correction=0) + 1e-8)
    return whitened[rank() * len(values) : (rank() + 1) * len(values)]


@dataclass
class PreparedTraining:
    """A model and optimizer ready for a training step: `model` for the forward passes that carry
    grad (the DDP wrapper when distributed, averaging gradients in backward), `backward(loss)`."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    backward: Callable[[Tensor], None]


def prepare_training(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, some_parameters_unused: bool = False
) -> PreparedTraining:
    """In a single process: the model and optimizer as they are, plain `loss.backward()`.
    Launched multi-process: wrapped by accelerate for the launch config's strategy (DDP by default).
    `some_parameters_unused`: trainable parameters that get no gradient (a BERT pooler under mean
    pooling, say) are allowed, at the cost of DDP's search for them after each forward.

    The model is never moved (device placement is the recipe's, made per process by
    `init_process_group`), and generation, no-grad log-probs and checkpoints keep using the
    unwrapped model: under DDP it holds the same parameters.
    """
    if world_size() == 1:
        return PreparedTraining(model, optimizer, lambda loss: loss.backward())
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType

    # The same cpu flag as init_process_group: accelerate's state is shared and set once.
    accelerator = Accelerator(
        device_placement=False,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=some_parameters_unused)],
    )
    if accelerator.distributed_type == DistributedType.FSDP:
        raise NotImplementedError(
            "FSDP (configs/accelerate/fsdp.yaml) is not supported by this training loop: rollouts, "
            "profile writing and checkpoints read the weights whole; launch with ddp.yaml "
            "(docs/distributed_training.md, 'FSDP')"
        )
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None and plugin.deepspeed_config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        # DeepSpeed only logs throughput with it; accelerate would take it from a prepared
        # dataloader, and this loop batches on its own.
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
    wrapped, wrapped_optimizer = accelerator.prepare(model, optimizer)
    return PreparedTraining(wrapped, wrapped_optimizer, accelerator.backward)


def _collective_device() -> torch.device:
    # NCCL moves CUDA tensors only; gloo moves CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
