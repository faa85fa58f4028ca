"""One rank of tests/test_distributed.py's 2-process check (run under torchrun; not collected by pytest).

    torchrun --nproc_per_node 2 tests/branches/ddp_worker.py OUT_DIR

Writes OUT_DIR/rank{r}.pt: the faces this rank trained on, its weights after one optimiser step of
`train_image_model`, the training history, and the gradients of one DDP backward pass.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # the package from this checkout

from emotion_fusion.branches import distributed  # noqa: E402
from emotion_fusion.branches.image import ImagePreprocess, load_image_model  # noqa: E402
from emotion_fusion.branches.train import train_image_model  # noqa: E402

N_TRAIN, PER_RANK, SIZE, LR = 28, 14, 32, 1e-3   # 4 faces per class: balanced, so class weights are all 1


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Faces whose pixel (0, 0) is their index (so a rank's shard can be read back from what it saw)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N_TRAIN + 7, 48, 48), dtype=np.uint8)
    x[:, 0, 0] = np.arange(len(x))
    y = np.concatenate([np.arange(N_TRAIN) % 7, np.arange(7)])
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


class Recording(ImagePreprocess):
    """Remembers the ids of the training faces (validation goes through __call__, not recorded)."""

    def __init__(self, size: int):
        super().__init__(size)
        self.seen: list[int] = []

    def to_unit(self, x):
        self.seen += np.asarray(x)[:, 0, 0].tolist()
        return super().to_unit(x)

    def __call__(self, x):
        return self.finish(super().to_unit(x))


def model() -> torch.nn.Module:
    """ResNet-50 (random init, seed 0) with dropout off: a deterministic configuration."""
    m, _ = load_image_model(None, image_size=SIZE, device="cpu", seed=0)
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    return m


def one_step(batch_size: int) -> tuple[torch.nn.Module, Recording, dict]:
    """One epoch = one optimiser step: frozen mode (BatchNorm uses its running statistics), fp32."""
    m, pre = model(), Recording(SIZE)
    x, y, xv, yv = data()
    hist = train_image_model(m, pre, x, y, xv, yv, epochs=1, batch_size=batch_size, lr=LR, mode="frozen",
                             augment=False, fast=False, seed=0, device="cpu", progress=False)
    return m, pre, hist


def ddp_grads(rank: int, world: int) -> dict:
    """Gradients of every parameter (backbone included; BN in eval) after one DDP backward on this
    rank's half of the batch: DDP averages them, so they must equal the full batch's gradients."""
    m = model().eval()
    x, y, _, _ = data()
    idx = distributed.shard(np.arange(N_TRAIN), rank, world)
    net = distributed.accelerator("cpu").prepare_model(m, device_placement=False)
    loss = torch.nn.functional.cross_entropy(net(ImagePreprocess(SIZE)(x[idx])), torch.from_numpy(y[idx]))
    loss.backward()
    return {k: p.grad.clone() for k, p in m.named_parameters()}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    st = distributed.state("cpu")
    m, pre, hist = one_step(PER_RANK)
    torch.save({"rank": st.process_index, "world": st.num_processes, "seen": pre.seen,
                "state": m.state_dict(), "history": hist,
                "grads": ddp_grads(st.process_index, st.num_processes)}, out / f"rank{st.process_index}.pt")
