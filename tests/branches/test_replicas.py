"""Replicas on threads (issue 23): the batch split over N model replicas gives the joint batch's gradient,
the same seed gives the same weights, and N comes from the machine's cores, never from its load."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_distributed import Tiny

from emotion_fusion.branches import replicas
from emotion_fusion.branches.image import ImagePreprocess
from emotion_fusion.branches.replicas import Replicas, choose_replicas
from emotion_fusion.branches.train import train_image_model
from emotion_fusion.config import Config
from emotion_fusion.errors import InputError

W = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0, 1.0, 0.7])


def _batch(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = ImagePreprocess(16)(rng.integers(0, 255, (n, 48, 48), dtype=np.uint8))
    return x, torch.from_numpy(rng.integers(0, 7, n))


def _no_dropout_eval_bn() -> Tiny:
    """Deterministic model: dropout off and batch norm on its running statistics, so that slices of a
    batch are the same function as the whole batch (with batch statistics they are not, by design)."""
    m = Tiny()
    m.fc[0].p = 0.0
    return m.eval()


@pytest.mark.parametrize("n, size", [(2, 12), (3, 7), (2, 1)])
def test_replica_gradients_add_up_to_the_joint_batch(n, size):
    x, y = _batch(size)
    ref = _no_dropout_eval_bn()
    loss = F.cross_entropy(ref(x), y, weight=W)
    loss.backward()
    m = _no_dropout_eval_bn()
    params = list(m.parameters())
    with Replicas(m, n, seed=0) as reps:
        for r in reps.models:
            r.eval()
        got_loss, logits = reps.backward(x, y, W, False, params)
    assert got_loss == pytest.approx(loss.item(), rel=1e-6)
    torch.testing.assert_close(logits, ref(x).detach(), rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(ref.named_parameters(), params):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_short_last_batch_gives_no_replica_a_single_face():
    """Batch norm in training needs 2 values per channel; at 1x1 (ResNet-50's layer4 at 32 px, or a
    BatchNorm1d head) a 1-face slice raises. 3 faces over 2 replicas must run as one slice of 3."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8), torch.nn.BatchNorm1d(8),
                            torch.nn.Linear(8, 7)).train()
    x, y = _batch(3)
    params = list(m.parameters())
    with Replicas(m, 2, seed=0) as reps:
        loss, logits = reps.backward(x, y, W, False, params)
    ref = F.cross_entropy(m(x), y, weight=W)
    assert loss == pytest.approx(ref.item(), rel=1e-6) and logits.shape == (3, 7)


def test_twins_share_parameters_but_not_buffers_or_the_dropout_generator():
    m = Tiny()
    with Replicas(m, 3, seed=5) as reps:
        a, b, c = reps.models
        assert a is m
        for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
            assert p is q is r
        assert a.body[1].running_mean is not b.body[1].running_mean
        assert isinstance(a.fc[0], torch.nn.Dropout)           # the model itself is untouched
        assert b.fc[0].generator is not c.fc[0].generator
        assert b.fc[0].generator.initial_seed() == 6 and c.fc[0].generator.initial_seed() == 7


def test_replicas_run_their_threads_and_give_the_callers_back():
    before = torch.get_num_threads()
    with Replicas(Tiny(), 2, seed=0, threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _sha(m) -> str:
    return hashlib.sha256(b"".join(v.detach().contiguous().numpy().tobytes() for v in m.state_dict().values())).hexdigest()


def _train(n: int, **kw):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (50, 48, 48), dtype=np.uint8), rng.integers(0, 7, 50)
    m = Tiny()
    h = train_image_model(m, ImagePreprocess(16), x[:39], y[:39], x[39:], y[39:], epochs=2, batch_size=8, lr=1e-2,
                          progress=False, device="cpu", cpu_replicas=n, **kw)
    return m, h


@pytest.mark.parametrize("fast", [False, True])
def test_same_seed_same_weights_with_replicas(fast):
    """Batch statistics per slice and dropout per replica: every run of the same seed gives the same
    bytes (the gradients are added in replica order, not in the order the threads finish)."""
    runs = [_train(3, fast=fast) for _ in range(3)]
    assert len({_sha(m) for m, _ in runs}) == 1
    assert runs[0][1]["train_loss"] == runs[1][1]["train_loss"] == runs[2][1]["train_loss"]
    assert _sha(runs[0][0]) != _sha(_train(1, fast=fast)[0])     # it is another computation than one model


def test_history_records_replicas_threads_and_optimizer():
    _, h = _train(2)
    assert (h["replicas"], h["optimizer"]) == (2, "Adam (fused)")
    assert h["intra_op_threads"] == max(1, replicas.usable_cores() // 2)
    _, h1 = _train(1)
    assert (h1["replicas"], h1["intra_op_threads"], h1["optimizer"]) == (1, torch.get_num_threads(), "Adam")


def test_replica_count_comes_from_cores_and_batch(monkeypatch):
    monkeypatch.setattr(replicas, "usable_cores", lambda: 2)
    assert choose_replicas(torch.device("cpu"), 32) == 2
    assert choose_replicas(torch.device("cpu"), 24) == 1          # 12 faces each would be too few
    assert choose_replicas(torch.device("cpu"), 32, processes=2) == 1   # torchrun: one process per rank
    assert choose_replicas(torch.device("cuda"), 256) == 1
    assert choose_replicas(torch.device("cpu"), 32, requested=3) == 3      # asked for: kept on a CPU
    assert choose_replicas(torch.device("cpu"), 32, processes=2, requested=3) == 1
    assert choose_replicas(torch.device("cuda"), 256, requested=3) == 1
    monkeypatch.setattr(replicas, "usable_cores", lambda: 16)
    assert choose_replicas(torch.device("cpu"), 64) == 4


def test_training_with_no_replica_count_takes_the_machines(monkeypatch):
    """cpu_replicas=None (the profiles' default): train_image_model asks choose_replicas, on its own device."""
    monkeypatch.setattr(replicas, "usable_cores", lambda: 2)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (50, 48, 48), dtype=np.uint8), rng.integers(0, 7, 50)
    for batch, want in ((32, 2), (8, 1)):
        h = train_image_model(Tiny(), ImagePreprocess(16), x[:39], y[:39], x[39:], y[39:], epochs=1,
                              batch_size=batch, progress=False, device="cpu", cpu_replicas=None)
        assert h["replicas"] == want, batch


@pytest.mark.parametrize("text, cap", [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2),
                                       ("50000 100000\n", 1), ("garbage\n", None)])
def test_usable_cores_respect_a_cgroup_quota(tmp_path, monkeypatch, text, cap):
    f = tmp_path / "cpu.max"
    f.write_text(text)
    monkeypatch.setattr(replicas, "CGROUP_CPU_MAX", str(f))
    monkeypatch.setattr(replicas.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert replicas.usable_cores() == (64 if cap is None else cap)


def test_bad_replica_counts_are_refused():
    with pytest.raises(InputError, match=r"cpu_replicas must be a positive integer or None, got 0"):
        Config(cpu_replicas=0)
    with pytest.raises(InputError, match=r"cpu_replicas must be an integer, got 1.5"):
        Config(cpu_replicas=1.5)
    with pytest.raises(InputError, match=r"cpu_replicas=0 must be >= 1"):
        _train(0)
