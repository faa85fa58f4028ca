"""Benchmark: changing one branch of a finished run, against a full run, side by side in one process.

    python benchmarks/branch_cache.py [--profile offline] [--fer2013 P --goemotions P] [--keep DIR] [--json]

Runs, one after another, each as the real CLI in a subprocess (`python -m emotion_fusion run ...`):
(0) a full run of the profile into a fresh folder (both branches trained and encoded),
(1) `--set text_head=zeroshot` on that run dir (the text branch only),
(2) `--set text_head=probe` back again (the text branch only),
(3) `--set epochs=3` (the image branch only: it must encode no text).
Each run's wall time is given as a ratio to (0). What each branch did is read from run_info.json's
`cache` and `timings` (a `<branch>_branch_s` only for a branch that was computed: a reused text branch
builds no encoder and encodes no text); the size of the cached embeddings is read from the run dir. Time it alone: another busy process on two cores slows training 8-10x.
`--keep DIR` copies the full run's dir (0) to DIR before (1) starts, outside every timing.
Results: benchmarks/results/branch_cache.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from emotion_fusion.branches.precision import cpu_native_bf16  # noqa: E402
from emotion_fusion.data import resolve_paths  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "branch_cache.json"
STEPS = {"full_run": [], "text_head_zeroshot": ["--set", "text_head=zeroshot"],
         "text_head_probe_again": ["--set", "text_head=probe"], "epochs_3": ["--set", "epochs=3"]}


def _run(args: list[str], log: Path) -> float:
    t = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-m", "emotion_fusion", "run", *args], cwd=REPO, check=True,
                       stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - t


def _embedding_bytes(run_dir: Path) -> dict:
    import numpy as np
    out = {}
    for b in ("image", "text"):
        for s in ("val", "test"):
            with np.load(run_dir / "branches" / f"{b}_{s}.npz") as z:
                e = z["emb"]
                out[f"{b}_{s}"] = {"shape": list(e.shape), "dtype": str(e.dtype), "bytes": int(e.nbytes)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="offline")
    ap.add_argument("--fer2013")
    ap.add_argument("--goemotions")
    ap.add_argument("--keep", help="copy the full run's dir here (it must not exist)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    fer, go = resolve_paths(a.fer2013, a.goemotions)
    work = Path(tempfile.mkdtemp(prefix="branch_cache_"))
    run_dir = work / "run"
    base = ["--profile", a.profile, "--fer2013", str(fer), "--goemotions", str(go), "--out", str(run_dir)]
    steps = {}
    try:
        for name, extra in STEPS.items():
            log = work / f"{name}.log"
            seconds = _run(base + extra, log)
            info = json.loads((run_dir / "run_info.json").read_text())
            text = log.read_text(errors="replace")
            steps[name] = {"seconds": round(seconds, 1), "args": extra,
                           "cache": {b: info["cache"][b]["message"] for b in ("image", "text")},
                           "timings": info["timings"],   # <branch>_branch_s only for a branch computed
                           "branch_lines": [ln for ln in text.replace("\r", "\n").splitlines()
                                            if ln.startswith(("image branch:", "text branch:"))]}
            print(f"{name}: {seconds:.1f} s  " + " | ".join(steps[name]["cache"].values()), file=sys.stderr)
            if name == "full_run" and a.keep:
                shutil.copytree(run_dir, a.keep, ignore=shutil.ignore_patterns(".lock"))
        embeddings = _embedding_bytes(run_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    full = steps["full_run"]["seconds"]
    for s in steps.values():
        s["ratio_to_full_run"] = round(s["seconds"] / full, 3)
    res = {"what": __doc__.split("\n\n")[0], "profile": a.profile, "steps": steps, "embeddings": embeddings,
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "native_bf16": cpu_native_bf16(),
                       "date": time.strftime("%Y-%m-%d", time.gmtime())}}
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2) if a.json else
          "\n".join(f"{k:<24}{v['seconds']:>8.1f} s  x{v['ratio_to_full_run']:.3f}" for k, v in steps.items()))


if __name__ == "__main__":
    main()
