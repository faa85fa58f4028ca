"""Fusion methods compared by the headline's estimand and interval, and under built dependence.

Every method (registry.py) is fitted on validation only: on seeded validation pairings (same-class face x
text pairs redrawn, `stats.draw_pairings`), with its settings, where it has several, chosen by K-fold
cross-fitting inside validation: faces and texts of each class are dealt into K folds, a setting is fitted
on the pairs of the other folds' faces and texts and checked on every same-class pair of this fold's faces
and texts (so no face or text is in both), and the best mean check macro-F1 wins (ties: the first listed,
the strongest penalty). Then each is scored on test like the headline: the all-pairs estimand (every
same-class face x text pair, test class mix) with B crossed two-way resamples shared by all methods and
both branches (the headline's own resamples), so every difference is paired; p-values of "no difference"
from those resamples, Holm-adjusted across methods per comparison and metric.

Dependence rows: the headline's pairing draws re-dealt by `dependence`'s two families at rho = 0, 0.5, 1;
each method's gain over the better branch on those test draws (mean and sd over the draws), (a) as fitted
on independent validation pairs, (b) re-fitted on validation draws dealt the same way (settings kept).
Pure numpy/scipy (scikit-learn and statsmodels inside the functions that use them).
"""
from __future__ import annotations

import time

import numpy as np

from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.progress import bar_iter

from .bootstrap import class_blocks, crossed_counts
from .dependence import FAMILIES, _dealer, _dependence
from .metrics import CI, N_BOOT, _check_ci, _interval
from .metrics import confusion_scores as _scores
from .registry import Fitted, FusionMethod, Items
from .stats import R_DRAWS, _draw_scores, _p_two_sided, crossed_resamples, draw_pairings, unit_weights

FOLDS = 3
DEP_RHOS = (0.0, 0.5, 1.0)
DEP_DRAWS = 20
REFERENCE = "loglinear"     # the rule every method is also compared with, at its validation weight
CELLS = 4_000_000           # pair x feature values per block chunk when scoring a face x text grid
METRICS = ("accuracy", "macro_f1")
HOLM = "Holm's step-down correction across the methods, per comparison and metric"


def _grid_labels(fitted: Fitted, items: Items, blocks: list) -> list[np.ndarray]:
    """Per class block, the fused label of each of its face x text pairs, (n_c, m_c)."""
    fa, tb = fitted.face(items), fitted.text(items)
    out = []
    for _, f, t in blocks:
        a, b = fa[f], tb[t]
        rows = max(1, CELLS // (t.size * max(1, int(np.prod(a.shape[1:])))))
        lab = np.empty((f.size, t.size), dtype=np.int64)
        for lo in range(0, f.size, rows):
            lab[lo:lo + rows] = fitted.combine(a[lo:lo + rows, None], b[None]).argmax(-1)
        out.append(lab)
    return out


def _pair_labels(fitted: Fitted, items: Items, pairings: np.ndarray) -> np.ndarray:
    """(R, n) fused labels of face i with text pairings[r, i]."""
    fa, tb = fitted.face(items), fitted.text(items)
    return np.stack([fitted.combine(fa, tb[p]).argmax(-1) for p in pairings])


def _branch_labels(items: Items, blocks: list) -> dict:
    av, at = items.pv.argmax(1), items.pt.argmax(1)
    return {"visual": [av[f][:, None] for _, f, _ in blocks], "text": [at[t][None] for *_, t in blocks]}


def _check_blocks(items: Items, name: str) -> list:
    blocks = class_blocks(items.yv, items.yt)
    for c, f, t in blocks:
        if t.size == 0:
            raise InputError(f"{name}: class {CLASSES[c]!r} has {f.size} faces but no texts to pair with; "
                             "add texts of that class or drop those faces")
    return blocks


def _all_pairs_f1(fitted: Fitted, items: Items) -> float:
    blocks = _check_blocks(items, "cross-fitting check fold")
    return float(_scores(crossed_counts(blocks, _grid_labels(fitted, items, blocks), *unit_weights(blocks)))[1][0])


def _fold_ids(y: np.ndarray, k: int, rng: np.random.Generator, what: str) -> np.ndarray:
    out = np.empty(y.size, dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size < k:
            raise InputError(f"validation has {idx.size} {what} of class {CLASSES[c]!r}, fewer than the {k} "
                             "cross-fitting folds; use a larger validation split")
        out[rng.permutation(idx)] = np.arange(idx.size) % k
    return out


def _n_draws(method: FusionMethod, available: int) -> int:
    return available if method.fit_draws is None else min(method.fit_draws, available)


def cross_fit(method: FusionMethod, val: Items, seed: int, folds: int = FOLDS, draws: int = R_DRAWS) -> dict:
    """Choose `method`'s setting on validation by cross-fitting (module docstring): {"chosen", "scores"}."""
    if len(method.settings) == 1:
        return {"chosen": method.settings[0], "scores": None}
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    ff, tf = _fold_ids(val.yv, folds, rng, "faces"), _fold_ids(val.yt, folds, rng, "texts")
    parts = [(val.subset(np.flatnonzero(ff != k), np.flatnonzero(tf != k)),
              val.subset(np.flatnonzero(ff == k), np.flatnonzero(tf == k))) for k in range(folds)]
    n = method.fit_draws or draws
    fold_draws = [draw_pairings(fit.yv, fit.yt, seed, n, stream=100 + k) for k, (fit, _) in enumerate(parts)]
    scores = [float(np.mean([_all_pairs_f1(method.fit(fit, d, s, seed), check)
                             for (fit, check), d in zip(parts, fold_draws)])) for s in method.settings]
    return {"chosen": method.settings[int(np.argmax(scores))], "scores": scores}


def _diff(boot: dict, point: dict, a: str, b: str, ci: float) -> dict:
    out = {}
    for k, name in enumerate(METRICS):
        d = boot[a][k] - boot[b][k]
        out[name] = {"mean_diff": float(point[a][k][0] - point[b][k][0]), "ci": _interval(d, ci),
                     "p_value": _p_two_sided(d)}
    return out


def _holm(rows: list[dict], key: str) -> None:
    from statsmodels.stats.multitest import multipletests

    for name in METRICS:
        have = [r for r in rows if r.get(key)]
        if have:
            adj = multipletests([r[key][name]["p_value"] for r in have], method="holm")[1]
            for r, p in zip(have, adj):
                r[key][name]["p_holm"] = float(p)


def compare(val: Items, test: Items, methods: list[FusionMethod], *, seed: int = 0, B: int = N_BOOT,
            R: int = R_DRAWS, ci: float = CI, folds: int = FOLDS, dependence: bool = True,
            dep_draws: int = DEP_DRAWS, reference: str = REFERENCE, fixed: dict | None = None,
            progress: bool = True) -> dict:
    """Fit every method on validation and score it on test (module docstring); each method's difference
    from the better branch and from `reference` (a method among them; default loglinear). `fixed` {name:
    setting} fits those methods with that setting, without cross-fitting (e.g. {"linear": {"weight": 0.3}}).
    JSON-able."""
    _check_ci(B, ci)
    if not B:
        raise InputError("the comparison reports intervals and p-values: use B >= 1 resamples (1000 by default)")
    vblocks, tblocks = _check_blocks(val, "val"), _check_blocks(test, "test")
    vd = draw_pairings(val.yv, val.yt, seed, R, 0)
    vbr = {m: _scores(crossed_counts(vblocks, lab, *unit_weights(vblocks)))[1][0]
           for m, lab in _branch_labels(val, vblocks).items()}
    better = "text" if vbr["text"] > vbr["visual"] else "visual"
    fits, rows, t_fit = {}, [], time.perf_counter()
    for m in bar_iter(methods, "fit methods", enabled=progress):
        t0 = time.perf_counter()
        chosen = ({"chosen": dict(fixed[m.name]), "scores": None} if fixed and m.name in fixed
                  else cross_fit(m, val, seed, folds, R))
        fits[m.name] = m.fit(val, vd[:_n_draws(m, R)], chosen["chosen"], seed)
        rows.append({"method": m.name, "label": m.label, "needs": list(m.needs), "fitted_on": m.fitted_on,
                     "settings": chosen["chosen"], "cross_fit_macro_f1": chosen["scores"],
                     "settings_tried": list(m.settings), "params": fits[m.name].params,
                     "fit_draws": _n_draws(m, R), "fit_s": round(time.perf_counter() - t0, 3)})

    t_score = time.perf_counter()
    labels = {**_branch_labels(test, tblocks), **{n: _grid_labels(f, test, tblocks) for n, f in fits.items()}}
    point = {n: _scores(crossed_counts(tblocks, lab, *unit_weights(tblocks))) for n, lab in labels.items()}
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))   # score_draws' stream: same resamples
    wf, wt = crossed_resamples(tblocks, test.yv.size, test.yt.size, B, rng)
    boot = {n: _scores(crossed_counts(tblocks, lab, wf, wt)) for n, lab in labels.items()}

    def scored(name: str) -> dict:
        return {k: v for i, m in enumerate(METRICS) for k, v in
                ((m, float(point[name][i][0])), (f"{m}_ci", _interval(boot[name][i], ci)))}
    for r in rows:
        r.update(scored(r["method"]))
        r["vs_better_branch"] = _diff(boot, point, r["method"], better, ci)
        r["vs_reference"] = None if r["method"] == reference or reference not in fits else _diff(
            boot, point, r["method"], reference, ci)
    _holm(rows, "vs_better_branch")
    _holm(rows, "vs_reference")
    out = {"estimand": "all same-class face x text pairs, test class mix", "scheme": "crossed two-way",
           "n_boot": int(B), "ci": ci, "seed": int(seed), "draws": int(R), "folds": int(folds),
           "better_branch": better, "val_macro_f1": {k: float(v) for k, v in vbr.items()},
           "reference": reference if reference in fits else None, "holm": HOLM,
           "branches": [{"model": b, **scored(b)} for b in ("visual", "text")], "methods": rows,
           "n_test": {"faces": int(test.yv.size), "texts": int(test.yt.size)}}
    t_dep = time.perf_counter()
    if dependence:
        out["dependence"] = dependence_rows(val, test, methods, fits, rows, better, seed, dep_draws, progress)
    out["timings"] = {"fit_s": round(t_score - t_fit, 2), "score_s": round(t_dep - t_score, 2),
                      "dependence_s": round(time.perf_counter() - t_dep, 2)}
    return out


def dependence_rows(val: Items, test: Items, methods: list[FusionMethod], fits: dict, rows: list[dict], better: str,
                    seed: int, draws: int = DEP_DRAWS, progress: bool = True) -> dict:
    """Per family, rho and method: the gain over the better branch on the test draws dealt at rho, as
    fitted on independent pairs and re-fitted on validation draws dealt the same way."""
    vs, ts = val.split_dict(), test.split_dict()
    vd, td = draw_pairings(val.yv, val.yt, seed, draws, 0), draw_pairings(test.yv, test.yt, seed, draws, 1)
    chosen = {r["method"]: r["settings"] for r in rows}
    vpred, tpred = test.pv.argmax(1), test.pt.argmax(1)
    out = []
    for family in bar_iter(list(FAMILIES), "dependence", enabled=progress):
        deal = _dealer(family, vs, ts, vd, td, seed)
        for rho in DEP_RHOS:
            vp, tp = (vd, td) if rho == 0 else deal(rho)
            base = {"visual": _draw_scores(test.yv, np.broadcast_to(vpred, tp.shape)),
                    "text": _draw_scores(test.yv, tpred[tp])}[better]
            dep = _dependence(test.yv, vpred, tpred[tp])
            for m in methods:
                for fit in ("independent", "same dependence"):
                    if fit == "same dependence" and rho == 0:
                        continue   # rho = 0 is the independent fit itself
                    f = fits[m.name] if fit == "independent" else m.fit(val, vp[:_n_draws(m, draws)], chosen[m.name], seed)
                    acc, f1 = _draw_scores(test.yv, _pair_labels(f, test, tp))
                    out.append({"family": family, "rho": rho, "method": m.name, "fitted_on": fit,
                                "phi_within": float(np.nanmean(dep["phi_within"])),
                                **{f"gain_{k}": float((s - base[i]).mean()) for i, (k, s) in enumerate(zip(METRICS, (acc, f1)))},
                                **{f"gain_{k}_sd": float((s - base[i]).std()) for i, (k, s) in enumerate(zip(METRICS, (acc, f1)))}})
    return {"families": FAMILIES, "rhos": list(DEP_RHOS), "draws": int(draws), "better_branch": better,
            "spread": "± is the sd over the draws: how much the pairing moves a value, not a sampling interval",
            "rows": out}
