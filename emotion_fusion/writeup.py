"""The results section in words: the answer in three sentences, the setup a reviewer needs, the per-class
comparison, and the README's results block. Reads a run's JSON files (or a slim copy of them, see
`slim_results`); no model, no torch.

    ef.answer(results, dep.results)          # three sentences from results.json and the dependence curve
    ef.setup_table(RUN_DIR)                  # sizes and why (caps), class weights, TTA, precision, seeds
    ef.per_class_table_side_by_side(RUN_DIR) # per class: faces, texts, visual / text / fusion F1
"""
from __future__ import annotations

import json
from pathlib import Path

from emotion_fusion.runs import CONFIG, INFO, RESULTS
from emotion_fusion.tables import Table, count, interval, pct, setting, table

NAMES = {"visual": "Visual only", "text": "Text only", "fusion": "Fusion", "fusion_best_val": "Fusion"}
FAMILIES = {"copula": "when the hardest faces meet the hardest texts (Gaussian copula)",
            "wrong": "when faces and texts that favour the same wrong class meet"}


def weight_name(model: str, weight: float) -> str:
    """One name per weight: the default pairing's `fusion`, the headline's validation weight."""
    return f"default w = {weight:.2f}" if model == "fusion" else f"validation weight w = {weight:.2f}"


def row_label(row: dict) -> str:
    return NAMES[row["model"]] + (f", {weight_name(row['model'], row['weight'])}" if "weight" in row else "")


def _gain(c: dict, key: str) -> str:
    return f"{interval(c[key]['mean_diff'], c[key]['ci'], signed=True)}"


def _verb(c: dict) -> str:
    lo, hi = c["macro_f1"]["ci"]
    return "beats" if lo > 0 else ("falls short of" if hi < 0 else "does not clearly differ from")


def _zero(cross: dict) -> str:
    if not cross["crosses"]:
        return f"never reaches zero (smallest {100 * cross['smallest']:+.1f} points, at ρ = {cross['at_rho']:.2f})"
    if cross["rho"] == 0:
        return "is at or below zero already for independent pairs"
    phi = "" if cross.get("phi_within") is None else f", φ within class {cross['phi_within']:.2f}"
    return f"reaches zero at ρ = {cross['rho']:.2f}{phi}"


def answer(results: dict, dependence: dict | None = None) -> str:
    """Three sentences from results.json (`draws`) and, when given, the dependence curve's results: the gain
    over the better branch at the default and the validation weight, the independence caveat, where the
    dependence curve reaches zero (for each family, at the validation weight)."""
    d = results["draws"]
    c, b = d["comparison"]["fusion"], d["comparison"]["fusion_best_val"]
    first = (f"On the test pairs, fusion {_verb(b)} the better single branch ({c['better_branch']}, chosen on "
             f"validation): macro-F1 {_gain(c, 'macro_f1')} points at the {weight_name('fusion', c['weight'])} "
             f"and {_gain(b, 'macro_f1')} at the {weight_name('fusion_best_val', b['weight'])} "
             f"(accuracy {_gain(c, 'accuracy')} and {_gain(b, 'accuracy')}; 95% {d['scheme']} intervals over "
             "the test faces and texts, one training seed).")
    second = ("Faces and texts are paired only by their emotion label, so given the emotion the two branches "
              "are independent by construction: the favourable case for late fusion, not a measurement on "
              "recordings where the face and the words come from one person.")
    if dependence is None:
        return " ".join([first, second])
    cross = dependence["crossing"]
    third = ("Re-paired so that the branches' errors depend on each other, the macro-F1 gain at the validation "
             "weight " + "; and it ".join(f"{_zero(cross[f]['gain_fusion_best_val_macro_f1'])} {FAMILIES.get(f, f)}"
                                          for f in cross) + ".")
    return " ".join([first, second, third])


def headline_records(results: dict) -> list[dict]:
    """The headline rows (test, all same-class pairs) in %, the one-draw column computed at each row's own
    weight and saying so where it differs from the row's."""
    d = results["draws"]
    single = {r["model"]: r for r in d["single_draw"]["rows"]}
    recs = []
    for r in d["rows"]:
        s = single[r["model"]]
        one = interval(s["macro_f1"], s["macro_f1_ci"])
        if r["model"] == "fusion_best_val" and s.get("weight") != r.get("weight"):
            own = d["single_draw"].get("best_weight")
            one += f" (at that draw's own best w = {own:.2f})" if own is not None else " (at that draw's own best w)"
        recs.append({"model": row_label(r), "accuracy %": interval(r["accuracy"], r["accuracy_ci"]),
                     "macro-F1 %": interval(r["macro_f1"], r["macro_f1_ci"]),
                     "macro-F1 %, one pairing, pair bootstrap": one})
    return recs


def _read(run_dir) -> tuple[dict, dict, dict]:
    run_dir = Path(run_dir)
    return tuple(json.loads((run_dir / name).read_text()) for name in (CONFIG, INFO, RESULTS))


def setup_facts(cfg: dict, info: dict) -> list[dict]:
    """What a reviewer needs to read the numbers, from the run's config.json and run_info.json."""
    sizes, fer = info["sizes"], info["summary"]["fer2013"]["rows"]
    go = info["summary"]["goemotions"]["rows"]
    hist = info.get("history", {})
    dropped = info.get("dropped", {})
    cap = cfg.get("train_per_class")
    capped = (f", at most {count(cap)} per class (train_per_class; smaller classes keep all)" if cap else "")
    why = " so that the training fits the profile's time budget" if cap and cfg.get("profile") == "offline" else ""
    tcap = cfg.get("text_train_per_class")
    val = 100 * cfg.get("val_fraction", 0.1)
    facts = [
        ("train faces", f"{count(sizes['images']['train'])} of FER2013's {count(fer['train'])} train faces: "
                        f"a seeded stratified {val:.0f}% validation slice held back{capped}{why}, and faces whose "
                        f"pixels repeat a validation or test face dropped ({count(dropped.get('images', 0))} "
                        "train/validation faces in all)"),
        ("validation / test faces", f"{count(sizes['images']['val'])} / {count(sizes['images']['test'])} "
                                    "(test: the FER2013 test folder"
                                    + "".join(f"; {s} capped at {count(cfg[k])} per class" for s, k in
                                              (("validation", "val_per_class"), ("test", "test_per_class")) if cfg.get(k))
                                    + ")"),
        ("train / validation / test texts",
         f"{count(sizes['texts']['train'])} / {count(sizes['texts']['val'])} / {count(sizes['texts']['test'])} "
         f"of GoEmotions' {count(go.get('train', 0))} train texts"
         + (f" (train capped at {count(tcap)} per class)" if tcap else "")
         + f"; test texts from its {info.get('text_test_split', 'test')} split"),
        ("image training", f"{hist.get('epochs_run', cfg.get('epochs'))} epoch(s) of at most {cfg.get('epochs')} at "
                           f"{cfg.get('image_size')} px, "
                           + ("from scratch" if cfg.get("image_weights") is None else f"from {cfg['image_weights']}")
                           + f", batch {cfg.get('batch_size')}, lr {setting(cfg.get('lr'))} ({cfg.get('lr_schedule')}), "
                           f"{'augmentation' if cfg.get('augment') else 'no augmentation'}, epoch "
                           f"{hist.get('scored_epoch', '?')} scored"),
        ("class weights", "balanced on the train faces (inverse class frequency)"
         if cfg.get("class_weights") == "balanced" else str(cfg.get("class_weights"))),
        ("test-time augmentation", "mirror: each face's probabilities averaged with its mirror image's"
         if cfg.get("tta") else "none"),
        ("precision", f"{hist.get('precision', 'not recorded')}"
         + (f", {hist['replicas']} replica(s) × {hist.get('intra_op_threads', '?')} intra-op thread(s) each"
            if "replicas" in hist else "")),
        ("training seed", f"{cfg.get('seed')} (one training run)"),
        ("what the intervals include", "the test faces and texts (resampled); not the training: another training "
                                       "seed or machine gives other decimals"),
    ]
    return [{"setting": k, "value": v} for k, v in facts]


def setup_table(run_dir) -> Table:
    cfg, info, _ = _read(run_dir)
    return table(setup_facts(cfg, info), "The setup behind these numbers", index="setting")


def per_class_table_side_by_side(run_dir, results: dict | None = None) -> Table:
    """Per class on the default test pairing: faces, texts in the pool, and F1 of visual, text and fusion at
    the default weight and at the validation weight (the headline's)."""
    import numpy as np

    from emotion_fusion.data.labels import CLASSES
    from emotion_fusion.runs import read_run
    from emotion_fusion.scoring.fusion import fused_labels
    from emotion_fusion.scoring.metrics import per_class_table

    cfg, _, data = read_run(run_dir)
    results = results or _read(run_dir)[2]
    t, d = data["test"], results["draws"]
    pv, pt, y = t["p_visual"], t["p_text"], t["y"]
    fused = fused_labels(pv, pt, [d["weight"], d["best_weight"]["weight"]], d["rule"])
    preds = {"visual": pv.argmax(1), "text": pt.argmax(1), "fusion": fused[0], "fusion_best_val": fused[1]}
    f1 = {m: per_class_table(y, p)["f1"].to_numpy() for m, p in preds.items()}
    reuse = d["text_reuse"]["test"]
    recs = [{"class": c, "test faces": int(np.sum(y == i)), "test texts": reuse.get(c, {}).get("texts_in_pool", 0),
             **{f"{NAMES[m]} F1 %" + ("" if m in ("visual", "text") else
                                      f" ({weight_name(m, d['weight'] if m == 'fusion' else d['best_weight']['weight'])})"):
                pct(f1[m][i]) for m in preds}} for i, c in enumerate(CLASSES)]
    return table(recs, "Per class, test (the default pairing): F1 of each model side by side", index="class",
                 note="F1 per class on the one stored pairing (each face with one text); the headline's all-pairs "
                      "values are over every same-class pair.")


# ---------------------------------------------------------------- the README's results block
def slim_results(run_dir, date: str, machine: str) -> dict:
    """What the README quotes from a run, small enough to commit: the headline (no per-draw arrays), the
    setup facts, the dependence crossings, and which run it was."""
    from emotion_fusion.report import dependence_curve

    cfg, info, res = _read(run_dir)
    d = {k: v for k, v in res["draws"].items() if k in ("rule", "weight", "draws", "pairing", "n_boot", "seed",
                                                         "ci", "scheme", "rows", "comparison", "text_reuse")}
    d["best_weight"] = {"weight": res["draws"]["best_weight"]["weight"]}
    d["single_draw"] = {k: res["draws"]["single_draw"][k] for k in ("best_weight", "rows")}
    dep = dependence_curve(run_dir).results
    return {"source": f"tools/readme_results.py --from-run {run_dir}", "run": {
                "profile": cfg["profile"], "seed": cfg["seed"], "precision": info["history"].get("precision"),
                "date": date, "machine": machine, "total_s": info.get("timings", {}).get("total_s")},
            "title": res["title"], "weights": res.get("weights"), "draws": d,
            "dependence": {"weight": dep["weight"], "crossing": dep["crossing"]},
            "setup": setup_facts(cfg, info)}


BEGIN, END = "<!-- results: generated by tools/readme_results.py from {} -->", "<!-- end of results -->"


def readme_block(slim: dict, source: str) -> str:
    """The README's results: which run, the table, the answer, the setup (markdown, between the markers)."""
    run = slim["run"]
    lines = [BEGIN.format(source), "",
             f"Quoted run: profile `{run['profile']}`, training seed {run['seed']}, {run['machine']} "
             f"({run['precision']}), {run['date']}. Another machine's run, or another seed, differs in the "
             "decimals (training variance: the intervals below cover the test data, not the training).", "",
             "| model (test, all same-class pairs) | accuracy % | macro-F1 % | macro-F1 %, one pairing |",
             "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['accuracy %']} | {r['macro-F1 %']} | {r['macro-F1 %, one pairing, pair bootstrap']} |"
              for r in headline_records(slim)]
    lines += ["", answer(slim, slim.get("dependence")), "", "Setup of that run:", ""]
    lines += [f"- {f['setting']}: {f['value']}" for f in slim.get("setup", [])]
    return "\n".join(lines + ["", END])


def headline_table(results: dict) -> Table:
    """The main table: the headline rows with one name per weight (see `headline_records`)."""
    d = results["draws"]
    return table(headline_records(results), f"{results.get('title', 'Late fusion')} — test, all same-class pairs, "
                 f"95% intervals: {d.get('scheme', 'crossed two-way')} bootstrap", index="model",
                 note="The last column scores only the one stored pairing, with a plain pair bootstrap, for comparison.")


class Markdown:
    """Prose shown as markdown in a notebook (and as text elsewhere): what `answer_markdown` returns."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def answer_markdown(results: dict, dependence: dict | None = None) -> Markdown:
    """`answer` as a bold-led paragraph for the report's first section."""
    return Markdown("**The answer.** " + answer(results, dependence))
