"""Benchmark: the whole dependence curve from a run directory's cache, without torch.

    python benchmarks/dependence.py [--json] [--run-dir D] [--draws R]

(1) `ef.dependence_curve(run_dir)`: read and verify the run dir, then 21 copula settings (rho -1..1)
    + 11 same-wrong-guess settings (rho 0..1), R = 20 seeded draws each, val (weight choice) and test,
    in a fresh interpreter; wall time, best of 3                                              <= 10 s
(2) that interpreter never imported torch (nor open_clip / sentence_transformers)
(3) side by side in that process: the whole curve over the cost of its one independent setting (the
    rho = 0 point alone, `rhos=()`), i.e. what the other 31 settings add
Without --run-dir a synthetic run of realistic size (3,589 test faces x 5,426 texts, 3,000 val faces x
4,340 texts; benchmarks/fusion.py builds it) is written to a temporary folder. Results go to
benchmarks/results/dependence.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "dependence.json"
LIMIT_S = 10.0
REPEATS = 3
HEAVY = ("torch", "open_clip", "sentence_transformers")

# Runs in a fresh interpreter, so that the timing includes importing what the curve needs and the
# module check sees only what the curve imported.
_CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
t0 = time.perf_counter()
import emotion_fusion as ef
dep = ef.dependence_curve({run_dir!r}, draws={draws})
first = time.perf_counter() - t0
times = [first]
for _ in range({repeats} - 1):
    t = time.perf_counter(); ef.dependence_curve({run_dir!r}, draws={draws}); times.append(time.perf_counter() - t)
t = time.perf_counter(); ef.dependence_curve({run_dir!r}, draws={draws}, rhos=()); one = time.perf_counter() - t
rows = dep.results["rows"]
print(json.dumps({{"seconds": min(times), "first_call_s": first, "independent_only_s": one,
                  "settings": len(rows), "families": sorted({{r["family"] for r in rows}}),
                  "heavy_imported": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _synthetic_run(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("bench_fusion", REPO / "benchmarks" / "fusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._synthetic_run(root)


def measure(run_dir: Path, draws: int) -> dict:
    code = _CHILD.format(repo=str(REPO), run_dir=str(run_dir), draws=draws, repeats=REPEATS, heavy=HEAVY)
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        return {"status": "failed", "reason": (p.stderr.strip().splitlines() or ["?"])[-1]}
    out = json.loads(p.stdout)
    out["curve_over_independent_point"] = out["seconds"] / out["independent_only_s"]
    return {"status": "ok", **out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="an existing run directory (default: synthetic)")
    ap.add_argument("--draws", type=int, default=20, help="seeded draws per setting (default 20)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.run_dir or _synthetic_run(Path(tmp) / "run")
        res = measure(run_dir, a.draws)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
           "run_dir": str(a.run_dir) if a.run_dir else "synthetic (3000 val, 3589 test faces)", "draws": a.draws,
           "curve": res, "limit_s": LIMIT_S,
           "within_limit": res["status"] == "ok" and res["seconds"] <= LIMIT_S and not res["heavy_imported"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    if a.json:
        print(json.dumps(out))
        return 0
    if res["status"] != "ok":
        print(f"dependence curve: failed: {res['reason']}")
        return 1
    print(f"(1) whole curve, {res['settings']} settings x {a.draws} draws, val + test: {res['seconds']:.2f} s "
          f"(best of {REPEATS}; first call with imports {res['first_call_s']:.2f} s)   limit {LIMIT_S:.0f} s")
    print(f"(2) heavy modules imported: {res['heavy_imported'] or 'none'}")
    print(f"(3) whole curve / the independent point alone: {res['curve_over_independent_point']:.1f}x")
    print(f"written: {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
