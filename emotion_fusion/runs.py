"""The run directory (DESIGN.md section 6): config, cached branch outputs, results.

RUN_DIR/config.json            the configuration that made the run
RUN_DIR/outputs/{split}.npz    p_visual, p_text (N x 7, canonical order, after per-branch temperature
                               scaling, so fusion is a pure function of the file), y (N), classes (7)
RUN_DIR/outputs/manifest.json  per split: the npz's sha256 and the cache key of the data+config
RUN_DIR/results.json           rows of {model, split, weight?, accuracy, macro_f1, *_ci, n} + title

Only numpy is imported here (pandas inside `results_table`): the `fuse` CLI must not pay for torch,
scikit-learn or statsmodels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from .errors import InputError
from .fusion import check_weight, check_classes, check_probs, fuse, sweep
from .labels import CLASSES
from .metrics import N_BOOT, as_labels, evaluate_many, mcnemar

OUTPUTS = "outputs"
MANIFEST = "manifest.json"
CONFIG = "config.json"
RESULTS = "results.json"
CORE_ARRAYS = ("p_visual", "p_text", "y", "classes")
SPLITS = ("test", "val")  # scored by score_run, test first
MODEL_NAMES = {"visual": "Visual only", "text": "Text only", "fusion": "Fusion",
               "fusion_best_val": "Fusion (best val weight)"}


def _rerun(run_dir: Path) -> str:
    return f"re-run `python -m emotion_fusion run ... --out {run_dir}`"


def _run_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist; {_rerun(run_dir)} or fix --run-dir")
    return run_dir


# ---------------------------------------------------------------- JSON and hashing
def to_jsonable(obj):
    """json `default=`: numpy values, paths and dataclasses; anything else is a bug, not a guess."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path, obj) -> Path:
    """Write `obj` as indented JSON atomically (a temp file renamed over the target)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, default=to_jsonable, allow_nan=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return path


def read_json(path) -> dict:
    """Read a JSON file; InputError (one line) when it is missing or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing; {_rerun(path.parent)}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e}); "
                         f"{_rerun(path.parent)}") from None


def read_config(run_dir) -> dict:
    """RUN_DIR/config.json as a dict."""
    return read_json(_run_dir(run_dir) / CONFIG)


def _fp_default(obj):
    # Arrays are hashed by dtype, shape and bytes so large data makes a short, exact key.
    if isinstance(obj, np.ndarray):
        data = np.ascontiguousarray(obj)
        if data.dtype == object:
            raise TypeError("cannot fingerprint an object array; convert it to a numeric or str dtype")
        return {"__ndarray__": [data.dtype.str, list(data.shape), hashlib.sha256(data.tobytes()).hexdigest()]}
    if isinstance(obj, bytes):
        return {"__bytes__": hashlib.sha256(obj).hexdigest()}
    return to_jsonable(obj)


def fingerprint(*objs) -> str:
    """Stable sha256 of canonical JSON (sorted keys; numpy arrays by bytes) of `objs`, for cache keys."""
    text = json.dumps(list(objs), sort_keys=True, separators=(",", ":"), default=_fp_default,
                      allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- cached branch outputs
def write_outputs(run_dir, split: str, p_visual, p_text, y, key: str,
                  extra: dict | None = None) -> Path:
    """Write RUN_DIR/outputs/{split}.npz and record its sha256 and cache `key` in the manifest.

    `extra` holds further numeric arrays to keep beside the outputs (e.g. the pairs' image and text
    indices). Returns the npz path.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", str(split)):
        raise InputError(f"split name {split!r} must be letters, digits, '_' or '-' (e.g. val, test)")
    if not isinstance(key, str) or not key:
        raise InputError(f"cache key {key!r} must be a non-empty string (use runs.fingerprint(...))")
    pv, pt = check_probs(p_visual, f"{split} p_visual"), check_probs(p_text, f"{split} p_text")
    y = as_labels(y, f"{split} y")
    if pv.shape != pt.shape or pv.shape[0] != y.size:
        raise InputError(f"{split}: p_visual {pv.shape}, p_text {pt.shape} and y ({y.size},) "
                         "must describe the same pairs")
    arrays = {"p_visual": pv, "p_text": pt, "y": y, "classes": np.array(CLASSES)}
    for name, value in (extra or {}).items():
        a = np.asarray(value)
        if name in arrays or not name.isidentifier() or a.dtype == object:
            raise InputError(f"extra array {name!r} must be a new identifier-like name holding a "
                             f"numeric or string array (reserved: {', '.join(CORE_ARRAYS)})")
        arrays[name] = a
    out_dir = Path(run_dir) / OUTPUTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{split}.npz"
    tmp = out_dir / f".{split}.npz.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[split] = {"file": path.name, "sha256": _sha256(path), "key": key, "n": int(y.size)}
    write_json(manifest_path, manifest)
    return path


def load_outputs(run_dir, split: str, key: str | None = None) -> dict:
    """Load and verify RUN_DIR/outputs/{split}.npz: {p_visual, p_text, y, classes, key, **extra}.

    Raises InputError when the run dir or file is missing, the file changed since the run (sha256),
    `key` differs from the stored one (stale cache), or the arrays are malformed.
    """
    run_dir = _run_dir(run_dir)
    path = run_dir / OUTPUTS / f"{split}.npz"
    if not path.is_file():
        raise InputError(f"{path} is missing; {_rerun(run_dir)}")
    manifest = read_json(run_dir / OUTPUTS / MANIFEST)
    entry = manifest.get(split)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise InputError(f"{run_dir / OUTPUTS / MANIFEST} has no entry for {split}; {_rerun(run_dir)}")
    if _sha256(path) != entry["sha256"]:
        raise InputError(f"{path} was modified after the run (sha256 differs from the manifest); "
                         f"{_rerun(run_dir)}")
    if key is not None and entry.get("key") != key:
        raise InputError(f"{path} is stale: made from other data or config (cache key differs); "
                         f"{_rerun(run_dir)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is not a readable npz ({e}); {_rerun(run_dir)}") from None
    missing = [k for k in CORE_ARRAYS if k not in arrays]
    if missing:
        raise InputError(f"{path} lacks arrays {missing}; {_rerun(run_dir)}")
    try:
        check_classes(arrays["classes"], str(path))
        pv = check_probs(arrays["p_visual"], f"{path} p_visual")
        pt = check_probs(arrays["p_text"], f"{path} p_text")
        y = as_labels(arrays["y"], f"{path} y")
    except InputError as e:
        raise InputError(f"{e}; or {_rerun(run_dir)}") from None
    if pv.shape != pt.shape or pv.shape[0] != y.size:
        raise InputError(f"{path}: p_visual {pv.shape}, p_text {pt.shape} and y ({y.size},) differ "
                         f"in length; {_rerun(run_dir)}")
    arrays.update(p_visual=pv, p_text=pt, y=y, classes=tuple(str(c) for c in arrays["classes"]),
                  key=entry.get("key"))
    return arrays


# ---------------------------------------------------------------- scoring and results
def _from_config(cfg: dict, name: str, run_dir: Path):
    if name not in cfg:
        raise InputError(f"{run_dir / CONFIG} has no {name!r}; pass it explicitly or {_rerun(run_dir)}")
    return cfg[name]


def _title(run_dir: Path, cfg: dict, rule: str) -> str:
    # The pipeline's title (e.g. "... (random-init weights)", "test = FER2013 test x GoEmotions dev")
    # must survive re-scoring, so an existing results.json wins over the config and the default.
    path = run_dir / RESULTS
    if path.is_file():
        title = read_json(path).get("title")
        if title:
            return title
    return cfg.get("title") or f"{run_dir.name}: {rule} late fusion"


def score_run(run_dir, weight: float | None = None, rule: str | None = None, n_boot: int | None = None,
              seed: int | None = None) -> dict:
    """Score visual, text, fusion at `weight` and fusion at the best validation weight, from cache.

    Missing arguments come from config.json (`fusion_weight`, `fusion_rule`, `seed`; `n_boot` from
    the config when it has one, else 1000). All models on a
    split share the same bootstrap resamples (paired CIs); `n_boot=0` skips the CIs. Returns a
    JSON-able dict with `rows`, `best_weight`, `mcnemar` (fusion vs visual on test; b counts pairs
    only fusion gets right), `sweep` and `title`.
    """
    run_dir = _run_dir(run_dir)
    cfg = read_config(run_dir)
    weight = _from_config(cfg, "fusion_weight", run_dir) if weight is None else weight
    rule = _from_config(cfg, "fusion_rule", run_dir) if rule is None else rule
    seed = _from_config(cfg, "seed", run_dir) if seed is None else seed
    n_boot = cfg.get("n_boot", N_BOOT) if n_boot is None else n_boot
    data = {s: load_outputs(run_dir, s) for s in ("val", "test")}
    manifest = read_json(run_dir / OUTPUTS / MANIFEST)
    keys = {s: manifest.get(s, {}).get("key") for s in ("val", "test")}
    if keys["val"] != keys["test"]:
        raise InputError(f"{run_dir / OUTPUTS}: val.npz and test.npz come from different runs (cache keys "
                         f"differ); {_rerun(run_dir)}")
    check_weight(weight)
    # Ties in the sweep go to the default weight, not to `weight`: the best validation weight must not
    # depend on which weight the user asked about. Its CIs are bootstrapped below with the other rows.
    sw = sweep(data["val"], data["test"], rule=rule, n_boot=0)
    best = sw["best_weight"]
    rows, preds = [], {}
    for split in SPLITS:
        d = data[split]
        preds[split] = {"visual": d["p_visual"].argmax(axis=1), "text": d["p_text"].argmax(axis=1),
                        "fusion": fuse(d["p_visual"], d["p_text"], weight, rule).argmax(axis=1),
                        "fusion_best_val": fuse(d["p_visual"], d["p_text"], best, rule).argmax(axis=1)}
        scores = evaluate_many(d["y"], preds[split], n_boot=n_boot, seed=seed)
        for model, score in scores.items():
            row = {"model": model, "split": split}
            if model.startswith("fusion"):
                row["weight"] = float(weight if model == "fusion" else best)
            rows.append({**row, **score})
    at_best = next(r for r in rows if r["split"] == "test" and r["model"] == "fusion_best_val")
    sw["test_at_best"] = {k: v for k, v in at_best.items() if k not in ("model", "split", "weight")}
    test_mc = mcnemar(data["test"]["y"], preds["test"]["fusion"], preds["test"]["visual"])
    return {"title": _title(run_dir, cfg, rule), "rule": rule, "weight": float(weight),
            "best_weight": best, "seed": seed, "n_boot": n_boot, "rows": rows,
            "mcnemar": {"model_a": "fusion", "model_b": "visual", "weight": float(weight), **test_mc},
            "sweep": sw}


def write_results(run_dir, results: dict) -> Path:
    """Write RUN_DIR/results.json; an existing title is kept when `results` brings none."""
    path = Path(run_dir) / RESULTS
    if not results.get("title") and path.is_file():
        old = read_json(path).get("title")
        results = {**results, "title": old} if old else results
    return write_json(path, results)


def _fmt(value: float, ci) -> str:
    text = f"{100 * value:.1f}"
    return f"{text} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else text


def _model_label(row: dict) -> str:
    name = MODEL_NAMES.get(row["model"], row["model"])
    return f"{name}, w = {row['weight']:.2f}" if "weight" in row else name


def results_title(results: dict) -> str:
    """The table title stored in results (e.g. flags random-init weights and the test source)."""
    return results.get("title") or "Late fusion results"


def format_results(results: dict) -> str:
    """Plain-text results table (title, one line per row, best weight, McNemar), no pandas needed."""
    lines = [results_title(results), f"{'split':<6}{'model':<38}{'accuracy %':<22}{'macro-F1 %':<22}n"]
    for r in results["rows"]:
        name = _model_label(r)
        lines.append(f"{r['split']:<6}{name:<38}{_fmt(r['accuracy'], r.get('accuracy_ci')):<22}"
                     f"{_fmt(r['macro_f1'], r.get('macro_f1_ci')):<22}{r['n']}")
    if "best_weight" in results:
        lines.append(f"best validation weight: {results['best_weight']:.2f} (by validation macro-F1)")
    mc = results.get("mcnemar")
    if mc:
        lines.append(f"McNemar, fusion vs visual on test: b = {mc['b']}, c = {mc['c']}, "
                     f"p = {mc['pvalue']:.3g} ({mc['method']})")
    return "\n".join(lines)


def results_table(results: dict):
    """pandas DataFrame for display: accuracy and macro-F1 in % with 95% CIs, "66.7 [65.1, 68.2]".

    The title is in `df.attrs["title"]` (show it with `df.style.set_caption(df.attrs["title"])`).
    """
    import pandas as pd

    recs = []
    for r in results["rows"]:
        recs.append({"split": r["split"], "model": _model_label(r),
                     "accuracy": _fmt(r["accuracy"], r.get("accuracy_ci")),
                     "macro-F1": _fmt(r["macro_f1"], r.get("macro_f1_ci")), "n": r["n"]})
    df = pd.DataFrame.from_records(recs).set_index(["split", "model"])
    df.attrs["title"] = results_title(results)
    return df
