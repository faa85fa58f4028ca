"""Repeated training seeds: one sub-run per seed, and an aggregate table (mean ± sd over seeds).

    python -m emotion_fusion run --profile offline --seeds 0 1 2 --out runs/offline-3seeds

Each seed trains both branches into RUN_DIR/seed-<s>/ (a complete run dir of its own, cached as usual)
and RUN_DIR/aggregate.json holds, per model, the headline test scores (the all-pairs estimate when the
pairing draws were scored) of every seed, their mean and standard deviation, and the same for fusion minus the
better single branch. Pairing draws say how much the numbers move with the pairing; seeds, how much they
move with training.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from emotion_fusion import data as _data
from emotion_fusion import runs as _runs
from emotion_fusion.errors import InputError

AGGREGATE = "aggregate.json"


def _headline(results: dict) -> tuple[list[dict], dict]:
    draws = results.get("draws")
    if draws:
        return draws["rows"], draws["comparison"]
    return [r for r in results["rows"] if r["split"] == "test"], {}


def run_seeds(cfg, seeds: list[int], *, fer2013=None, goemotions=None, out) -> dict | None:
    """Run `cfg` once per training seed into OUT/seed-<s>/ and write OUT/aggregate.json."""
    from emotion_fusion.pipeline import run
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if len(seeds) < 2 or min(seeds) < 0:
        raise InputError(f"--seeds {seeds}: give two or more non-negative seeds, e.g. --seeds 0 1 2")
    fer_path, go_path = _data.resolve_paths(fer2013, goemotions)
    from emotion_fusion.branches.distributed import state
    from emotion_fusion.branches.precision import choose_device
    if not state(choose_device(cfg.device)).is_main_process:   # under a launcher: train, write nothing
        for s in seeds:
            run(dataclasses.replace(cfg, seed=s), fer2013=fer_path, goemotions=go_path, out=Path(out) / f"seed-{s}")
        return None
    per_seed, t0 = [], time.perf_counter()
    with _runs.writing(out, [fer_path, go_path]) as root:
        for s in seeds:
            t = time.perf_counter()
            res = run(dataclasses.replace(cfg, seed=s), fer2013=fer_path, goemotions=go_path, out=root / f"seed-{s}")
            rows, comparison = _headline(res.results)
            per_seed.append({"seed": s, "dir": f"seed-{s}", "reused": res.reused, "rows": rows,
                             "comparison": comparison, "seconds": round(time.perf_counter() - t, 1)})
        models = [r["model"] for r in per_seed[0]["rows"]]
        summary = []
        for m in models:
            entry = {"model": m}
            for k in ("accuracy", "macro_f1"):
                vals = np.array([next(r[k] for r in p["rows"] if r["model"] == m) for p in per_seed])
                entry[k] = {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)), "per_seed": vals.tolist()}
            summary.append(entry)
        diffs = {m: {k: [p["comparison"][m][k]["mean_diff"] for p in per_seed] for k in ("accuracy", "macro_f1")}
                 for m in (per_seed[0]["comparison"] or {})}
        agg = {"title": res.results.get("title", ""), "seeds": seeds, "models": summary,
               "minus_better_branch": {m: {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)),
                                               "per_seed": v} for k, v in d.items()} for m, d in diffs.items()},
               "per_seed": per_seed, "wall_s": round(time.perf_counter() - t0, 1)}
        _runs.write_json(root / AGGREGATE, agg)
    return agg


def format_aggregate(agg: dict) -> str:
    """Plain-text table: per model, mean ± sd over seeds and each seed's value (test, in %)."""
    from emotion_fusion.report import MODEL_NAMES
    seeds = agg["seeds"]
    lines = [agg["title"], f"Test, {len(seeds)} training seeds ({', '.join(map(str, seeds))}); each value the "
             "average over all same-class face × text pairs", f"{'model':<28}{'accuracy % mean ± sd':<24}{'macro-F1 % mean ± sd':<24}"
             + "  ".join(f"seed {s} acc/F1" for s in seeds)]
    for e in agg["models"]:
        a, f = e["accuracy"], e["macro_f1"]
        lines.append(f"{MODEL_NAMES.get(e['model'], e['model']):<28}{100 * a['mean']:5.1f} ± {100 * a['sd']:.1f}"
                     f"{'':<13}{100 * f['mean']:5.1f} ± {100 * f['sd']:.1f}{'':<13}" + "  ".join(
                         f"{100 * x:.1f}/{100 * y:.1f}" for x, y in zip(a["per_seed"], f["per_seed"])))
    for m, d in agg["minus_better_branch"].items():
        lines.append(f"{MODEL_NAMES.get(m, m)} minus the better branch: " + "; ".join(
            f"{k.replace('_', '-')} {100 * v['mean']:+.1f} ± {100 * v['sd']:.1f} points" for k, v in d.items()))
    lines.append(f"wall time {agg['wall_s']:.0f} s")
    return "\n".join(lines)
