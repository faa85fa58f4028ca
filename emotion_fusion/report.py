"""Scoring a run from its cached outputs, and the results table (results.json, text, DataFrame).

Imports numpy only (pandas inside `results_table`): the `fuse` CLI must not pay for torch, scikit-learn
or statsmodels.
"""
from __future__ import annotations

from pathlib import Path

from emotion_fusion.errors import InputError
from emotion_fusion.runs import CONFIG, INFO, RESULTS, read_run, rerun, write_json
from emotion_fusion.scoring.fusion import check_probs, check_weight, fused_labels, sweep
from emotion_fusion.scoring.metrics import evaluate_many, mcnemar

MODEL_NAMES = {"visual": "Visual only", "text": "Text only", "fusion": "Fusion",
               "fusion_best_val": "Fusion (best val weight)"}
SCORED = ("test", "val")   # the row order of the table: test first


def _setting(cfg: dict, name: str, run_dir: Path, check=None):
    """A setting from config.json, checked, or a one-line error naming the file and the value."""
    if name not in cfg:
        raise InputError(f"{run_dir / CONFIG} has no {name!r}; {rerun(run_dir)}")
    value = cfg[name]
    if check is not None and not check(value):
        raise InputError(f"{run_dir / CONFIG}: {name} = {value!r} is not valid; {rerun(run_dir)}")
    return value


def score_run(run_dir, weight: float | None = None, rule: str | None = None, n_boot: int | None = None,
              seed: int | None = None, draws: int = 0) -> dict:
    """Score visual, text, fusion at `weight` and fusion at the best validation weight, from the cache.

    Missing arguments come from config.json (`fusion_weight`, `fusion_rule`, `seed`, `n_boot`). All
    models on a split share the same bootstrap resamples (paired CIs); `n_boot=0` skips the CIs. Returns
    a JSON-able dict with `rows` (the default pairing of outputs/*.npz), `best_weight`, `mcnemar` (fusion
    vs each branch on test; b counts pairs only fusion gets right), `sweep` and `title` (from run_info.json,
    so a RANDOM-INIT warning survives). With `draws` > 0 also `draws`: the headline, `stats.score_draws`
    (the all-pairs estimand with crossed two-way intervals, fusion minus the better branch, and that many
    seeded re-pairings beside it). The weight is checked once here; the fused labels reuse it.
    """
    run_dir = Path(run_dir)
    cfg, info, data = read_run(run_dir)
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
    weight = check_weight(_setting(cfg, "fusion_weight", run_dir) if weight is None else weight)
    rule = _setting(cfg, "fusion_rule", run_dir, lambda v: v in ("linear", "loglinear")) if rule is None else rule
    seed = _setting(cfg, "seed", run_dir, is_int) if seed is None else seed
    n_boot = _setting(cfg, "n_boot", run_dir, is_int) if n_boot is None else n_boot
    title = info.get("title")
    if not isinstance(title, str) or not title:
        raise InputError(f"{run_dir / INFO} has no title; {rerun(run_dir)}")
    # Ties in the sweep go to the default weight, not to `weight`: the best validation weight must not
    # depend on which weight the user asked about.
    sw = sweep(data["val"], data["test"], rule=rule, n_boot=0)
    best = sw["best_weight"]
    rows, preds = [], {}
    for split in SCORED:
        d = data[split]
        pv, pt = check_probs(d["p_visual"], f"{split} p_visual"), check_probs(d["p_text"], f"{split} p_text")
        fused = fused_labels(pv, pt, [weight, best], rule)
        preds[split] = {"visual": pv.argmax(axis=1), "text": pt.argmax(axis=1), "fusion": fused[0],
                        "fusion_best_val": fused[1]}
        for model, score in evaluate_many(d["y"], preds[split], n_boot=n_boot, seed=seed).items():
            row = {"model": model, "split": split}
            if model.startswith("fusion"):
                row["weight"] = float(weight if model == "fusion" else best)
            rows.append({**row, **score})
    at_best = next(r for r in rows if r["split"] == "test" and r["model"] == "fusion_best_val")
    sw["test_at_best"] = {k: v for k, v in at_best.items() if k not in ("model", "split", "weight")}
    y, p = data["test"]["y"], preds["test"]
    tests = [{"model_a": "fusion", "model_b": b, "weight": weight, **mcnemar(y, p["fusion"], p[b])}
             for b in ("visual", "text")]
    out = {"title": title, "rule": rule, "weight": weight, "best_weight": best, "seed": seed,
           "n_boot": n_boot, "rows": rows, "mcnemar": tests, "sweep": sw}
    if draws:
        from emotion_fusion.scoring.stats import score_draws
        items = {s: {k: data[s][k] for k in ("p_image", "y_image", "p_text_items", "y_text", "pairs")} for s in data}
        # the seed protocol builds its pairs (CLIP matching): its headline scores those, not random re-pairings
        pairing = "fixed" if cfg.get("protocol") == "seed" else "random"
        out["draws"] = score_draws(items["val"], items["test"], weight=weight, rule=rule, R=draws,
                                   B=max(n_boot, 100), seed=seed, pairing=pairing)
    return out


def write_results(run_dir, results: dict) -> Path:
    """Write RUN_DIR/results.json: derived from the cache, rewritten by every `run` and `evaluate` (fuse and
    sweep only print; they never read it)."""
    return write_json(Path(run_dir) / RESULTS, results)


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
    """Plain-text results: the all-pairs headline (when the draws were scored), then the default pairing's
    table (title, one line per row, best weight, McNemar); no pandas needed."""
    lines = [results_title(results)]
    if results.get("draws"):
        again = ("The same pairs with validation, plain pair bootstrap (not stratified by class):"
                 if results["draws"].get("pairing") == "fixed" else "The default pairing alone (outputs/*.npz), pair bootstrap:")
        lines += [format_draws(results["draws"]), "", again]
    lines.append(f"{'split':<6}{'model':<38}{'accuracy %':<22}{'macro-F1 %':<22}n")
    for r in results["rows"]:
        lines.append(f"{r['split']:<6}{_model_label(r):<38}{_fmt(r['accuracy'], r.get('accuracy_ci')):<22}"
                     f"{_fmt(r['macro_f1'], r.get('macro_f1_ci')):<22}{r['n']}")
    if "best_weight" in results:
        lines.append(f"best validation weight: {results['best_weight']:.2f} (by validation macro-F1)")
    for mc in results.get("mcnemar") or []:
        lines.append(f"McNemar, fusion vs {mc['model_b']} on test pairs: b = {mc['b']}, c = {mc['c']}, "
                     f"p = {mc['pvalue']:.3g} ({mc['method']})")
    return "\n".join(lines)


class ResultsTable:
    """The results as a DataFrame (`.df`) that shows its title in Jupyter (a DataFrame's attrs do not)."""

    def __init__(self, df, title: str):
        self.df, self.title = df, title

    def _repr_html_(self) -> str:
        import html
        return f"<h4>{html.escape(self.title)}</h4>" + self.df.to_html()

    def __repr__(self) -> str:
        return f"{self.title}\n{self.df.to_string()}"


def results_table(results: dict, which: str = "headline") -> ResultsTable:
    """Accuracy and macro-F1 in % with 95% intervals ("66.7 [65.1, 68.2]") under the run's title.

    `which="headline"`: the test all-pairs estimand with crossed two-way intervals, beside the
    default pairing's pair-bootstrap interval (when the draws were scored; else as "single");
    `which="single"`: the default pairing's rows (test and validation), pair bootstrap.
    """
    import pandas as pd

    draws = results.get("draws")
    if which == "headline" and draws:
        single = {r["model"]: r for r in draws["single_draw"]["rows"]}
        recs = [{"model": _model_label(r),
                 "accuracy": _fmt(r["accuracy"], r.get("accuracy_ci")),
                 "macro-F1": _fmt(r["macro_f1"], r.get("macro_f1_ci")),
                 "macro-F1, one draw, pair bootstrap": _fmt(single[r["model"]]["macro_f1"],
                                                           single[r["model"]]["macro_f1_ci"]),
                 "n faces": r["n"]} for r in draws["rows"]]
        how = f"{draws.get('scheme', 'crossed two-way')} bootstrap"
        title = f"{results_title(results)} — test, {pairing_words(draws)}, 95% intervals: {how}"
        return ResultsTable(pd.DataFrame.from_records(recs).set_index("model"), title)
    recs = [{"split": r["split"], "model": _model_label(r), "accuracy": _fmt(r["accuracy"], r.get("accuracy_ci")),
             "macro-F1": _fmt(r["macro_f1"], r.get("macro_f1_ci")), "n": r["n"]} for r in results["rows"]]
    df = pd.DataFrame.from_records(recs).set_index(["split", "model"])
    return ResultsTable(df, f"{results_title(results)} — the default pairing, pair bootstrap")


def comparison_table(results: dict):
    """Fusion minus the better single branch (chosen on validation): the all-pairs difference in points,
    95% interval and bootstrap p-value, at the fusion weight and at the best validation weight."""
    import pandas as pd

    rows = []
    for m, c in results["draws"]["comparison"].items():
        for k in ("accuracy", "macro_f1"):
            rows.append({"fusion": MODEL_NAMES[m] + (f", w = {c['weight']:.2f}" if c.get("weight") is not None else ""),
                         "metric": k, "minus better branch (points)": round(100 * c[k]["mean_diff"], 1),
                         "95% interval": f"[{100 * c[k]['ci'][0]:+.1f}, {100 * c[k]['ci'][1]:+.1f}]",
                         "p": c[k]["p_value"], "better branch (on validation)": c["better_branch"]})
    return pd.DataFrame(rows).set_index(["fusion", "metric"])


def text_reuse_table(results: dict):
    """Distinct texts used per class and split, and how often each is reused, in the default pairing."""
    import pandas as pd

    return pd.concat({s: pd.DataFrame(per).T for s, per in results["draws"]["text_reuse"].items()},
                     names=["split", "class"])


def as_table(obj, name: str | None = None):
    """A dict (or a list of dicts) from a run - timings, sizes, head scores - as a DataFrame to display."""
    import pandas as pd

    if isinstance(obj, list):
        return pd.DataFrame.from_records(obj)
    if all(isinstance(v, dict) for v in obj.values()):
        return pd.DataFrame(obj)
    return pd.Series(obj, name=name).to_frame()


# ---------------------------------------------------------------- the all-pairs headline and the pairing draws, in words
def _pct(x: float, ci=None) -> str:
    return f"{100 * x:5.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def pairing_words(res: dict) -> str:
    """What the headline's means are over, in words."""
    if res.get("pairing") == "fixed":
        return "the protocol's own pairs (fixed, not redrawn)"
    return "all same-class face × text pairs (the estimand)"


def format_draws(res: dict) -> str:
    """Plain-text table of `score_draws`: means with intervals beside the single-draw ones, the paired
    comparison with the better branch, McNemar on the default draw and text reuse."""
    fixed = res.get("pairing") == "fixed"
    names = {"visual": "Visual only", "text": "Text only", "fusion": f"Fusion, w = {res['weight']:.2f}",
             "fusion_best_val": f"Fusion, best val w = {res['best_weight']['weight']:.2f}"}
    single = {r["model"]: r for r in res["single_draw"]["rows"]}
    lines = [f"Test, {pairing_words(res)}; {100 * res['ci']:.0f}% interval: {res['scheme']} bootstrap "
             f"({res['n_boot']} resamples)",
             f"{'model':<31}{'accuracy %':<21}{'macro-F1 %':<21}"
             f"{'pair bootstrap' if fixed else 'one draw, pair bootstrap':<26}width x"]
    for r in res["rows"]:
        s = single[r["model"]]
        ratio = res["widths"][r["model"]]["macro_f1"]["ratio"]
        lines.append(f"{names[r['model']]:<31}{_pct(r['accuracy'], r['accuracy_ci']):<21}"
                     f"{_pct(r['macro_f1'], r['macro_f1_ci']):<21}{_pct(s['macro_f1'], s['macro_f1_ci']):<26}"
                     + (f"{ratio:.2f}" if ratio is not None else "-"))
    if any(r[f"{k}_ci"][0] == r[f"{k}_ci"][1] for r in res["rows"] for k in ("accuracy", "macro_f1")):
        lines.append("(an interval of zero width: that model is right on all or none of each class's test "
                     "pairs, which resampling within class cannot change)")
    bw = res["best_weight"]
    lines.append(f"best validation weight: {bw['weight']:.2f}" + ("" if fixed else
                 f" (validation macro-F1 averaged over {res['draws']} draws; each draw's own pick "
                 f"{bw['per_draw_min']:.2f}-{bw['per_draw_max']:.2f}, the default draw's "
                 f"{res['single_draw']['best_weight']:.2f})"))
    if not fixed:
        lines.append(f"mean of the {res['draws']} draws (tends to the all-pairs value): " + "; ".join(
            f"{names[r['model']]} {100 * r['accuracy_draws_mean']:.1f} / {100 * r['macro_f1_draws_mean']:.1f}"
            for r in res["rows"]))
    for m, c in res["comparison"].items():
        lines.append(f"{names[m]} minus the better branch on validation ({c['better_branch']}): " + "; ".join(
                         f"{k.replace('_', '-')} {100 * c[k]['mean_diff']:+.1f} [{100 * c[k]['ci'][0]:+.1f}, "
                         f"{100 * c[k]['ci'][1]:+.1f}] p = {c[k]['p_value']:.3g}"
                         for k in ("accuracy", "macro_f1")))
    lines.append(f"McNemar on {'these pairs' if fixed else 'the default draw'} (treats pairs as independent; "
                 "too small a p under text reuse):")
    lines += [f"  fusion at w = {m['weight']:.2f} vs {m['model_b']}: b = {m['b']}, c = {m['c']}, "
              f"p = {m['pvalue']:.3g}" for m in res["single_draw"]["mcnemar"]]
    lines.append(f"{'text reuse':<12}{'class':<10}{'faces':>7}{'pool':>7}{'used':>7}{'mean':>7}{'max':>6}")
    for split, per in res["text_reuse"].items():
        lines += [f"{split:<12}{c:<10}{d['faces']:>7}{d['texts_in_pool']:>7}{d['texts_used']:>7}"
                  f"{d['mean_reuse']:>7.2f}{d['max_reuse']:>6}" for c, d in per.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- the dependence curve (scoring.dependence)
def dependence_curve(run_dir, draws: int | None = None, rhos=None, weight: float | None = None) -> "DependenceCurve":
    """How much of the fusion gain survives dependence, from the cache (no model, no torch): pairings of
    controlled dependence (`scoring.dependence.curve`) at config.json's weight, rule and seed (`draws`
    seeded draws per setting, default 20; `rhos` the copula grid). Under protocol=seed the stored CLIP
    pairs are placed on the curve. `.results` (JSON-able), `.table()`, `.plot()`, `.text()`."""
    from emotion_fusion.scoring import dependence

    run_dir = Path(run_dir)
    cfg, info, data = read_run(run_dir)
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
    weight = check_weight(_setting(cfg, "fusion_weight", run_dir) if weight is None else weight)
    res = dependence.curve(data["val"], data["test"], weight=weight,
                           rule=_setting(cfg, "fusion_rule", run_dir, lambda v: v in ("linear", "loglinear")),
                           R=dependence.DRAWS if draws is None else draws, seed=_setting(cfg, "seed", run_dir, is_int),
                           rhos=dependence.RHOS if rhos is None else rhos, stored=cfg.get("protocol") == "seed")
    return DependenceCurve({"title": info.get("title") or "Late fusion results", **res})


class DependenceCurve:
    """The dependence curve of a run: `.results` (the dict), `.table()`, `.plot()`, `.summary()`, `.text()`."""

    def __init__(self, results: dict):
        self.results = results

    def table(self, metric: str = "macro_f1") -> ResultsTable:
        """Per family and rho: phi, same-wrong-guess rate, each model's score and the gains, in points."""
        import pandas as pd

        from emotion_fusion.scoring.dependence import curve_records, curve_title
        df = pd.DataFrame.from_records(curve_records(self.results, metric)).set_index(["family", "rho"])
        return ResultsTable(df, curve_title(self.results))

    def plot(self, metric: str = "macro_f1"):
        from emotion_fusion.scoring.plots import plot_dependence
        return plot_dependence(self.results, metric)

    def text(self) -> str:
        from emotion_fusion.scoring.dependence import format_curve
        return format_curve(self.results)

    def summary(self) -> str:
        """Where the gain reaches zero, the branch check and (seed protocol) the stored pairs, in words."""
        from emotion_fusion.scoring.dependence import curve_summary
        return curve_summary(self.results)

    def __repr__(self) -> str:
        return self.text()
