"""Data parallelism inside one process: N replicas of the model on N threads, one optimiser step.

Why: with two intra-op threads on two cores, every operator (hundreds per step) ends at a barrier where
both threads meet. When any other process takes a core, each barrier waits for the descheduled thread,
and training fell to 0.26 of its speed alone (benchmarks/train_throughput.py; 8-10x slower in the real
runs issue 23 reported). Replicas meet twice per step instead, and each
runs its operators with its own thread(s), so a competitor costs them only its share of the CPU.

- batch: split into N contiguous slices (`torch.tensor_split`; fewer for a last batch under 2N faces);
  replica k runs forward and backward on slice k. Its loss is sum(w_i * nll_i) over its slice /
  sum(w_i) over the whole batch, so the replicas' gradients add up to the gradient of the batch's
  class-weighted mean loss, today's criterion. Batch norm normalises each slice with its own
  statistics (as DDP does per rank), so N changes what is computed: it is fixed by the machine (cores),
  never by its load. (Also different from one model: the twins' dropout streams below, and train.py
  steps replicas with fused Adam.)
- parameters: the replicas share the model's parameter tensors (nothing to copy after a step). Each
  replica's gradients come from `torch.autograd.grad` and are added in replica order, so the sum does
  not depend on which thread finished first: the same seed gives the same weights on the same machine.
- dropout: replica 0 is the model itself (torch's global generator, as one thread would use it);
  replica k > 0 draws its masks from its own generator seeded `seed + k` (two threads sharing the global
  generator would take its numbers in a racing order).
- batch norm running statistics: replica 0's, i.e. the model's (DDP keeps rank 0's the same way).
"""
from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .precision import autocast

MIN_PER_REPLICA = 16    # faces per replica and step; below that batch-norm statistics get noisy


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"   # cgroup v2 quota: "max 100000" or "<quota> <period>"


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota (a container
    limited to 2 CPUs on a 64-core host gets 2), not the machine's total."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = Path(CGROUP_CPU_MAX).read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):   # no cgroup v2 quota here
        pass
    return cores


def choose_replicas(device: torch.device, batch_size: int, processes: int = 1, requested: int | None = None) -> int:
    """Replicas for training on `device`: 1 on a GPU or when a launcher already runs one process per rank;
    else `requested`, or with None one per usable core, with at least MIN_PER_REPLICA faces each."""
    if torch.device(device).type != "cpu" or processes > 1:
        return 1
    return requested or max(1, min(usable_cores(), batch_size // MIN_PER_REPLICA))


class _SeededDropout(nn.Module):
    """nn.Dropout drawing its mask from its own generator (same expectation, another random stream)."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


def _twin(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """A copy of `model` that uses the model's own parameter tensors, with its own buffers and dropout."""
    twin = copy.deepcopy(model)
    for name, p in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        twin.get_submodule(owner)._parameters[leaf] = p
    for name, m in list(twin.named_modules()):
        if isinstance(m, nn.Dropout):
            owner, _, leaf = name.rpartition(".")
            setattr(twin.get_submodule(owner), leaf, _SeededDropout(m.p, generator))
    return twin


class Replicas:
    """N replicas of `model` on N threads with `threads` intra-op threads each. Use as a context manager:
    inside it torch runs `threads` intra-op threads per thread (the caller's count comes back on exit)."""

    def __init__(self, model: nn.Module, n: int, seed: int, threads: int = 1):
        self.models = [model] + [_twin(model, torch.Generator().manual_seed(seed + k)) for k in range(1, n)]
        self.threads = threads
        self._pool = None

    def __enter__(self) -> "Replicas":
        self._before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self._pool = ThreadPoolExecutor(len(self.models), thread_name_prefix="replica",
                                        initializer=torch.set_num_threads, initargs=(self.threads,))
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown()
        torch.set_num_threads(self._before)

    def backward(self, xb: torch.Tensor, yb: torch.Tensor, weight: torch.Tensor, fast: bool,
                 params: list[torch.Tensor], precision: str = "auto") -> tuple[float, torch.Tensor]:
        """Forward and backward of the batch split over the replicas; sets each param's `.grad` to the
        sum of the replicas' gradients. Returns (the batch's weighted mean loss, its logits)."""
        n = min(len(self.models), max(1, len(yb) // 2))   # a short last batch: every slice >= 2 faces, so
        #                                                   batch norm has 2 values per channel even at 1x1
        total = weight[yb].sum()
        parts = zip(range(n), torch.tensor_split(xb, n), torch.tensor_split(yb, n))
        out = list(self._pool.map(lambda a: self._one(*a, weight, total, fast, params, precision), parts))
        for i, p in enumerate(params):
            g = out[0][2][i]
            for r in out[1:]:
                g.add_(r[2][i])
            if g.stride() != p.stride():          # fused Adam reads grad and param as flat arrays
                g = torch.empty_like(p).copy_(g)
            p.grad = g
        return sum(r[0] for r in out), torch.cat([r[1] for r in out])

    def _one(self, k, x, y, weight, total, fast, params, precision):
        with autocast(x.device.type, fast, precision):
            logits = self.models[k](x)
        loss = F.cross_entropy(logits.float(), y, weight=weight, reduction="sum") / total
        grads = torch.autograd.grad(loss, params)
        return loss.item(), logits.detach(), list(grads)
