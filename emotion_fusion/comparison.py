"""`compare_fusion`: every registered fusion method fitted on a run's validation split and scored on its
test split from the cache (outputs/*.npz and, for methods on embeddings, branches/*.npz): no model, no
torch. The engine is scoring/compare.py; the methods are scoring/registry.py's entries."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion_fusion.errors import InputError
from emotion_fusion.parts import load_embeddings
from emotion_fusion.report import _setting
from emotion_fusion.runs import CONFIG, read_run, rerun
from emotion_fusion.tables import Table, _decimals, interval, number, pvalue, setting, table

METRIC_WORDS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def _items(data: dict, emb: dict | None, split: str, run_dir: Path):
    from emotion_fusion.scoring.registry import Items

    d = data[split]
    if emb is None:
        return Items(d["p_image"], d["y_image"], d["p_text_items"], d["y_text"])
    for b, key in (("image", "y_image"), ("text", "y_text")):
        if not np.array_equal(emb[f"y_{b}"], d[key]) or len(emb[b]) != len(d[key]):
            raise InputError(f"{run_dir}: the cached {b} embeddings of {split!r} do not line up with "
                             f"outputs/{split}.npz; {rerun(run_dir)}")
    return Items(d["p_image"], d["y_image"], d["p_text_items"], d["y_text"], emb["image"], emb["text"])


def compare_fusion(run_dir, methods=None, *, weight: float | None = None, n_boot: int | None = None,
                   draws: int | None = None, dependence: bool = True, progress: bool = True) -> "FusionComparison":
    """Fit each fusion method (`methods`: names, default all registered) on RUN_DIR's validation split and
    score it on test with the headline's estimand and crossed two-way intervals (shared resamples, paired
    differences, Holm-adjusted p), plus its gain under the two dependence families. `n_boot` and `draws`
    default to config.json's n_boot and pairing_draws; the seed is the run's. `weight`: linear and loglinear
    at that visual weight instead of the one validation chooses (re-scoring at a new weight)."""
    from emotion_fusion.scoring.compare import compare
    from emotion_fusion.scoring.catalog import get_methods

    run_dir = Path(run_dir)
    chosen = get_methods(methods)
    cfg, info, data = read_run(run_dir)
    if cfg.get("protocol") == "seed":
        raise InputError(f"{run_dir}: protocol=seed builds its own pairs (CLIP matching), but the comparison "
                         "scores every same-class face x text pair; compare a label-paired run (full, offline)")
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
    seed = _setting(cfg, "seed", run_dir, is_int)
    n_boot = _setting(cfg, "n_boot", run_dir, is_int) if n_boot is None else n_boot
    draws = _setting(cfg, "pairing_draws", run_dir, lambda v: is_int(v) and v > 0) if draws is None else draws
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise InputError(f"draws = {draws!r}: use a positive number of validation pairings (config: {run_dir / CONFIG})")
    embed = any("embeddings" in m.needs for m in chosen)
    emb = {s: load_embeddings(run_dir, s, verified=True) for s in ("val", "test")} if embed else {"val": None, "test": None}
    val, test = (_items(data, emb[s], s, run_dir) for s in ("val", "test"))
    fixed = None
    if weight is not None:
        from emotion_fusion.scoring.fusion import check_weight
        fixed = {n: {"weight": check_weight(weight)} for n in ("linear", "loglinear")}
    res = compare(val, test, chosen, seed=seed, B=n_boot, R=draws, dependence=dependence, fixed=fixed,
                  progress=progress)
    return FusionComparison({"title": info.get("title") or "Late fusion results", **res})


def _gain(d: dict, resamples: int) -> tuple[str, str]:
    p = d.get("p_holm", d["p_value"])
    if d["p_value"] <= 2 / (resamples + 1) * (1 + 1e-9) and p < 1:   # adjusted from the bootstrap's floor: a bound
        return interval(d["mean_diff"], d["ci"], signed=True), f"≤ {_decimals(p, up=True)}"
    return interval(d["mean_diff"], d["ci"], signed=True), pvalue(p, resamples=resamples)


class FusionComparison:
    """`.results` (JSON-able), `.table()`, `.dependence_table()`, `.plot()`, `.summary()`, `.text()`."""

    def __init__(self, results: dict):
        self.results = results

    def table(self, metric: str = "macro_f1") -> Table:
        """One row per method: both scores with 95% intervals, the difference from the better branch and
        from loglinear (points, interval, Holm-adjusted p), the settings chosen, the fit time."""
        res, m = self.results, METRIC_WORDS[metric]
        recs = [{"model": f"{b['model']} branch", "accuracy %": interval(b["accuracy"], b["accuracy_ci"]),
                 f"macro-F1 %": interval(b["macro_f1"], b["macro_f1_ci"])} for b in res["branches"]]
        for r in res["methods"]:
            gain, p = _gain(r["vs_better_branch"][metric], res["n_boot"])
            rec = {"model": r["method"], "accuracy %": interval(r["accuracy"], r["accuracy_ci"]),
                   "macro-F1 %": interval(r["macro_f1"], r["macro_f1_ci"]),
                   f"{m} - better branch (points)": gain, "p (Holm)": p}
            if r["vs_reference"] is not None:
                ref, pr = _gain(r["vs_reference"][metric], res["n_boot"])
                rec.update({f"{m} - {res['reference']} (points)": ref, "p (Holm) ": pr})
            rec.update({"settings": ", ".join(f"{k}={setting(v)}" for k, v in {**r["settings"], **(
                {"w": r["params"]["weight"]} if "weight" in r["params"] else {})}.items()) or "-",
                "fit s": number(r["fit_s"], 2)})
            recs.append(rec)
        title = (f"{res['title']} — fusion methods on test: the all-pairs estimand, 95% {res['scheme']} intervals "
                 f"({res['n_boot']:,} shared resamples), better branch = {res['better_branch']} (on validation)")
        return table(recs, title, note=f"Every method fitted on validation only; p: {res['holm']}.", index="model")

    def dependence_table(self, metric: str = "macro_f1", rhos=None) -> Table:
        """Per method, the gain over the better branch (points, mean ± sd over the draws) at each family and
        rho, fitted on independent pairs and re-fitted on pairs of the same dependence; `rhos` keeps those."""
        dep = self.results["dependence"]
        recs = {}
        for d in dep["rows"]:
            if rhos is not None and d["rho"] not in [float(r) for r in rhos]:
                continue
            col = f"{d['family']} rho={d['rho']:g}" + ("" if d["rho"] == 0 else (
                ", fitted indep." if d["fitted_on"] == "independent" else ", re-fitted"))
            recs.setdefault(d["method"], {"method": d["method"]})[col] = (
                f"{100 * d[f'gain_{metric}']:+.1f} ± {100 * d[f'gain_{metric}_sd']:.1f}")
        return table(list(recs.values()), f"Fusion methods under dependence: {METRIC_WORDS[metric]} gain over the "
                     f"better branch ({dep['better_branch']}), test pairing draws, points", index="method",
                     note=dep["spread"])

    def plot(self, metric: str = "macro_f1"):
        from emotion_fusion.scoring.methodplots import plot_methods
        return plot_methods(self.results, metric)

    def summary(self) -> str:
        """Which method won on macro-F1, by how much, with what interval, and what dependence did."""
        res = self.results
        rows = sorted(res["methods"], key=lambda r: -r["vs_better_branch"]["macro_f1"]["mean_diff"])
        top = rows[0]
        g, p = _gain(top["vs_better_branch"]["macro_f1"], res["n_boot"])
        lines = [f"Highest test macro-F1: {top['method']} ({100 * top['macro_f1']:.1f}%), {g} points over the "
                 f"better branch ({res['better_branch']}), Holm p {p}."]
        ref = res["reference"]
        if ref:
            better = [r["method"] for r in res["methods"] if r["vs_reference"] and
                      r["vs_reference"]["macro_f1"]["mean_diff"] > 0 and r["vs_reference"]["macro_f1"]["p_holm"] < 0.05]
            worse = [r["method"] for r in res["methods"] if r["vs_reference"] and
                     r["vs_reference"]["macro_f1"]["mean_diff"] < 0 and r["vs_reference"]["macro_f1"]["p_holm"] < 0.05]
            lines.append(f"Against {ref} at its validation weight (Holm-adjusted p < 0.05): better: "
                         f"{', '.join(better) or 'none'}; worse: {', '.join(worse) or 'none'}.")
        dep = res.get("dependence")
        if dep:
            for fam in dep["families"]:
                at = {(d["method"], d["fitted_on"]): d["gain_macro_f1"] for d in dep["rows"]
                      if d["family"] == fam and d["rho"] == 1.0}
                best = max((k for k in at if k[1] == "same dependence"), key=at.get, default=None)
                pp = at.get(("product_prior", "independent"))
                lines.append(f"{fam} dependence at rho = 1: " + (f"product_prior {100 * pp:+.1f}; " if pp is not None else "")
                             + (f"best re-fitted method {best[0]} {100 * at[best]:+.1f} points (mean over "
                                f"{dep['draws']} draws)." if best else "no re-fitted method."))
        return "\n".join(lines)

    def text(self) -> str:
        parts = [self.table().to_text()]
        if "dependence" in self.results:
            parts.append(self.dependence_table().to_text())
        return "\n\n".join(parts + [self.summary()])

    def __repr__(self) -> str:
        return self.text()
