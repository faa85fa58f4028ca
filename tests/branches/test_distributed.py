"""Distributed image training (issue 13): the single-process path is unchanged, and 2 real processes
(torchrun, gloo) shard the data, agree on their weights and match one process on the joint batch."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emotion_fusion import runs
from emotion_fusion.branches import distributed
from emotion_fusion.branches.image import ImagePreprocess
from emotion_fusion.branches.replicas import usable_cores
from emotion_fusion.branches.train import train_image_model

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ddp_worker", REPO / "tests" / "branches" / "ddp_worker.py")
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

# Recorded on the pre-accelerate code (commit abc9106) on the build machine: final-weight sha256 and the
# history of a tiny training run. The hash is asserted exactly where the platform is the same one.
BASELINE_PLATFORM = ("2.14.1+cu130", "AMD EPYC")
BASELINE = [
    (dict(epochs=3, batch_size=8, fast=False, lr=1e-2, lr_schedule="onecycle"),
     "7a84cf9626a92b5adfccd1543e948c85048f53468d539c383421871da823820c",
     [2.009319814046224, 2.127499485015869, 1.9716178894042968],
     [1.9577459038214504, 1.9544514579815648, 1.950956802997437]),
    (dict(epochs=3, batch_size=8, fast=True, lr=1e-2, mode="frozen", augment=False),
     "a7a5a07d7ee3090c9b3791c61fa87e6bbf2a1eebd2ade1569abebf885859978c",
     [2.0626129150390624, 2.0008312543233235, 1.9560559829076132],
     [1.95876705788466, 1.9542657618145907, 1.951257378996522]),
]


class Tiny(nn.Module):
    """Conv + BatchNorm + dropout head: every stateful piece of the real model, in milliseconds."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 7))
        self.num_classes = 7

    def forward(self, x):
        return self.fc(self.body(x))


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


@pytest.mark.parametrize("case", range(len(BASELINE)))
def test_single_process_results_unchanged(case):
    kw, sha, train_loss, val_loss = BASELINE[case]
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (40, 48, 48), dtype=np.uint8), rng.integers(0, 7, 40)
    m = Tiny()
    h = train_image_model(m, ImagePreprocess(16), x[:30], y[:30], x[30:], y[30:], progress=False, device="cpu", **kw)
    assert h["processes"] == 1
    same_platform = (torch.__version__, _cpu_model()) == BASELINE_PLATFORM
    if same_platform:   # bit-identical: weights and every float of the history
        got = hashlib.sha256(b"".join(v.detach().contiguous().numpy().tobytes() for v in m.state_dict().values()))
        assert got.hexdigest() == sha
        assert h["train_loss"] == train_loss and h["val_loss"] == val_loss
    elif not kw["fast"]:  # fp32 elsewhere: other kernels, same numbers to rounding
        np.testing.assert_allclose(h["train_loss"], train_loss, rtol=1e-4)
        np.testing.assert_allclose(h["val_loss"], val_loss, rtol=1e-4)
    else:                 # bf16 runs only where the CPU has it natively: nothing to compare against
        assert np.isfinite(h["train_loss"]).all()


def test_shards_are_disjoint_and_cover_the_epoch():
    order = np.random.default_rng(1).permutation(11)
    parts = [distributed.shard(order, r, 3) for r in range(3)]
    assert {len(p) for p in parts} == {4}                         # equal length: no rank waits forever
    assert set(np.concatenate(parts)) == set(order)
    assert len(np.concatenate(parts)) - len(set(np.concatenate(parts))) == 1   # one padded repeat
    assert distributed.shard(order, 0, 1) is order


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment holds `marker`: torchrun starts each rank in its own
    session, so killing the launcher (or its group) would leave the ranks running."""
    for env_file in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in env_file.read_bytes().split(b"\0"):
                os.kill(int(env_file.parent.name), signal.SIGKILL)
        except (OSError, ValueError):      # gone already, or not ours to read
            pass


def torchrun(args: list[str], cwd: Path, timeout: int = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 ARGS` on loopback (gloo on lo), failing with its output.

    --standalone: the rendezvous store binds a free port itself (no bind-then-release race here). The
    launcher and both ranks die with the test: on a timeout or any error they are killed, found by a
    marker in their environment."""
    marker = f"EF_TEST_TORCHRUN={uuid.uuid4().hex}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {}),
           marker.split("=")[0]: marker.split("=")[1]}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:     # timed out, or the test was interrupted
            proc.kill()
            proc.wait()
        _kill_marked(marker)        # the ranks, in their own sessions
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_two_processes_step_like_one_process_on_the_joint_batch(tmp_path):
    """Deterministic configuration: dropout off, fp32, no augmentation, balanced classes, and frozen
    batch-norm statistics (mode="frozen" for the training step, BN in eval for the gradients).
    Frozen rather than SyncBatchNorm: torch's SyncBatchNorm runs on GPUs only, and with per-rank batch
    statistics two half-batches are by design not the same function as one joint batch."""
    torchrun([str(REPO / "tests" / "branches" / "ddp_worker.py"), str(tmp_path)], cwd=REPO)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert (r0["world"], r1["world"], r0["rank"], r1["rank"]) == (2, 2, 0, 1)
    # disjoint shards of equal size that together are the whole epoch
    assert len(r0["seen"]) == len(r1["seen"]) == worker.PER_RANK
    assert not set(r0["seen"]) & set(r1["seen"])
    assert sorted(r0["seen"] + r1["seen"]) == list(range(worker.N_TRAIN))
    # after the step both ranks hold the same weights (BN buffers included) ...
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # ... equal to one process taking one step on the concatenated batch
    m, pre, hist = worker.one_step(worker.N_TRAIN)
    assert sorted(pre.seen) == list(range(worker.N_TRAIN))
    ref = m.state_dict()
    trained = [k for k in ref if k.startswith("fc.") and "weight" in k]
    for k in ref:   # Adam divides by |grad|: where a gradient is ~eps its step depends on rounding,
        # so the tolerance is 1% of one step (lr), far below what a wrong batch or no all-reduce gives
        torch.testing.assert_close(r0["state"][k], ref[k], rtol=0, atol=0.01 * worker.LR)
    assert all(not torch.equal(r0["state"][k], worker.model().state_dict()[k]) for k in trained)  # it moved
    # reduced metrics: the loss of the step and the validation loss are the whole batch's
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert r0["history"][key] == r1["history"][key]
        np.testing.assert_allclose(r0["history"][key], hist[key], rtol=1e-5)
    # Adam's first step is ~lr*sign(grad), blind to a wrong gradient scale: check the averaged
    # gradients themselves, backbone included, against the full batch's.
    full = worker.model().eval()
    x, y, _, _ = worker.data()
    nn.functional.cross_entropy(full(ImagePreprocess(worker.SIZE)(x)), torch.from_numpy(y)).backward()
    for k, p in full.named_parameters():
        torch.testing.assert_close(r0["grads"][k], r1["grads"][k], rtol=0, atol=0)
        torch.testing.assert_close(r0["grads"][k], p.grad, rtol=1e-3, atol=1e-6)


def _shape(run_dir: Path) -> dict:
    """Every file of a run dir, and for .npz files every array's shape."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        if p.is_file() and p.name != runs.LOCK:
            rel = p.relative_to(run_dir).as_posix()
            out[rel] = {k: v.shape for k, v in np.load(p).items()} if p.suffix == ".npz" else None
    return out


@pytest.mark.data
@pytest.mark.slow
def test_two_process_smoke_run_writes_the_same_run_dir(tmp_path, fer_path, go_path):
    args = ["-m", "emotion_fusion", "run", "--profile", "smoke", "--fer2013", str(fer_path),
            "--goemotions", str(go_path), "--set", "progress=false"]
    torchrun([*args, "--out", str(tmp_path / "ddp")], cwd=REPO)
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], cwd=REPO, capture_output=True,
                         text=True, timeout=240)
    assert one.returncode == 0, one.stderr[-3000:]
    runs.verify(tmp_path / "ddp")
    runs.verify(tmp_path / "one")
    assert _shape(tmp_path / "ddp") == _shape(tmp_path / "one")
    info = [json.loads((tmp_path / d / runs.INFO).read_text())["history"] for d in ("ddp", "one")]
    assert (info[0]["processes"], info[1]["processes"]) == (2, 1)
    # run_info records how it trained: each rank one model; one process one replica per usable core
    # (the smoke profile's batch of 32 gives each at least 16 faces up to 2 replicas)
    assert info[0]["replicas"] == 1 and info[0]["optimizer"] == "Adam"
    assert info[1]["replicas"] == min(2, usable_cores())
    assert info[1]["optimizer"] == ("Adam (fused)" if info[1]["replicas"] > 1 else "Adam")


def test_history_records_the_intra_op_threads_that_trained():
    """The thread count changes the numbers (oneDNN splits reductions by thread) and the speed on a shared
    CPU, so the history (run_info.json) says which ran."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (20, 48, 48), dtype=np.uint8), rng.integers(0, 7, 20)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        h = train_image_model(Tiny(), ImagePreprocess(16), x[:14], y[:14], x[14:], y[14:], epochs=1, batch_size=8,
                              progress=False, device="cpu")
    finally:
        torch.set_num_threads(before)
    assert h["intra_op_threads"] == 1
