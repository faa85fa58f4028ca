"""Batch prediction throughput vs a loop of single `predict` calls, and the 2-process (DDP, CPU) smoke run.

    python benchmarks/batch.py [--n 512] [--loop 8] [--run-dir R] [--skip-ddp] [--json]

(a) One smoke run (random-init weights; the speed does not depend on them) is trained, or --run-dir is
    used. N real FER2013 test faces (in a zip) and N GoEmotions dev texts are scored by
    `predict --images --texts --out` (batch.py: DataLoader with 2 workers, one text-encode call) and,
    for `--loop` of the same pairs, by `inference.predict` once per pair (what a script calling the
    single form does, in-process: the CLI would add a Python start per pair). Ratio = seconds per pair.
(b) `run --profile smoke` as 1 process and as 2 (torchrun, gloo, CPU), wall time of each.
The machine is shared and noisy: compare ratios measured in one run. Writes benchmarks/results/batch.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emotion_fusion import pipeline  # noqa: E402
from emotion_fusion.app import inference
from emotion_fusion.app.batch import predict_batch  # noqa: E402
from emotion_fusion.config import Config  # noqa: E402


def _data() -> tuple[Path, Path]:
    root = Path(os.environ.get("EMOTION_FUSION_DATA", REPO.parent / "shared" / "data"))
    return root / "fer2013.zip", root / "goemotions"


def _inputs(tmp: Path, fer: Path, go: Path, n: int) -> tuple[Path, Path, list[str], list[str]]:
    """A zip of n test faces, a .txt of n dev texts; the face files and texts in their scoring order."""
    with zipfile.ZipFile(fer) as z:
        names = sorted(m for m in z.namelist() if m.startswith("test/") and m.endswith(".jpg"))[:: 7][:n]
        with zipfile.ZipFile(tmp / "faces.zip", "w") as out:
            for m in names:
                out.writestr(m, z.read(m))
                (tmp / "loose" / m).parent.mkdir(parents=True, exist_ok=True)
                (tmp / "loose" / m).write_bytes(z.read(m))
    texts = pd.read_csv(go / "dev.tsv", sep="\t", header=None, quoting=3)[0].astype(str).tolist()[:n]
    (tmp / "texts.txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
    return tmp / "faces.zip", tmp / "texts.txt", [str(tmp / "loose" / m) for m in sorted(names)], texts


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _smoke(out: Path, fer: Path, go: Path, procs: int) -> float:
    """Wall seconds of `run --profile smoke` as `procs` processes (torchrun for 2, loopback only)."""
    args = ["-m", "emotion_fusion", "run", "--profile", "smoke", "--fer2013", str(fer), "--goemotions", str(go),
            "--out", str(out), "--set", "progress=false"]
    if procs > 1:   # --standalone: the rendezvous store binds a free port itself (no bind-then-release race)
        args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), *args]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"smoke run ({procs} processes) failed: {res.stderr[-2000:]}")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="faces and texts scored in the batch (default 512)")
    ap.add_argument("--loop", type=int, default=8, help="pairs scored one `predict` call at a time (default 8)")
    ap.add_argument("--run-dir", type=Path, help="an existing run dir (default: train a smoke run)")
    ap.add_argument("--skip-ddp", action="store_true", help="skip (b), the 1- vs 2-process smoke runs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "batch.json")
    a = ap.parse_args(argv)
    fer, go = _data()
    res: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__, "n": a.n, "loop": a.loop}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_dir = a.run_dir
        if run_dir is None:
            run_dir = pipeline.run(Config.from_profile("smoke", progress=False), fer2013=fer, goemotions=go,
                                   out=tmp / "run").dir
        faces, texts, face_files, text_list = _inputs(tmp, fer, go, a.n)
        kw = dict(progress=False, workers=2)
        _, res["images_s"] = _timed(lambda: predict_batch(run_dir, images=faces, out=tmp / "i.csv", **kw))
        _, res["texts_s"] = _timed(lambda: predict_batch(run_dir, texts=texts, out=tmp / "t.csv", **kw))
        _, res["pairs_s"] = _timed(lambda: predict_batch(run_dir, images=faces, texts=texts, out=tmp / "p.csv", **kw))
        _, res["loop_s"] = _timed(lambda: [inference.predict(run_dir, image=f, text=t)
                                           for f, t in zip(face_files[:a.loop], text_list[:a.loop])])
        n = len(face_files)
        res.update(faces_per_s=n / res["images_s"], texts_per_s=n / res["texts_s"], pairs_per_s=n / res["pairs_s"],
                   loop_pairs_per_s=a.loop / res["loop_s"])
        res["batch_vs_loop"] = res["pairs_per_s"] / res["loop_pairs_per_s"]
        if not a.skip_ddp:
            res["smoke_1proc_s"] = _smoke(tmp / "one", fer, go, 1)
            res["smoke_2proc_s"] = _smoke(tmp / "two", fer, go, 2)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"batch: {res['faces_per_s']:.1f} faces/s, {res['texts_per_s']:.1f} texts/s, {res['pairs_per_s']:.1f} "
             f"pairs/s ({n} each)",
             f"loop of single predict calls: {res['loop_pairs_per_s']:.2f} pairs/s ({a.loop} pairs)",
             f"batch vs loop: {res['batch_vs_loop']:.0f}x"]
    if not a.skip_ddp:
        lines.append(f"smoke run wall time: 1 process {res['smoke_1proc_s']:.0f} s, 2 processes (torchrun, gloo) "
                     f"{res['smoke_2proc_s']:.0f} s")
    print("\n".join(lines), file=sys.stderr if a.json else sys.stdout)
    if a.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
