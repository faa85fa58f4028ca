"""Each branch's own cache in the run directory (runs.py's RUN_DIR/branches/), and the plan per branch.

A part is `branches/{b}_{split}.npz` (per item: raw `p`, other candidates `p_<name>`, `y`, float16 `emb`)
and `branches/{b}.json`, written last for that branch: its key, settings, date, label and the sha256 of its
files. pipeline.py reuses a part whose key matches and whose files are as recorded. Numpy only (no torch).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from emotion_fusion.data.files import atomic_write
from emotion_fusion.errors import InputError
from emotion_fusion.runs import (
    BRANCH_DIR,
    BRANCHES,
    SPLITS,
    check_own_folders,
    rerun,
    run_dir_path,
    sha256,
    verify,
    write_json,
)
from emotion_fusion.scoring.fusion import check_probs
from emotion_fusion.scoring.metrics import as_labels

PART_FORMAT = "emotion_fusion.branch/1"
_DID = {"image": "trained", "text": "encoded and fitted"}


def plan(out: Path, keys: dict, settings: dict) -> dict[str, dict]:
    """Per branch: reuse its cached part (same key, every file as recorded) or recompute it, and why
    (`settings`: each branch's current settings, to name what changed)."""
    older = not (out / BRANCH_DIR).is_dir() and (out / "manifest.json").is_file()
    out_plan = {}
    for b in BRANCHES:
        rec = read_branch_record(out, b)
        if rec is not None and rec.get("key") == keys[b]:
            when = str(rec.get("created", "?"))
            out_plan[b] = {"reused": True, "created": when, "key": keys[b],
                           "message": f"reused ({_DID[b]} {when}, key {keys[b][:12]})"}
            continue
        if older:
            why = "the run dir was made before per-branch caches (one key for both branches); recomputed once"
        elif rec is None:
            why = ("nothing cached yet" if not (out / BRANCH_DIR / f"{b}.json").exists()
                   else "its cached part is damaged or was changed after it was written")
        else:
            why = _what_changed(rec, settings[b])
        out_plan[b] = {"reused": False, "key": keys[b], "reason": why,
                       "message": ("computed: " if why == "nothing cached yet" else "recomputed: ") + why}
    return out_plan


def _what_changed(rec: dict, settings: dict) -> str:
    """Why a cached part no longer fits, in words: the settings that changed, else data, weights, code."""
    old = rec.get("settings") if isinstance(rec.get("settings"), dict) else {}
    changed = [f"{k} changed ({old.get(k)!r} -> {v!r})" for k, v in settings.items() if k in old and old[k] != v]
    changed += [f"{k} is new" for k in settings if k not in old]
    return "; ".join(changed) if changed else "the datasets, its weight file or the code version changed"


def _part_paths(run_dir: Path, branch: str) -> tuple[Path, dict[str, Path]]:
    if branch not in BRANCHES:
        raise InputError(f"unknown branch {branch!r}; choose one of: {', '.join(BRANCHES)}")
    d = Path(run_dir) / BRANCH_DIR
    return d / f"{branch}.json", {s: d / f"{branch}_{s}.npz" for s in SPLITS}


def drop_branch_part(run_dir, branch: str) -> None:
    """Forget `branch`'s cached part before recomputing it: its record goes first, so an interrupted
    recomputation leaves no record that could vouch for half-written files."""
    check_own_folders(run_dir)
    record, arrays = _part_paths(run_dir, branch)
    for p in (record, *arrays.values()):
        p.unlink(missing_ok=True)


def write_branch_part(run_dir, branch: str, key: str, items: dict[str, dict[str, np.ndarray]], record: dict,
                      model_files: list[str]) -> Path:
    """Write `branch`'s cached part: per split an npz of per-item arrays (`items[split]`, which must hold
    `p`, `y` and `emb`), then LAST its record (the key, `record`, and the sha256 of the npz files and of
    `model_files`, paths relative to the run dir). Embeddings are stored as float16."""
    run_dir = Path(run_dir)
    check_own_folders(run_dir)
    rec_path, arrays = _part_paths(run_dir, branch)
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    rec_path.unlink(missing_ok=True)
    for split, path in arrays.items():
        a = dict(items[split])
        missing = [k for k in ("p", "y", "emb") if k not in a]
        if missing:
            raise InputError(f"{branch} {split}: the cached part needs arrays {missing}")
        a["p"] = check_probs(a["p"], f"{branch} {split} p")
        a["y"] = as_labels(a["y"], f"{branch} {split} y")
        a["emb"] = np.asarray(a["emb"], dtype=np.float16)
        if not (len(a["p"]) == a["y"].size == len(a["emb"])) or a["emb"].ndim != 2:
            raise InputError(f"{branch} {split}: p, y and emb must have one row per item "
                             f"(got {len(a['p'])}, {a['y'].size}, {a['emb'].shape})")
        with atomic_write(path) as f:
            np.savez(f, **a)
    files = {}
    for rel in [p.relative_to(run_dir).as_posix() for p in arrays.values()] + list(model_files):
        if not (run_dir / rel).is_file():
            raise InputError(f"{run_dir / rel} is missing; cannot record the {branch} branch's cache")
        files[rel] = {"sha256": sha256(run_dir / rel, cached=False), "size": (run_dir / rel).stat().st_size}
    return write_json(rec_path, {"format": PART_FORMAT, "branch": branch, "key": key, **record, "files": files})


def read_branch_record(run_dir, branch: str) -> dict | None:
    """`branch`'s record when it and every file it lists are intact (sha256 as recorded); else None."""
    rec_path, _ = _part_paths(run_dir, branch)
    if not rec_path.is_file():
        return None
    try:
        rec = json.loads(rec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    if (not isinstance(rec, dict) or rec.get("format") != PART_FORMAT or not isinstance(rec.get("files"), dict)
            or not all(isinstance(v, dict) for v in rec["files"].values())):
        return None
    for rel, entry in rec["files"].items():
        f = Path(run_dir) / rel
        if not f.is_file() or f.stat().st_size != entry.get("size") or sha256(f) != entry.get("sha256"):
            return None
    return rec


def load_branch_items(run_dir, branch: str, split: str) -> dict[str, np.ndarray]:
    """The per-item arrays of `branch`'s cached part for `split` (unverified: check the record or the
    manifest first)."""
    _, arrays = _part_paths(run_dir, branch)
    if split not in arrays:
        raise InputError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    path = arrays[split]
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is not a readable npz ({e}); {rerun(Path(run_dir))}") from None


def load_embeddings(run_dir, split: str = "test", verified: bool = False) -> dict[str, np.ndarray]:
    """Per-item embeddings of `split` after checking the run dir against its manifest: `image` (faces x
    2048, ResNet-50's pooled features) and `text` (texts x D, the text encoder's sentence embedding), both
    float16, with `y_image` / `y_text`; rows in the order of outputs/{split}.npz's p_image / p_text_items."""
    run_dir = run_dir_path(run_dir)
    if not verified:
        verify(run_dir)
    out = {}
    for branch in BRANCHES:
        if not _part_paths(run_dir, branch)[1].get(split, run_dir).is_file():
            raise InputError(f"{run_dir} has no cached {branch} embeddings for {split!r} (a dir made by `evaluate`, "
                             f"or by a version before per-branch caches); {rerun(run_dir)}")
        a = load_branch_items(run_dir, branch, split)
        out[branch], out[f"y_{branch}"] = a["emb"], a["y"]
    return out
