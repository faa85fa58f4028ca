"""Validation evidence for the offline profile's fixed choices: augmentation off, 2 epochs, mirror TTA,
and (issue 23) the batch size and replicas that make training fast without changing what it learns.

    python benchmarks/offline_choices.py [--per-class 1000] [--arms NAME ...] [--seed 0] [--out FILE] [--json]

Trains the offline profile's ResNet-50 (random init, 48 px, one-cycle, batch 32) on a seeded per-class
subset of the FER2013 train split and scores the held-back *validation* slice (never the test set):
(a) 2 epochs without augmentation (the profile), (b) 2 epochs with augmentation, (c) 3 epochs without
augmentation; (d-g) the training step's batch size, learning rate and replicas; and for each, validation accuracy / macro-F1 without and with mirror TTA. Every arm uses
the same split, seed and subset, so the differences are the choices'. Writes
benchmarks/results/offline_choices.json. Minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emotion_fusion import data as ef_data  # noqa: E402
from emotion_fusion.branches.image import ImageBranch  # noqa: E402
from emotion_fusion.branches.precision import precision_label  # noqa: E402
from emotion_fusion.config import Config  # noqa: E402
from emotion_fusion.data.pairing import cap_per_class, stratified_split  # noqa: E402

ARMS = {"profile: 2 epochs, no augmentation": {},
        "2 epochs, augmentation": {"augment": True},
        "3 epochs, no augmentation": {"epochs": 3},
        # issue 23: what the faster step changes. lr scaled with the square root of the batch (Adam)
        "batch 32, one model": {"batch_size": 32, "lr": 1e-3, "cpu_replicas": 1},
        "batch 32, replicas": {"batch_size": 32, "lr": 1e-3, "cpu_replicas": None},
        "batch 64, replicas, lr 1.4e-3": {"batch_size": 64, "lr": 1.4e-3, "cpu_replicas": None},
        "batch 128, replicas, lr 1e-3": {"batch_size": 128, "lr": 1e-3, "cpu_replicas": None},
        "batch 128, replicas, lr 1.4e-3": {"batch_size": 128, "lr": 1.4e-3, "cpu_replicas": None},
        "batch 128, replicas, lr 2e-3": {"batch_size": 128, "lr": 2e-3, "cpu_replicas": None},
        "batch 128, replicas, lr 3e-3": {"batch_size": 128, "lr": 3e-3, "cpu_replicas": None},
        "batch 128, replicas, lr 4e-3": {"batch_size": 128, "lr": 4e-3, "cpu_replicas": None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=1000, help="train faces per class (validation: 10%% held back)")
    ap.add_argument("--arms", nargs="*", choices=list(ARMS), help="arms to run (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="the profile's seed (split, subset, init, order)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "offline_choices.json"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    fer_path, _ = ef_data.resolve_paths()
    fer = ef_data.load_fer2013(fer_path, splits=["train"], progress=False)
    base = Config.from_profile("offline", progress=False, seed=a.seed)
    keep, held = stratified_split(fer.y.to_numpy(), base.val_fraction, base.seed)
    train, val = fer.iloc[keep].reset_index(drop=True), fer.iloc[held].reset_index(drop=True)
    train = train.iloc[cap_per_class(train.y.to_numpy(), a.per_class, base.seed)].reset_index(drop=True)
    out = {"train_faces": len(train), "val_faces": len(val), "precision": precision_label("cpu", base.fast),
           "seed": a.seed, "arms": {}}
    for name, change in ARMS.items():
        if a.arms and name not in a.arms:
            continue
        cfg = dataclasses.replace(base, tta=True, **change)
        t = time.perf_counter()
        branch = ImageBranch.from_config(cfg)
        hist = branch.fit(train, val)
        out["arms"][name] = {"val_acc_by_epoch": hist["val_acc"], **hist["tta_on_validation"],
                             "seconds": round(time.perf_counter() - t, 1), "img_per_s": round(hist["img_per_s"], 1),
                             **{k: hist.get(k) for k in ("replicas", "intra_op_threads", "optimizer")}}
        print(f"{name}: {out['arms'][name]}", file=sys.stderr, flush=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2) if a.json else "\n".join(
        f"{k:<40} val acc plain {v['accuracy_plain']:.3f}  TTA {v['accuracy_tta']:.3f}  "
        f"macro-F1 plain {v['macro_f1_plain']:.3f}  TTA {v['macro_f1_tta']:.3f}  ({v['seconds']} s)"
        for k, v in out["arms"].items()))


if __name__ == "__main__":
    main()
