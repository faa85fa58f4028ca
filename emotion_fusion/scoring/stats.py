"""The estimand of the label-paired design, its crossed two-way interval, and fusion against the better branch.

Faces (FER2013) and texts (GoEmotions) share only a label, so any one pairing is one random draw among
many. The number we report (the estimand): per class, the expected score of a random face of that class
paired with a random text of that class, weighted by the test class mix. It is computed exactly as the
average over every same-class face x text pair (`bootstrap.crossed_counts`; macro-F1 from that
all-pairs confusion matrix), which is what the mean over many random pairings tends to (`per_draw`
shows the draws and their mean). Per split the input is a dict of per-item outputs: `p_image`
(n_images x 7), `y_image`, `p_text_items` (n_texts x 7), `y_text` and optionally `pairs` (the run's
own pairing: image i goes with text pairs[i]). Every face and text is scored once.

Its variance is s2_face / n + s2_text / m + s2_interaction / (n m) per class, m the class's whole text
pool: the interval resamples faces and texts independently within class (crossed two-way bootstrap),
shared by all models so differences are paired; benchmarks/stats_calibration.py checks its coverage
against a simulated population. An interval sized for one draw (pair bootstrap, or the texts one draw
uses) aims at another quantity: too narrow where few texts are reused, too wide where texts outnumber
faces. McNemar (one pairing, pairs as independent units) is reported for comparison only. Pure numpy.
"""
from __future__ import annotations

import numpy as np

from emotion_fusion.data.labels import CLASSES, NUM_CLASSES
from emotion_fusion.errors import InputError

from .bootstrap import class_blocks, crossed_counts, multiplicities, weighted_confusion
from .fusion import (
    SWEEP_STEP,
    WEIGHT,
    _check_rule,
    _log,
    _weights,
    check_probs,
    check_weight,
    fused_labels,
    grid_labels,
    pick_best,
    sweep_counts,
)
from .metrics import CI, N_BOOT, _check_ci, _interval, as_labels, evaluate_many, mcnemar
from .metrics import confusion_scores as _scores

R_DRAWS = 200
MODELS = ("visual", "text", "fusion", "fusion_best_val")
PAIRINGS = ("random", "fixed")        # fixed: score the stored pairs only (a protocol that builds them)
K2 = NUM_CLASSES * NUM_CLASSES
CHUNK = 250_000  # pairs per vectorised block: bounds memory at ~100 MB


def draw_seed(seed: int, stream: int, r: int) -> int:
    """The `make_pairs` seed of draw r: distinct per (seed, stream, r); stream separates val and test."""
    return int(np.random.SeedSequence([int(seed), int(stream), int(r)]).generate_state(1)[0])


def draw_pairings(y_image, y_text, seed: int, R: int = R_DRAWS, stream: int = 0) -> np.ndarray:
    """(R, n_images) text indices: draw r equals `pairing.make_pairs(y_image, y_text, draw_seed(seed,
    stream, r))` bit for bit (same rule: each class has its own generator and uses every text before
    any is reused), with the class index lists built once instead of per draw. pairing.py is not
    imported because it pulls in scikit-learn and scipy (~1.5 s here), as much as the `fuse` CLI's whole
    1.5 s limit (benchmarks/fusion.py (3), which the headline's statistics alone may exceed).
    """
    y_image, y_text = as_labels(y_image, "y_image"), as_labels(y_text, "y_text")
    if isinstance(R, bool) or not isinstance(R, (int, np.integer)) or R < 1 or int(seed) < 0:
        raise InputError(f"pairing draws R = {R!r}, seed = {seed!r}: use a positive R and a seed >= 0")
    groups = []
    for c in np.unique(y_image):
        images, texts = np.flatnonzero(y_image == c), np.flatnonzero(y_text == c)
        if texts.size == 0:
            raise InputError(f"class {CLASSES[c]!r} has {images.size} faces but no texts to pair with; "
                             "add texts of that class or drop those faces")
        groups.append((int(c), images, texts, -(-images.size // texts.size)))
    out = np.empty((R, y_image.size), dtype=np.int64)
    for r in range(R):
        s = draw_seed(seed, stream, r)
        for c, images, texts, rounds in groups:
            rng = np.random.default_rng([s, c])
            out[r, images] = np.concatenate([rng.permutation(texts) for _ in range(rounds)])[:images.size]
    return out


def text_reuse(pairs, y_image, y_text) -> dict:
    """Per class and overall: faces, texts in the pool, distinct texts used, mean and max uses per text."""
    pairs, y_image, y_text = np.asarray(pairs), as_labels(y_image, "y_image"), as_labels(y_text, "y_text")
    uses = np.bincount(pairs, minlength=y_text.size)

    def one(faces: np.ndarray, pool: np.ndarray) -> dict:
        used = np.unique(pairs[faces])
        return {"faces": int(faces.size), "texts_in_pool": int(pool.size), "texts_used": int(used.size),
                "mean_reuse": float(faces.size / used.size) if used.size else 0.0,
                "max_reuse": int(uses[used].max()) if used.size else 0}
    out = {CLASSES[c]: one(np.flatnonzero(y_image == c), np.flatnonzero(y_text == c))
           for c in np.unique(y_image)}
    out["all"] = one(np.arange(y_image.size), np.arange(y_text.size))
    return out


def _check_split(d: dict, name: str) -> dict:
    missing = [k for k in ("p_image", "y_image", "p_text_items", "y_text") if k not in d]
    if missing:
        raise InputError(f"{name} data lacks {missing}; pass p_image, y_image, p_text_items, y_text")
    out = {"pv": check_probs(d["p_image"], f"{name} p_image"), "y": as_labels(d["y_image"], f"{name} y_image"),
           "pt": check_probs(d["p_text_items"], f"{name} p_text_items"),
           "yt": as_labels(d["y_text"], f"{name} y_text")}
    if out["pv"].shape[0] != out["y"].size or out["pt"].shape[0] != out["yt"].size or out["y"].size == 0:
        raise InputError(f"{name}: p_image {out['pv'].shape} / y_image ({out['y'].size},) and p_text_items "
                         f"{out['pt'].shape} / y_text ({out['yt'].size},) need one non-empty label per row")
    if d.get("pairs") is not None:
        p = np.asarray(d["pairs"])
        if (p.shape != out["y"].shape or not np.issubdtype(p.dtype, np.integer) or p.min() < 0
                or p.max() >= out["yt"].size or (out["yt"][p] != out["y"]).any()):
            raise InputError(f"{name} pairs must hold one same-label text index (0..{out['yt'].size - 1}) "
                             "per face; re-run to rewrite the outputs")
        out["pairs"] = p.astype(np.int64)
    return out


def _val_sweep(s: dict, pairings: np.ndarray, rule: str) -> np.ndarray:
    """Validation macro-F1 (R, W) of fusion at every sweep weight for each pairing draw."""
    weights = _weights(SWEEP_STEP)
    a, b = (s["pv"], s["pt"]) if rule == "linear" else (_log(s["pv"]), _log(s["pt"]))
    step = max(1, CHUNK // s["y"].size)
    f1 = []
    for lo in range(0, len(pairings), step):
        p = pairings[lo:lo + step]
        counts = sweep_counts(np.broadcast_to(a, (len(p),) + a.shape), b[p], s["y"], weights)
        f1.append(_scores(counts.reshape(-1, NUM_CLASSES, NUM_CLASSES))[1].reshape(len(p), -1))
    return np.concatenate(f1)


def _draw_scores(y: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 per row of preds (R, N) against the same labels y."""
    flat = (np.arange(len(preds))[:, None] * K2 + y * NUM_CLASSES + preds).ravel()
    return _scores(np.bincount(flat, minlength=len(preds) * K2).reshape(-1, NUM_CLASSES, NUM_CLASSES))


def _p_two_sided(diff: np.ndarray) -> float:
    """Bootstrap p-value of "no difference": twice the smaller share of resampled differences on either
    side of 0, counted as (k + 1) / (B + 1) so that it is never 0 (its floor is 2 / (B + 1))."""
    k = min(int((diff <= 0).sum()), int((diff >= 0).sum()))
    return min(1.0, 2 * (k + 1) / (diff.size + 1))


def _fused(s: dict, pairings: np.ndarray, weights: list[float], rule: str) -> np.ndarray:
    """(2, R, N) fused predictions of each pairing draw at the two weights (fusion, fusion_best_val)."""
    return np.stack([fused_labels(s["pv"], s["pt"][p], weights, rule) for p in pairings], axis=1)


def _grid(s: dict, blocks: list, models: dict, rule: str) -> dict:
    """Per model, the labels of each class block's face x text pairs: `models` maps a name to its fusion
    weight, or to None for the branches alone (whose labels depend on one side only)."""
    av, at, grids = s["pv"].argmax(1), s["pt"].argmax(1), {}
    out = {}
    for m, w in models.items():
        if w is None:
            out[m] = [av[f][:, None] for _, f, _ in blocks] if m == "visual" else [at[t][None] for *_, t in blocks]
        else:   # a weight shared by both fusion rows is computed once
            if w not in grids:
                grids[w] = [grid_labels(s["pv"][f], s["pt"][t], w, rule) for _, f, t in blocks]
            out[m] = grids[w]
    return out


def all_pairs(s: dict, models: dict, rule: str, B: int = 0, rng: np.random.Generator | None = None) -> tuple:
    """The all-pairs estimand per model (accuracy and macro-F1 arrays of length 1) and, with B > 0,
    B crossed two-way resamples (faces and texts resampled within class, shared by all models).
    `s` is a checked split (`_check_split`); `models` as for `_grid`."""
    blocks = class_blocks(s["y"], s["yt"])
    for c, f, t in blocks:
        if t.size == 0:
            raise InputError(f"class {CLASSES[c]!r} has {f.size} faces but no texts to pair with; "
                             "add texts of that class or drop those faces")
    labels = _grid(s, blocks, models, rule)
    point = {m: _scores(crossed_counts(blocks, lab, *unit_weights(blocks))) for m, lab in labels.items()}
    if not B:
        return point, None
    wf, wt = crossed_resamples(blocks, s["y"].size, s["yt"].size, B, rng)
    return point, {m: _scores(crossed_counts(blocks, lab, wf, wt)) for m, lab in labels.items()}


def unit_weights(blocks: list) -> tuple[list, list]:
    """Face and text weights of one for every block: `crossed_counts` then gives the point value."""
    return [np.ones((1, f.size)) for _, f, _ in blocks], [np.ones((1, t.size)) for *_, t in blocks]


def crossed_resamples(blocks: list, n_images: int, n_texts: int, B: int, rng: np.random.Generator) -> tuple[list, list]:
    """Per block, B crossed two-way resamples: face multiplicities (B, n_c) and text multiplicities (B, m_c),
    faces and texts each resampled within class (one draw from `rng`, faces first: every model scored with
    the same resamples gets paired differences)."""
    wf = multiplicities([f for _, f, _ in blocks], n_images, B, rng)
    wt = multiplicities([t for *_, t in blocks], n_texts, B, rng)
    return [wf[:, f] for _, f, _ in blocks], [wt[:, t] for *_, t in blocks]


def _fixed_pairs(s: dict, pairs: np.ndarray, weights: list[float], rule: str, B: int,
                 rng: np.random.Generator) -> tuple[dict, dict]:
    """Scores of the stored pairs and a within-class pair bootstrap (each text sits in one pair)."""
    fused = fused_labels(s["pv"], s["pt"][pairs], weights, rule)
    labels = {"visual": s["pv"].argmax(1), "text": s["pt"].argmax(1)[pairs], "fusion": fused[0],
              "fusion_best_val": fused[1]}
    w = multiplicities([f for _, f, _ in class_blocks(s["y"], s["yt"])], s["y"].size, B, rng)
    return ({m: _draw_scores(s["y"], lab[None]) for m, lab in labels.items()},
            {m: _scores(weighted_confusion(w, s["y"], lab)) for m, lab in labels.items()})


def score_draws(val: dict, test: dict, weight: float = WEIGHT, rule: str = "linear", R: int = R_DRAWS,
                B: int = N_BOOT, seed: int = 0, prefer: float = WEIGHT, ci: float = CI,
                pairing: str = "random") -> dict:
    """Score visual, text, fusion at `weight` and fusion at the best validation weight on the test
    split: the all-pairs estimand (module docstring) with crossed two-way bootstrap intervals, beside
    R seeded pairing draws and the single default pairing with the pair bootstrap, for comparison.

    Returns a JSON-able dict: settings; `rows` (test, one per model: the all-pairs accuracy / macro_f1,
    their `_ci`, and over the R draws `_draws_mean` and `_draw_sd`; n); `best_weight`; `comparison`
    (fusion and fusion_best_val minus the better branch: mean_diff, ci, p_value per metric, the p-value
    from the same resamples); `widths` (all-pairs vs single-draw pair-bootstrap interval widths);
    `single_draw` (rows, best weight and McNemar of the default pairing); `per_draw`; `text_reuse`.

    Chosen on validation, then held fixed in the resamples (so those rows are conditional on the
    validation set): the best weight, maximising validation macro-F1 averaged over R validation draws
    (a 101-point sweep, ties toward `prefer`, as fusion.sweep), and the better branch, the higher
    all-pairs validation macro-F1 (ties: visual). `pairing="fixed"`: the stored `pairs` are the
    estimand (R is ignored; for a protocol that builds its pairs, such as the seed protocol's CLIP
    matching); each text sits in one pair, so the interval is a within-class pair bootstrap.
    """
    weight, prefer, rule = check_weight(weight), check_weight(prefer), _check_rule(rule)
    _check_ci(B, ci)
    if pairing not in PAIRINGS:
        raise InputError(f"unknown pairing {pairing!r}; choose one of {', '.join(PAIRINGS)}")
    v, t = _check_split(val, "val"), _check_split(test, "test")
    weights = _weights(SWEEP_STEP)
    fixed = pairing == "fixed"
    if fixed:
        if "pairs" not in v or "pairs" not in t:
            raise InputError("pairing='fixed' scores the stored pairs, but val or test has none; "
                             "re-run the run, or use pairing='random'")
        R, vp, tp = 1, v["pairs"][None], t["pairs"][None]
    else:
        vp, tp = draw_pairings(v["y"], v["yt"], seed, R, 0), draw_pairings(t["y"], t["yt"], seed, R, 1)

    # ---- the choices, on validation only
    val_f1 = _val_sweep(v, vp, rule)
    best = float(weights[pick_best(weights, val_f1.mean(0), prefer)])
    draw_best = weights[pick_best(weights, val_f1, prefer)]
    branches = {"visual": None, "text": None}
    val_f1s = ({"visual": _draw_scores(v["y"], v["pv"].argmax(1)[None]),
                "text": _draw_scores(v["y"], v["pt"].argmax(1)[vp])} if fixed else all_pairs(v, branches, rule)[0])
    better = "text" if val_f1s["text"][1][0] > val_f1s["visual"][1][0] else "visual"

    # ---- the estimand and its interval on test
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    if fixed:
        point, boot = _fixed_pairs(t, tp[0], [weight, best], rule, B, rng)
    else:
        point, boot = all_pairs(t, {**branches, "fusion": weight, "fusion_best_val": best}, rule, B, rng)
    fused = _fused(t, tp, [weight, best], rule)
    preds = {"visual": t["pv"].argmax(1), "text": t["pt"].argmax(1)[tp], "fusion": fused[0],
             "fusion_best_val": fused[1]}
    draws = {m: _draw_scores(t["y"], np.broadcast_to(p, tp.shape)) for m, p in preds.items()}

    # ---- the single default draw, scored as before (pair bootstrap), for comparison
    dv, dt = v.get("pairs", vp[0]), t.get("pairs", tp[0])
    w0 = float(weights[pick_best(weights, _val_sweep(v, dv[None], rule)[0], prefer)])
    f0 = fused_labels(t["pv"], t["pt"][dt], [weight, w0], rule)
    single_preds = {"visual": preds["visual"], "text": t["pt"].argmax(1)[dt], "fusion": f0[0],
                    "fusion_best_val": f0[1]}
    single = evaluate_many(t["y"], single_preds, n_boot=B, seed=seed, ci=ci)

    rows, widths = [], {}
    for m in MODELS:
        row = {"model": m, "split": "test"}
        if m.startswith("fusion"):
            row["weight"] = weight if m == "fusion" else best
        for k, name in enumerate(("accuracy", "macro_f1")):
            lo, hi = _interval(boot[m][k], ci)
            row.update({name: float(point[m][k][0]), f"{name}_ci": [lo, hi],
                        f"{name}_draws_mean": float(draws[m][k].mean()), f"{name}_draw_sd": float(draws[m][k].std())})
            one = single[m][f"{name}_ci"]
            w1 = one[1] - one[0]
            widths.setdefault(m, {})[name] = {"all_pairs": hi - lo, "single_draw": w1,
                                              "ratio": (hi - lo) / w1 if w1 > 0 else None}
        rows.append({**row, "n": int(t["y"].size)})
    comparison = {}
    for m in ("fusion", "fusion_best_val"):
        c = {"weight": weight if m == "fusion" else best, "better_branch": better}
        for k, name in enumerate(("accuracy", "macro_f1")):
            bdiff = boot[m][k] - boot[better][k]
            c[name] = {"mean_diff": float(point[m][k][0] - point[better][k][0]), "ci": _interval(bdiff, ci),
                       "p_value": _p_two_sided(bdiff)}
        comparison[m] = c
    mc = [{"model_a": a, "model_b": b, "weight": weight if a == "fusion" else w0,
           **mcnemar(t["y"], single_preds[a], single_preds[b])}
          for a in ("fusion", "fusion_best_val") for b in ("visual", "text")]
    return {"rule": rule, "weight": weight, "prefer": prefer, "draws": int(R), "pairing": pairing,
            "n_boot": int(B), "seed": int(seed), "ci": ci,
            "estimand": "the stored pairs" if fixed else "all same-class face x text pairs, test class mix",
            "scheme": "within-class pair" if fixed else "crossed two-way",
            "rows": rows,
            "best_weight": {"weight": best, "per_draw": draw_best.tolist(), "per_draw_min": float(draw_best.min()),
                            "per_draw_max": float(draw_best.max())},
            "comparison": comparison, "widths": widths,
            "single_draw": {"pairs": "given" if "pairs" in t else "draw 0", "best_weight": w0,
                            "rows": [{"model": m, "split": "test", **({"weight": weight} if m == "fusion" else {}),
                                      **({"weight": w0} if m == "fusion_best_val" else {}), **single[m]}
                                     for m in MODELS],
                            "mcnemar": mc},
            "per_draw": {"val_macro_f1": {"visual": float(val_f1s["visual"][1][0]),
                                          "text": float(val_f1s["text"][1][0])},
                         **{m: {"accuracy": draws[m][0].tolist(), "macro_f1": draws[m][1].tolist()}
                            for m in MODELS}},
            "text_reuse": {"val": text_reuse(dv, v["y"], v["yt"]),
                           "test": text_reuse(dt, t["y"], t["yt"])}}
