"""Benchmark: the fusion-method comparison from a finished run's cache, beside `fuse`, in one process order.

    python benchmarks/compare.py --run-dir D [--json]

Each as the real CLI in a subprocess (imports included, what users run), one after another:
(1) `fuse --weight 0.6`: the headline at a weight (the budget re-scoring must stay under);
(2) `compare`: every registered method fitted on validation (cross-fitting included), scored on test with
    the crossed two-way intervals and Holm-adjusted p, and the dependence rows (refits included)  <= 60 s;
(3) `compare --methods loglinear --weight 0.5 --no-dependence`: one method re-scored at a new weight,
    against (1).
Wall times and ratios to (1); the in-process split of (2) (fit / score / dependence) from its JSON.
Time it alone: another busy process on two cores slows every number here.
Results: benchmarks/results/compare.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from emotion_fusion.branches.precision import cpu_native_bf16  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "compare.json"


def _cli(args: list[str]) -> tuple[float, dict]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "emotion_fusion", *args, "--json"], cwd=REPO, check=True,
                       capture_output=True, text=True)
    return time.perf_counter() - t, json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    d = ["--run-dir", str(Path(a.run_dir).resolve())]
    fuse_s, _ = _cli(["fuse", *d, "--weight", "0.6"])
    all_s, res = _cli(["compare", *d])
    one_s, one = _cli(["compare", *d, "--methods", "loglinear", "--weight", "0.5", "--no-dependence"])
    out = {"what": __doc__.split("\n\n")[0], "run_dir": str(a.run_dir),
           "seconds": {"fuse": round(fuse_s, 2), "compare_all": round(all_s, 2), "compare_one_at_weight": round(one_s, 2)},
           "ratio_to_fuse": {"compare_all": round(all_s / fuse_s, 2), "compare_one_at_weight": round(one_s / fuse_s, 2)},
           "compare_all_in_process": res["timings"],
           "fit_s": {r["method"]: r["fit_s"] for r in res["methods"]},
           "methods": [r["method"] for r in res["methods"]], "n_boot": res["n_boot"], "draws": res["draws"],
           "one_at_weight": {k: one["methods"][0][k] for k in ("method", "params", "macro_f1", "macro_f1_ci")},
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "native_bf16": cpu_native_bf16(), "date": time.strftime("%Y-%m-%d", time.gmtime())}}
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2) if a.json else "\n".join(
        f"{k:<24}{v:>8.2f} s" + (f"  x{out['ratio_to_fuse'][k]:.2f} of fuse" if k in out["ratio_to_fuse"] else "")
        for k, v in out["seconds"].items()))


if __name__ == "__main__":
    main()
