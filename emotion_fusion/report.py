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
from emotion_fusion.tables import Table, cell, count, in_words, interval, pct, pvalue, table

MODEL_NAMES = {"visual": "Visual only", "text": "Text only", "fusion": "Fusion",
               "fusion_best_val": "Fusion (best val weight)"}
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
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
              seed: int | None = None, draws: int | None = 0) -> dict:
    """Score visual, text, fusion at `weight` and fusion at the best validation weight, from the cache.

    Missing arguments come from config.json (`fusion_weight`, `fusion_rule`, `seed`, `n_boot`; `draws=None`:
    `pairing_draws`, as `fuse` does). All models on a split share the same bootstrap resamples (paired CIs);
    `n_boot=0` skips the CIs, and is refused with `draws` > 0, whose headline is its intervals. Returns
    a JSON-able dict with `rows` (the default pairing of outputs/*.npz), `best_weight`, `mcnemar` (fusion
    vs each branch on test; b counts pairs only fusion gets right), `sweep` and `title` (from run_info.json,
    so a RANDOM-INIT warning survives). With `draws` > 0 also `draws`: the headline, `stats.score_draws`
    (the all-pairs estimand with crossed two-way intervals, fusion minus the better branch, and that many
    seeded re-pairings beside it), with n_boot crossed resamples. The weight is checked once here.
    """
    run_dir = Path(run_dir)
    cfg, info, data = read_run(run_dir)
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
    weight = check_weight(_setting(cfg, "fusion_weight", run_dir) if weight is None else weight)
    rule = _setting(cfg, "fusion_rule", run_dir, lambda v: v in ("linear", "loglinear")) if rule is None else rule
    seed = _setting(cfg, "seed", run_dir, is_int) if seed is None else seed
    n_boot = _setting(cfg, "n_boot", run_dir, is_int) if n_boot is None else n_boot
    if draws is None:
        draws = _setting(cfg, "pairing_draws", run_dir, lambda v: is_int(v) and v > 0)
    if draws and not n_boot:
        raise InputError(f"n_boot = {n_boot!r} skips the intervals, but the headline over {draws} pairing draws "
                         f"({run_dir / CONFIG}) reports 95% intervals and p-values from them; use n_boot >= 1 "
                         "(1000 by default), or draws=0")
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
    out = {"title": title, **({"weights": info["weights"]} if "weights" in info else {}), "rule": rule, "weight": weight, "best_weight": best, "seed": seed,
           "n_boot": n_boot, "rows": rows, "mcnemar": tests, "sweep": sw}
    if draws:
        from emotion_fusion.scoring.stats import score_draws
        items = {s: {k: data[s][k] for k in ("p_image", "y_image", "p_text_items", "y_text", "pairs")} for s in data}
        # the seed protocol builds its pairs (CLIP matching): its headline scores those, not random re-pairings
        pairing = "fixed" if cfg.get("protocol") == "seed" else "random"
        out["draws"] = score_draws(items["val"], items["test"], weight=weight, rule=rule, R=draws,
                                   B=n_boot, seed=seed, pairing=pairing)
    return out


def write_results(run_dir, results: dict) -> Path:
    """Write RUN_DIR/results.json: derived from the cache, rewritten by every `run` and `evaluate` (fuse and
    sweep only print; they never read it)."""
    return write_json(Path(run_dir) / RESULTS, results)


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
        lines.append(f"{r['split']:<6}{_model_label(r):<38}{interval(r['accuracy'], r.get('accuracy_ci')):<22}"
                     f"{interval(r['macro_f1'], r.get('macro_f1_ci')):<22}{count(r['n'])}")
    if "best_weight" in results:
        lines.append(f"best validation weight: {results['best_weight']:.2f} (by validation macro-F1)")
    for mc in results.get("mcnemar") or []:
        lines.append(f"McNemar, fusion vs {mc['model_b']} on test pairs: b = {count(mc['b'])}, c = {count(mc['c'])}, "
                     f"{_p(mc['pvalue'])} ({mc['method']})")
    return "\n".join(lines)


# ResultsTable was the results' own titled table; every table is now a tables.Table (same .df and .title)
ResultsTable = Table


def results_table(results: dict, which: str = "headline") -> Table:
    """Accuracy and macro-F1 in % with 95% intervals ("66.7 [65.1, 68.2]") under the run's title.

    `which="headline"`: the test all-pairs estimand with crossed two-way intervals, beside the
    default pairing's pair-bootstrap interval (when the draws were scored; else as "single");
    `which="single"`: the default pairing's rows (test and validation), pair bootstrap.
    """
    draws = results.get("draws")
    if which == "headline" and draws:
        single = {r["model"]: r for r in draws["single_draw"]["rows"]}
        recs = [{"model": _model_label(r),
                 "accuracy %": interval(r["accuracy"], r.get("accuracy_ci")),
                 "macro-F1 %": interval(r["macro_f1"], r.get("macro_f1_ci")),
                 "macro-F1 %, one draw, pair bootstrap": interval(single[r["model"]]["macro_f1"],
                                                                  single[r["model"]]["macro_f1_ci"]),
                 "faces": r["n"]} for r in draws["rows"]]
        how = f"{draws.get('scheme', 'crossed two-way')} bootstrap"
        title = f"{results_title(results)} — test, {pairing_words(draws)}, 95% intervals: {how}"
        return table(recs, title, index="model")
    recs = [{"split": r["split"], "model": _model_label(r), "accuracy %": interval(r["accuracy"], r.get("accuracy_ci")),
             "macro-F1 %": interval(r["macro_f1"], r.get("macro_f1_ci")), "pairs": r["n"]} for r in results["rows"]]
    return table(recs, f"{results_title(results)} — the default pairing, pair bootstrap", index=["split", "model"])


def comparison_table(results: dict) -> Table:
    """Fusion minus the better single branch (chosen on validation): the all-pairs difference in points,
    95% interval and bootstrap p-value, at the fusion weight and at the best validation weight."""
    rows, draws = [], results["draws"]
    test = f"p ({draws.get('scheme', 'crossed two-way')} bootstrap)"
    for m, c in draws["comparison"].items():
        for k in ("accuracy", "macro_f1"):
            rows.append({"fusion": MODEL_NAMES[m] + (f", w = {c['weight']:.2f}" if c.get("weight") is not None else ""),
                         "metric": METRIC_NAMES[k],
                         "fusion minus better branch, points [95% interval]": interval(
                             c[k]["mean_diff"], c[k]["ci"], signed=True),
                         test: pvalue(c[k]["p_value"], resamples=draws.get("n_boot")),
                         "better branch on validation": c["better_branch"]})
    return table(rows, "The claim that matters: fusion minus the better single branch, test", index=["fusion", "metric"])


def text_reuse_table(results: dict) -> Table:
    """Distinct texts used per class and split, and how often each is reused, in the default pairing."""
    rows = [{"split": split, "class": c, "faces": d["faces"], "texts in pool": d["texts_in_pool"],
             "texts used": d["texts_used"], "mean uses per text": round(d["mean_reuse"], 1), "most uses": d["max_reuse"]}
            for split, per in results["draws"]["text_reuse"].items() for c, d in per.items()]
    return table(rows, "Text reuse in the default pairing, per split and class", index=["split", "class"])


def mcnemar_table(results: dict) -> Table:
    """McNemar's test of fusion against each branch on the default test pairs, counts and p in words."""
    rows = [{"fusion": f"w = {m['weight']:.2f}", "against": m["model_b"],
             "pairs only fusion gets right": m["b"], "pairs only the branch gets right": m["c"],
             f"p (McNemar, {m['method']})": pvalue(m["pvalue"])} for m in results.get("mcnemar") or []]
    return table(rows, "Does fusion change the decisions? McNemar's test on the default test pairs",
                 note="It treats pairs as independent: with texts reused, its p is too small.")


def as_table(obj, name: str | None = None, digits: int = 1) -> Table:
    """A dict (or a list of dicts) from a run - timings, sizes, head scores - as a formatted Table:
    counts as integers, floats with `digits` decimals, nested dicts in words, no row numbers."""
    import pandas as pd

    if isinstance(obj, list):
        return table(obj, name, digits=digits)
    if obj and all(isinstance(v, dict) for v in obj.values()):
        df = pd.DataFrame({k: {i: cell(x, digits) for i, x in v.items()} for k, v in obj.items()})
        return Table(df.fillna(""), name)
    return Table(pd.DataFrame({name or "value": {k: cell(v, digits) for k, v in obj.items()}}), None)


def sizes_table(sizes: dict, dropped: dict | None = None) -> Table:
    """Faces and texts per split, and (as a note) what was dropped as duplicates of a scored split."""
    rows = [{"items": kind, **parts} for kind, parts in sizes.items()]
    note = f"Dropped from train/val as duplicates of val/test: {in_words(dropped)}." if dropped else None
    return table(rows, "Faces and texts per split", note=note, index="items")


def text_heads_table(scores: dict) -> Table:
    """The text heads scored on validation (macro-F1 and accuracy in %), the chosen one marked."""
    rows = [{"head": r["kind"], "validation macro-F1 %": pct(r["val_macro_f1"]),
             "validation accuracy %": pct(r["val_accuracy"]), "chosen": r["index"] == scores.get("chosen")}
            for r in scores.get("scores", [])]
    return table(rows, "Text heads on validation", index="head")


# ---------------------------------------------------------------- the all-pairs headline and the pairing draws, in words
def _p(p: float, resamples: int | None = None) -> str:
    """"p < 0.001", "p ≤ 0.002" (a bootstrap p at its floor, with `resamples`) or "p = 0.034", for a sentence."""
    text = pvalue(p, resamples=resamples)
    return f"p {text}" if text[0] in "<≤" else f"p = {text}"


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
        lines.append(f"{names[r['model']]:<31}{interval(r['accuracy'], r['accuracy_ci']):<21}"
                     f"{interval(r['macro_f1'], r['macro_f1_ci']):<21}{interval(s['macro_f1'], s['macro_f1_ci']):<26}"
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
                         f"{METRIC_NAMES[k]} {interval(c[k]['mean_diff'], c[k]['ci'], signed=True)} "
                         f"{_p(c[k]['p_value'], res['n_boot'])}" for k in ("accuracy", "macro_f1"))
                     + f" ({res['scheme']} bootstrap p)")
    lines.append(f"McNemar on {'these pairs' if fixed else 'the default draw'} (treats pairs as independent; "
                 "too small a p under text reuse):")
    lines += [f"  fusion at w = {m['weight']:.2f} vs {m['model_b']}: b = {count(m['b'])}, c = {count(m['c'])}, "
              f"{_p(m['pvalue'])}" for m in res["single_draw"]["mcnemar"]]
    lines.append(f"{'text reuse':<12}{'class':<10}{'faces':>7}{'pool':>7}{'used':>7}{'mean':>7}{'max':>6}")
    for split, per in res["text_reuse"].items():
        lines += [f"{split:<12}{c:<10}{count(d['faces']):>7}{count(d['texts_in_pool']):>7}{count(d['texts_used']):>7}"
                  f"{d['mean_reuse']:>7.1f}{count(d['max_reuse']):>6}" for c, d in per.items()]
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

    def table(self, metric: str = "macro_f1", rhos=None, brief: bool = False) -> Table:
        """Per family and rho: phi, same-wrong-guess rate, each model's score and the gains, in points.
        `rhos` keeps those settings only; `brief` keeps the dependence and the gains (a page wide)."""
        from emotion_fusion.scoring.dependence import curve_records, curve_title
        keep = None if rhos is None else {round(float(r), 2) for r in rhos}
        recs = [{**r, "rho": f"{float(r['rho']):g}"} for r in curve_records(self.results, metric)   # as set: 0.1, -1
                if keep is None or round(float(r["rho"]), 2) in keep]
        if brief:
            recs = [{k: v for k, v in r.items() if k in ("family", "rho", "phi within class", "same wrong guess %",
                                                        "best val w") or k.startswith("gain")} for r in recs]
        return table(recs, curve_title(self.results), index=["family", "rho"])

    def plot(self, metric: str = "macro_f1", strict: bool = True):
        """The gain against phi within class. Where phi is undefined in every setting (a branch right on
        all or none of each class's pairs, as on a tiny smoke run) that is an InputError, or with
        `strict=False` (the notebook) a small figure that says so, so that Run All goes on."""
        from emotion_fusion.scoring.plots import message_figure, plot_dependence
        try:
            return plot_dependence(self.results, metric)
        except InputError as e:
            if strict:
                raise
            return message_figure(str(e))

    def text(self) -> str:
        from emotion_fusion.scoring.dependence import format_curve
        return format_curve(self.results)

    def summary(self) -> str:
        """Where the gain reaches zero, the branch check and (seed protocol) the stored pairs, in words."""
        from emotion_fusion.scoring.dependence import curve_summary
        return curve_summary(self.results)

    def __repr__(self) -> str:
        return self.text()


def per_class_report(y, pred, title: str = "Per class, test pairs") -> Table:
    """Precision, recall and F1 per class in %, support as a count (scoring.metrics.per_class_table)."""
    from emotion_fusion.scoring.metrics import per_class_table

    df = per_class_table(y, pred)
    recs = [{"class": c, "precision %": pct(r.precision), "recall %": pct(r.recall), "F1 %": pct(r.f1),
             "support": int(r.support)} for c, r in df.iterrows()]
    return table(recs, title, index="class")
