"""Are the intervals of `stats.score_draws` calibrated for the number it reports? A simulation with known truth.

    python benchmarks/stats_calibration.py [--replicates K] [--boot B] [--out FILE] [--json]

The population: per class, a pool of faces and a pool of texts, 2x the real test sizes (FER2013 test
faces 467/56/496/895/607/653/415 and GoEmotions dev texts 555/61/72/1941/1592/266/459 in the canonical
class order), every item with its own difficulty in its own modality (how sharply its probabilities
point at its class: a gamma-distributed scale, so some items are easy and some hopeless). A test set is
n_c faces and m_c texts per class drawn with replacement from the pools: the real class sizes, so the
real text reuse (72 fear texts for 496 fear faces). The truth is the estimand over the population: per
class, the share of all its face x text pairs that each model labels k, times n_c (the fixed test class
mix); accuracy and macro-F1 from that confusion matrix. It is computed here by a plain chunked loop, not
by the package.

Two scenarios, each a null: the fusion weight is tuned (bisection on the population) so that fusion
equals the better branch (visual) exactly in population accuracy, or in population macro-F1, while
the two still disagree on many pairs. Per replicate the package scores the test set (`stats.all_pairs`:
the all-pairs estimate and B crossed two-way resamples, the code path of `score_draws`) and, for
comparison, one random pairing with the pair bootstrap (`metrics.evaluate_many`). Reported: coverage of the 95% intervals of the population
value for accuracy, macro-F1 and fusion - visual; the type-I error of the p-value (share below 0.05) for
the metric whose null holds; the real sd of the estimate against the claimed sd (width / 3.92). The
better branch is visual by construction (far stronger than text in both scenarios), so it is fixed here.
Numpy only; a few minutes on 2 cores. Results go to benchmarks/results/stats_calibration.json (the
committed record, which the README quotes) only with the default replicates and resamples; a trial with
other settings goes to --out, by default a file in the system's temporary folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from emotion_fusion.scoring import stats  # noqa: E402
from emotion_fusion.scoring.metrics import confusion_scores, evaluate_many  # noqa: E402

FACES = np.array([467, 56, 496, 895, 607, 653, 415])
TEXTS = np.array([555, 61, 72, 1941, 1592, 266, 459])
POP = 2                 # population pools: POP x the test sizes
VISUAL_SHARP, TEXT_SHARP = 1.6, 1.0
RESULTS = REPO / "benchmarks" / "results" / "stats_calibration.json"
REPLICATES, BOOT = 200, 500     # the settings of the committed RESULTS
QUANTITIES = ("visual", "text", "fusion", "fusion - visual")


def _pool(rng: np.random.Generator, sizes: np.ndarray):
    """Labels, per-item noise logits and per-item difficulty scales of one modality's population."""
    y = np.repeat(np.arange(7), POP * sizes)
    return y, rng.normal(size=(y.size, 7)), rng.gamma(2.0, 0.5, y.size)


def _probs(pool, sharp: float) -> np.ndarray:
    y, z, d = pool
    z = z.copy()
    z[np.arange(y.size), y] += sharp * d
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _truth(pv, yv, pt, yt, weight: float) -> dict:
    """Population accuracy and macro-F1 per model (and fusion - visual), class mix FACES: a plain loop."""
    conf = {m: np.zeros((7, 7)) for m in ("visual", "text", "fusion")}
    for c in range(7):
        a, b = pv[yv == c], pt[yt == c]
        conf["visual"][c] = np.bincount(a.argmax(1), minlength=7) / len(a)
        conf["text"][c] = np.bincount(b.argmax(1), minlength=7) / len(b)
        counts = np.zeros(7)
        for lo in range(0, len(a), 64):
            fused = weight * a[lo:lo + 64, None, :] + (1 - weight) * b[None, :, :]
            counts += np.bincount(fused.argmax(2).ravel(), minlength=7)
        conf["fusion"][c] = counts / (len(a) * len(b))
    out = {}
    for m, cm in conf.items():
        acc, f1 = confusion_scores((cm * FACES[:, None])[None])
        out[m] = (float(acc[0]), float(f1[0]))
    out["fusion - visual"] = tuple(f - v for f, v in zip(out["fusion"], out["visual"]))
    return out


def _tune(pv, yv, pt, yt, metric: int) -> tuple[float, dict]:
    """The fusion weight below 0.6 at which fusion equals visual in the population on `metric` (0
    accuracy, 1 macro-F1): text-heavy fusion is worse than visual here, fusion at 0.6 better."""
    lo, hi = 0.0, 0.6
    for _ in range(16):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _truth(pv, yv, pt, yt, mid)["fusion - visual"][metric] < 0 else (lo, mid)
    return (lo + hi) / 2, _truth(pv, yv, pt, yt, (lo + hi) / 2)


def _sample(rng, pv, yv, pt, yt) -> dict:
    f = np.concatenate([rng.choice(np.flatnonzero(yv == c), n) for c, n in enumerate(FACES)])
    t = np.concatenate([rng.choice(np.flatnonzero(yt == c), m) for c, m in enumerate(TEXTS)])
    return {"p_image": pv[f], "y_image": yv[f], "p_text_items": pt[t], "y_text": yt[t]}


def _replicate(test: dict, weight: float, boot: int, seed: int) -> dict:
    """Per quantity: the all-pairs estimate, its crossed interval and p-value; one pairing's pair bootstrap."""
    s = stats._check_split(test, "test")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    point, res = stats.all_pairs(s, {"visual": None, "text": None, "fusion": weight}, "linear", boot, rng)
    pairs = stats.draw_pairings(s["y"], s["yt"], seed, 1, 1)[0]
    fused = weight * s["pv"] + (1 - weight) * s["pt"][pairs]
    single = evaluate_many(s["y"], {"visual": s["pv"], "text": s["pt"][pairs], "fusion": fused},
                           n_boot=boot, seed=seed)
    out = {}
    for q in QUANTITIES:
        for k, metric in enumerate(("accuracy", "macro_f1")):
            if q == "fusion - visual":
                est, values = (point["fusion"][k] - point["visual"][k])[0], res["fusion"][k] - res["visual"][k]
                one = None
            else:
                est, values, one = point[q][k][0], res[q][k], single[q][f"{metric}_ci"]
            out[q, metric] = {"est": float(est), "ci": np.percentile(values, [2.5, 97.5]).tolist(),
                              "p": stats._p_two_sided(values) if q == "fusion - visual" else None, "pair_ci": one}
    return out


def _summarise(reps: list[dict], truth: dict, null_metric: str) -> dict:
    out = {}
    for q in QUANTITIES:
        for k, metric in enumerate(("accuracy", "macro_f1")):
            r = [x[q, metric] for x in reps]
            true = truth[q][k]
            ci = np.array([x["ci"] for x in r])
            est = np.array([x["est"] for x in r])
            row = {"truth": true, "coverage": float(np.mean((ci[:, 0] <= true) & (true <= ci[:, 1]))),
                   "real_sd_points": 100 * float(est.std(ddof=1)),
                   "claimed_sd_points": 100 * float(np.mean(ci[:, 1] - ci[:, 0]) / 3.92)}
            if r[0]["pair_ci"] is not None:
                pc = np.array([x["pair_ci"] for x in r])
                row["pair_bootstrap_coverage"] = float(np.mean((pc[:, 0] <= true) & (true <= pc[:, 1])))
                row["pair_bootstrap_claimed_sd_points"] = 100 * float(np.mean(pc[:, 1] - pc[:, 0]) / 3.92)
            if q == "fusion - visual" and metric == null_metric:
                row["type_I_error"] = float(np.mean([x["p"] < 0.05 for x in r]))
            out[f"{q} {metric}"] = row
    return out


def _out_path(a: argparse.Namespace) -> Path:
    """--out, else the committed record for the default settings, else a trial file outside the checkout; a
    trial aimed at the committed record is refused before any work (it would overwrite what README quotes)."""
    default = (a.replicates, a.boot) == (REPLICATES, BOOT)
    path = a.out or (RESULTS if default else Path(tempfile.gettempdir()) / f"stats_calibration.r{a.replicates}"
                     f".b{a.boot}.json")
    if not default and path.resolve() == RESULTS.resolve():
        raise SystemExit(f"error: {RESULTS} records the default run (--replicates {REPLICATES} --boot {BOOT}); "
                         "write a trial elsewhere with --out FILE")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=REPLICATES, help=f"test sets per scenario (default {REPLICATES})")
    ap.add_argument("--boot", type=int, default=BOOT, help=f"bootstrap resamples per test set (default {BOOT})")
    ap.add_argument("--out", type=Path, help="where to write the results (default: see the module docstring)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    out_path = _out_path(a)
    t0 = time.perf_counter()
    rng = np.random.default_rng(2026)
    face_pool, text_pool = _pool(rng, FACES), _pool(rng, TEXTS)
    pv, yv = _probs(face_pool, VISUAL_SHARP), face_pool[0]
    pt, yt = _probs(text_pool, TEXT_SHARP), text_pool[0]
    out = {"replicates_per_scenario": a.replicates, "n_boot": a.boot,
           "faces_per_class": FACES.tolist(), "texts_per_class": TEXTS.tolist(), "population": f"{POP}x",
           "scenarios": {}}
    for null_metric, k in (("accuracy", 0), ("macro_f1", 1)):
        weight, truth = _tune(pv, yv, pt, yt, k)
        reps = [_replicate(_sample(np.random.default_rng([k, i]), pv, yv, pt, yt), weight, a.boot, i)
                for i in range(a.replicates)]
        out["scenarios"][f"null on {null_metric}"] = {
            "fusion_weight": weight, "truth": {q: {"accuracy": v[0], "macro_f1": v[1]} for q, v in truth.items()},
            "results": _summarise(reps, truth, null_metric)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{a.replicates} test sets per scenario, {a.boot} resamples; coverage of 95% intervals of the "
          "population value; sd in points")
    for name, sc in out["scenarios"].items():
        print(f"\n{name} (population: fusion at w = {sc['fusion_weight']:.4f} equals visual)")
        print(f"{'quantity':<26}{'coverage':>9}{'type I':>8}{'real sd':>9}{'claimed':>9}"
              f"{'pair-boot cov':>15}{'pair sd':>9}")
        for q, r in sc["results"].items():
            ti = f"{r['type_I_error']:.3f}" if "type_I_error" in r else "-"
            pc = f"{r['pair_bootstrap_coverage']:.3f}" if "pair_bootstrap_coverage" in r else "-"
            ps = f"{r['pair_bootstrap_claimed_sd_points']:.2f}" if "pair_bootstrap_coverage" in r else "-"
            print(f"{q:<26}{r['coverage']:>9.3f}{ti:>8}{r['real_sd_points']:>9.2f}{r['claimed_sd_points']:>9.2f}"
                  f"{pc:>15}{ps:>9}")
    print(f"\nwritten: {out_path} ({out['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
