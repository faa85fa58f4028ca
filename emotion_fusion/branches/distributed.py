"""Several processes, one code path: Hugging Face `accelerate` (torch DDP underneath) for image training.

Launched plainly (`python -m emotion_fusion run ...`) there is one process and everything below is a
no-op. Under `torchrun --nproc_per_node N ...` or `accelerate launch ...` each process is one rank:

- data: every epoch rank 0 draws the shuffled order (with the run's seed, exactly as one process does)
  and broadcasts it; rank r trains on `shard(order, r, N)`, the DistributedSampler split (padded with
  the order's head to a multiple of N, then every N-th index): disjoint, same length on every rank.
  `batch_size` is per process, so one optimiser step sees N x batch_size images.
- seeds: rank r seeds dropout (`torch.manual_seed`) and augmentation with `seed + r`; rank 0 therefore
  runs exactly the single-process code path. Model init uses `seed` on every rank, and DDP broadcasts
  rank 0's weights when it wraps the model anyway.
- loss: each rank's class-weighted mean over its batch, and DDP averages the gradients: the weighted
  mean over the joint batch when the ranks' weight sums are equal (always so with balanced classes).
- metrics: loss sums, correct counts and validation sums are summed over ranks (`reduce_sums`), so every
  rank takes the same early-stopping and LR decisions (a rank that stopped alone would hang the others).
- batch norm: each rank normalises with its own batch's statistics (plain DDP, as the torchvision
  reference recipes); the running statistics are rank 0's (DDP broadcasts buffers before each forward,
  `sync_buffers` once more before validation). SyncBatchNorm is GPU-only in torch.
- writing: only the main process writes the run dir (pipeline.run); the others return None.

On CPU the processes talk over gloo (`Accelerator(cpu=True)`); `accelerate launch --cpu` starts one
process only (its multi-CPU path needs MPI), so on CPU launch with torchrun. See README "Scaling out".
"""
from __future__ import annotations

import numpy as np
import torch


def state(device: torch.device):
    """accelerate's process state (rank, world size, main process), made once per process.

    A process not started by a launcher is a world of one; `cpu` picks gloo over NCCL.
    """
    from accelerate import PartialState
    return PartialState(cpu=torch.device(device).type == "cpu")


def accelerator(device: torch.device):
    """The Accelerator for training on `device` (shares `state`'s process group)."""
    from accelerate import Accelerator
    return Accelerator(cpu=torch.device(device).type == "cpu")


def shard(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's part of an epoch's order: DistributedSampler's split (pad with the head, stride)."""
    if world == 1:
        return order
    total = -(-len(order) // world) * world
    padded = np.concatenate([order, order[:total - len(order)]]) if total > len(order) else order
    return padded[rank::world]


def broadcast_order(order: np.ndarray, st) -> np.ndarray:
    """Rank 0's epoch order on every rank (a no-op for one process). `st`: `state(...)`."""
    if st.num_processes == 1:
        return order
    t = torch.from_numpy(np.ascontiguousarray(order, dtype=np.int64)).to(st.device)   # NCCL: on the GPU
    torch.distributed.broadcast(t, src=0)
    return t.cpu().numpy()


def reduce_sums(values: list[float], st) -> list[float]:
    """Sum each value over the ranks (float64; exact for one process)."""
    if st.num_processes == 1:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=st.device)
    torch.distributed.all_reduce(t)
    return t.cpu().tolist()


def sync_buffers(model: torch.nn.Module, st) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before validation/saving."""
    if st.num_processes == 1:
        return
    for b in model.buffers():
        torch.distributed.broadcast(b.data, src=0)
