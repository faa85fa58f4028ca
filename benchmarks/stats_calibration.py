"""Do the intervals of `stats.score_draws` have the width they claim? A simulation with known truth.

    python benchmarks/stats_calibration.py [--datasets K] [--json]

K times, a fresh sample of faces and texts is drawn from one fixed generative model (the real split
sizes and class mix of benchmarks/fusion.py: 496 fear faces share 72 fear texts; each text is right or
wrong for every face it is paired with), and scored with score_draws. The spread of the K estimates is
the true sampling sd: of the mean over R draws ("true sd") and of one draw ("1 draw": new sample and
new pairing). The mean interval width / (2 x 1.96) is what each method claims; coverage counts how
often its 95% interval holds the population value (the mean of the K mean-over-draws estimates).
Methods: the text-cluster bootstrap over random draws (default; it should match "1 draw", a mild
overstatement for the mean), the two-way product weights (face x text multiplicity), and the old
single-draw pair bootstrap. About 1-2 min for K = 100 on 2 cores.
Results go to benchmarks/results/stats_calibration.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fusion import _per_item  # noqa: E402

from emotion_fusion.scoring.stats import MODELS, score_draws  # noqa: E402

R, B = 50, 500
RESULTS = REPO / "benchmarks" / "results" / "stats_calibration.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=100, help="simulated samples (default 100)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    est = {m: {"mean": [], "one_draw": []} for m in MODELS}
    ci = {m: {"text_cluster": [], "two_way": [], "single_draw_pairs": []} for m in MODELS}
    for k in range(a.datasets):
        rng = np.random.default_rng(1000 + k)
        val, test = _per_item("val", rng), _per_item("test", rng)
        for scheme in ("text_cluster", "two_way"):
            res = score_draws(val, test, weight=0.6, R=R, B=B, seed=k, scheme=scheme)
            for row in res["rows"]:
                ci[row["model"]][scheme].append(row["macro_f1_ci"])
        for row, one in zip(res["rows"], res["single_draw"]["rows"]):
            est[row["model"]]["mean"].append(row["macro_f1"])
            est[row["model"]]["one_draw"].append(res["per_draw"][row["model"]]["macro_f1"][0])
            ci[row["model"]]["single_draw_pairs"].append(one["macro_f1_ci"])
    out = {"datasets": a.datasets, "draws": R, "n_boot": B, "metric": "macro_f1 (percentage points)"}
    for m in MODELS:
        truth = float(np.mean(est[m]["mean"]))
        row = {"true_sd_mean_over_draws": 100 * float(np.std(est[m]["mean"], ddof=1)),
               "true_sd_one_draw": 100 * float(np.std(est[m]["one_draw"], ddof=1))}
        for method, cis in ci[m].items():
            c = np.asarray(cis)
            row[f"{method}_claimed_sd"] = 100 * float(np.mean(c[:, 1] - c[:, 0]) / (2 * 1.96))
            row[f"{method}_coverage"] = float(np.mean((c[:, 0] <= truth) & (truth <= c[:, 1])))
        out[m] = {k: round(v, 3) for k, v in row.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{a.datasets} simulated samples, {R} draws, {B} resamples; macro-F1 sd in points, coverage of 95%")
    print(f"{'model':<17}{'true sd':>8}{'1 draw':>8}   " + "".join(f"{h:>22}" for h in ci[MODELS[0]]))
    for m in MODELS:
        r = out[m]
        cells = "".join(f"{r[f'{h}_claimed_sd']:>12.2f} ({r[f'{h}_coverage']:.2f})" for h in ci[m])
        print(f"{m:<17}{r['true_sd_mean_over_draws']:>8.2f}{r['true_sd_one_draw']:>8.2f}   {cells}")
    print(f"written: {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
