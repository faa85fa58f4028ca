"""Images/s of the offline recipe's training step, alone and beside one busy process, per setting.

    python benchmarks/train_throughput.py [--seconds 8] [--rounds 1] [--only NAME ...] [--compile] [--out FILE]

The step is the offline profile's: a random-init ResNet-50 at 48 px, real FER2013 train faces from the
zip, the same preprocessing, class-weighted cross-entropy, Adam, bf16 autocast where the CPU has it
natively and channels_last. Each setting runs in a fresh child process (thread counts and OpenMP's wait
policy are fixed when a process starts), (a) alone and (b) while this script runs one competing
CPU-bound process (a Python busy loop) that it starts before and stops after the child. Settings are
interleaved round by round, so drift on a shared machine hits all of them alike; the table reports each
setting's images/s relative to the recipe before issue 23 alone, and shared / alone. `procs`: N processes
(DDP over gloo, one rank each); `replicas`: the training loop's replicas on threads (one process). Writes
benchmarks/results/train_throughput.json with the CPU's flags. Time it with nothing else running.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

N_FACES = 2048          # real faces cycled through by every child
WARMUP_STEPS = 3        # oneDNN picks kernels (and torch.compile compiles) on the first steps

# name -> what differs from the recipe before issue 23 (one model, 2 intra-op threads, OpenMP's default wait
# policy, batch 32, channels_last, Adam's per-tensor loop, preprocessing on the training thread). Replicas:
# the training loop's own path (emotion_fusion/branches/replicas.py), the offline default since issue 23.
BASE = "before: one model, 2 threads, batch 32"
SETTINGS = {
    BASE: {},
    "1 thread": {"threads": 1},
    "OMP_WAIT_POLICY=passive": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "fused Adam": {"fused": True},
    "batch 128": {"batch": 128},
    "2 processes (DDP, gloo) x 1 thread, batch 32 each": {"procs": 2, "threads": 1, "batch": 32, "fused": True},
    "2 replicas x 1 thread, batch 32": {"replicas": 2, "threads": 1, "fused": True},
    "2 replicas x 1 thread, batch 64": {"replicas": 2, "threads": 1, "fused": True, "batch": 64},
    "2 replicas x 1 thread, batch 128": {"replicas": 2, "threads": 1, "fused": True, "batch": 128},
}
COMPILE = {"torch.compile + fused Adam": {"fused": True, "compile": True}}


def _child(spec: dict, data: str, seconds: float) -> None:
    """Run the training step for `seconds` after warm-up; print one JSON line with images/s.

    `procs` > 1: that many processes (one rank each, DDP over gloo, rendezvous through a file so no port
    is bound and released), each with `batch` images per step; images/s counts all ranks."""
    procs = spec.get("procs", 1)
    if procs == 1:
        return _rank(0, spec, data, seconds, None)
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(spec, data, seconds, str(Path(tmp) / "rendezvous")), nprocs=procs)


def _rank(rank: int, spec: dict, data: str, seconds: float, rendezvous: str | None) -> None:
    import threading

    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from emotion_fusion.branches.precision import autocast, precision_label
    from emotion_fusion.branches.replicas import Replicas
    from emotion_fusion.branches.resnet import load_image_model

    torch.set_num_threads(spec.get("threads", 2))
    world = spec.get("procs", 1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    if spec.get("interop"):
        torch.set_num_interop_threads(spec["interop"])
    z = np.load(data)
    x, y = z["x"], z["y"]
    model, pre = load_image_model(None, image_size=48, seed=0)
    fmt = torch.channels_last if spec.get("channels_last", True) else torch.contiguous_format
    model.to(memory_format=fmt).train()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4, fused=spec.get("fused", False))
    weight = torch.from_numpy(np.bincount(y, minlength=7).max() / np.maximum(np.bincount(y, minlength=7), 1)).float()
    net = torch.compile(model) if spec.get("compile") else model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, gradient_as_bucket_view=spec.get("bucket_view", False))
    bs = spec.get("batch", 32)
    gen = np.random.default_rng(rank)

    def batch():
        idx = gen.integers(0, len(x), bs)
        return pre(x[idx]).to(memory_format=fmt), torch.from_numpy(y[idx])

    reps = Replicas(model, spec["replicas"], 0, spec.get("threads", 1)) if spec.get("replicas") else None

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        if reps is not None:       # the training loop's replica path (emotion_fusion/branches/replicas.py)
            reps.backward(xb, yb, weight, True, params)
            opt.step()
            return
        with autocast("cpu", True):
            logits = net(xb)
        loss = F.cross_entropy(logits.float(), yb, weight=weight)
        loss.backward()
        opt.step()
        loss.item()

    if reps is not None:
        reps.__enter__()

    t_compile = time.perf_counter()
    for _ in range(WARMUP_STEPS):
        step(*batch())
    t_compile = time.perf_counter() - t_compile
    nxt, done, t0 = batch(), 0, time.perf_counter()
    while _go(time.perf_counter() - t0 < seconds, world):
        if spec.get("overlap"):
            box = {}
            th = threading.Thread(target=lambda: box.setdefault("b", batch()))
            th.start()
            step(*nxt)
            th.join()
            nxt = box["b"]
        else:
            step(*batch())
        done += bs * world
    if rank == 0:
        print(json.dumps({"img_per_s": done / (time.perf_counter() - t0), "warmup_s": t_compile,
                          "precision": precision_label("cpu", True), "threads": torch.get_num_threads(),
                          "processes": world}), flush=True)
    if world > 1:
        dist.destroy_process_group()


def _go(mine: bool, world: int) -> bool:
    """Rank 0's clock decides for every rank (DDP needs the same number of steps on each)."""
    if world == 1:
        return mine
    import torch
    import torch.distributed as dist
    t = torch.tensor([1.0 if mine else 0.0])
    dist.broadcast(t, src=0)
    return bool(t.item())


def _run(spec: dict, data: str, seconds: float, shared: bool) -> dict:
    env = {**os.environ, **spec.get("env", {})}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if shared else None
    try:
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec), "--data", data,
                            "--seconds", str(seconds)], env=env, capture_output=True, text=True, timeout=900)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if p.returncode != 0:
        raise SystemExit(f"child failed for {spec}: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx", "amx")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per setting and condition")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="setting names to run (default: all)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_throughput.json"))
    ap.add_argument("--child")
    ap.add_argument("--data")
    a = ap.parse_args()
    if a.child:
        return _child(json.loads(a.child), a.data, a.seconds)

    import numpy as np

    from emotion_fusion import data as ef_data

    settings = {**SETTINGS, **(COMPILE if a.compile else {})}
    if a.only:
        settings = {k: v for k, v in settings.items() if k in a.only or k == BASE}
    fer = ef_data.load_fer2013(ef_data.resolve_paths()[0], splits=["train"], progress=False)
    pick = np.random.default_rng(0).permutation(len(fer))[:N_FACES]
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "faces.npz")
        np.savez(data, x=ef_data.stack_pixels(fer.iloc[pick]), y=fer.y.to_numpy()[pick])
        runs: dict[str, dict[str, list]] = {k: {"alone": [], "shared": []} for k in settings}
        for r in range(a.rounds):
            for name, spec in settings.items():
                for cond in ("alone", "shared"):
                    res = _run(spec, data, a.seconds, cond == "shared")
                    runs[name][cond].append(res)
                    print(f"round {r + 1} {name:<32} {cond:<6} {res['img_per_s']:6.1f} img/s", file=sys.stderr,
                          flush=True)
    med = {k: {c: float(np.median([x["img_per_s"] for x in v[c]])) for c in v} for k, v in runs.items()}
    base = med[BASE]["alone"]
    table = {k: {"alone_img_per_s": round(m["alone"], 1), "shared_img_per_s": round(m["shared"], 1),
                 "alone_vs_before": round(m["alone"] / base, 2), "shared_vs_own_alone": round(m["shared"] / m["alone"], 2),
                 "shared_vs_before_alone": round(m["shared"] / base, 2),
                 "warmup_s": round(float(np.median([x["warmup_s"] for x in runs[k]["alone"]])), 1)}
             for k, m in med.items()}
    out = {"machine": {"cpu_flags": _cpu_flags(), "cores": os.cpu_count(), "python": platform.python_version(),
                       "precision": runs[BASE]["alone"][0]["precision"]},
           "seconds_per_measurement": a.seconds, "rounds": a.rounds, "settings": SETTINGS | COMPILE, "results": table}
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'setting':<50}{'alone img/s':>12}{'x before':>10}{'shared img/s':>14}{'shared/alone':>14}")
    for k, v in table.items():
        print(f"{k:<50}{v['alone_img_per_s']:>12}{v['alone_vs_before']:>10}{v['shared_img_per_s']:>14}"
              f"{v['shared_vs_own_alone']:>14}")


if __name__ == "__main__":
    main()
