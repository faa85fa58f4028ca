"""Many pairing draws, text-clustered intervals and the paired test of fusion against the better branch.

Faces (FER2013) and texts (GoEmotions) share only a label, so one pairing is one random draw among
many, and a text that stands in for k faces makes those k pairs dependent. Per split the input is a
dict of per-item outputs: `p_image` (n_images x 7), `y_image`, `p_text_items` (n_texts x 7), `y_text`
and optionally `pairs` (the run's own pairing: image i goes with text pairs[i]). Every face and text is
scored once; a draw is an index array, so 200 draws cost no model call.

Why pair-level tests mislead here: McNemar (and the pair bootstrap) treat the n pairs as independent.
Under text reuse they are not: the k pairs that share a text share its prediction, so the text-side
part of the discordant counts b and c moves in blocks of k. The variance of b - c is then larger than
the binomial variance McNemar assumes (by the cluster design effect 1 + (k - 1) rho, rho the
within-text correlation of the discordances), so its p-values come out too small: anti-conservative.
It also ignores that another pairing gives other pairs. McNemar is still reported (default draw) for
comparison; the paired interval and p-value over draws (`score_draws`) are the test to quote. Pure numpy.
"""
from __future__ import annotations

import numpy as np

from emotion_fusion.data.labels import CLASSES, NUM_CLASSES
from emotion_fusion.errors import InputError

from .fusion import (
    SWEEP_STEP,
    WEIGHT,
    _check_rule,
    _log,
    _sweep_preds,
    _weights,
    check_probs,
    check_weight,
    pick_best,
    sweep_counts,
)
from .metrics import CI, N_BOOT, _check_ci, _interval, as_labels, evaluate_many, mcnemar
from .metrics import confusion_scores as _scores

R_DRAWS = 200
MODELS = ("visual", "text", "fusion", "fusion_best_val")
SCHEMES = ("text_cluster", "two_way")
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
    imported because it pulls in scikit-learn and scipy (~1.5 s), the `fuse` CLI's whole budget.
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


def _within_class(groups: list[np.ndarray], rb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(len(rb), total) ids drawn with replacement inside each class: groups[c] is (R or 1, n_c)."""
    return np.concatenate([g[rb[:, None] % len(g), rng.integers(0, g.shape[1], (rb.size, g.shape[1]))]
                           for g in groups], axis=1)


def _boot(y, preds: dict, pairs: np.ndarray, n_texts: int, n_boot: int, seed: int,
          scheme: str) -> tuple[dict, np.ndarray]:
    """Per model, (accuracy, macro-F1) over n_boot resamples mixing pairing draws and items; the draws.

    Resample b takes a random draw r and weights each of its pairs by the multiplicity of its text
    among the draw's used texts of that class, resampled with replacement (the text-cluster bootstrap:
    a text used k times moves with its k pairs; each face is in exactly one pair of a draw, so faces,
    nested in the texts, are resampled with them). Resampling within each class keeps the class mix
    of the test sets fixed, as it is (without that, 72 fear texts each carrying ~7 faces would swing
    the number of fear faces ~3x more than the faces themselves do). `two_way` also multiplies by an
    independent within-class face multiplicity (pair weight = face x text multiplicity), which
    counts face-level variance about twice when every face sits in one pair (see score_draws). All
    models share the resamples (paired).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    R, N = pairs.shape
    face_groups = [np.flatnonzero(y == c)[None] for c in np.unique(y)]
    # Per class, the texts each draw uses: the same count in every draw (min(pool, faces) per class).
    text_groups = [np.stack([np.unique(p) for p in pairs[:, f[0]]]) for f in face_groups]
    draw = rng.integers(0, R, n_boot)
    out = {m: ([], []) for m in preds}
    step = max(1, CHUNK // N)
    for lo in range(0, n_boot, step):
        rb, nb = draw[lo:lo + step], min(step, n_boot - lo)
        offset = np.arange(nb)[:, None]
        picks = _within_class(text_groups, rb, rng) + offset * n_texts
        mt = np.bincount(picks.ravel(), minlength=nb * n_texts).reshape(nb, n_texts)
        w = mt[offset, pairs[rb]].astype(np.float64)
        if scheme == "two_way":
            faces = _within_class(face_groups, rb, rng) + offset * N
            w *= np.bincount(faces.ravel(), minlength=nb * N).reshape(nb, N)
        for m, p in preds.items():
            pr = np.broadcast_to(p, (nb, N)) if p.ndim == 1 else p[rb]
            flat = (offset * K2 + y * NUM_CLASSES + pr).ravel()
            counts = np.bincount(flat, w.ravel(), minlength=nb * K2).reshape(nb, NUM_CLASSES, NUM_CLASSES)
            acc, f1 = _scores(counts)
            out[m][0].append(acc)
            out[m][1].append(f1)
    return {m: (np.concatenate(a), np.concatenate(f)) for m, (a, f) in out.items()}, draw


def _p_two_sided(diff: np.ndarray) -> float:
    """Bootstrap p-value of "no difference": twice the smaller share of resampled differences on either
    side of 0, counted as (k + 1) / (B + 1) so that it is never 0 (its floor is 2 / (B + 1))."""
    k = min(int((diff <= 0).sum()), int((diff >= 0).sum()))
    return min(1.0, 2 * (k + 1) / (diff.size + 1))


def _for_mean(per_draw: np.ndarray, boot: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """Resampled values for the interval of the mean over draws: mean + (S*_b - S_r(b)).

    A draw's resample deviation S*_b - S_r spreads like one draw's score over new samples of faces
    and texts AND a new pairing (the text clusters of a fresh pairing are iid units), which by the
    law of total variance is Var(mean over pairings) + Var(pairing | sample): it covers pairing
    variation once. Adding the draw-to-draw spread on top (resampling around S_r instead of the
    mean) would count it twice. For the mean of R draws the pairing term shrinks to 1/R, so this is
    mildly conservative; we do not subtract it, because with few texts per class the cluster
    bootstrap runs narrow by (n - 1) / n and the difference would then undercover
    (benchmarks/stats_calibration.py measures both).
    """
    return per_draw.mean() + (boot - per_draw[draw])


def _fused(s: dict, pairings: np.ndarray, weight: float, best: np.ndarray, rule: str) -> np.ndarray:
    """(2, R, N) fused predictions at `weight` and at each draw's own best weight (fusion._sweep_preds)."""
    return np.stack([_sweep_preds(s["pv"], s["pt"][p], np.array([weight, w]), rule)
                     for p, w in zip(pairings, best)], axis=1)


def score_draws(val: dict, test: dict, weight: float = WEIGHT, rule: str = "linear", R: int = R_DRAWS,
                B: int = N_BOOT, seed: int = 0, prefer: float = WEIGHT, ci: float = CI,
                scheme: str = "text_cluster", pairing: str = "random") -> dict:
    """Score visual, text, fusion at `weight` and fusion at each draw's best validation weight over R
    seeded pairing draws of val and test. Returns a JSON-able dict: settings; `rows` (test, one per
    model: mean accuracy / macro_f1 over draws, their `_ci`, `_draw_sd` and n); `best_weight`
    (per-draw picks); `comparison` (fusion and fusion_best_val minus the better branch: mean_diff,
    ci, p_value per metric); `widths` (interval widths vs the single-draw pair bootstrap);
    `single_draw` (rows, best_weight and McNemar of the default pairing); `per_draw`; `text_reuse`.

    Intervals: B resamples, each a random draw whose texts (with their faces) are resampled within
    class (`_boot`); the deviations from that draw's score are added to the mean (`_for_mean`);
    percentiles. Checked by simulation in benchmarks/stats_calibration.py. `scheme="two_way"`
    multiplies in independent face multiplicities (the product weights of a crossed design): with
    each face in one pair that counts face variance about twice (visual intervals ~1.7x too wide),
    hence not the default. A draw's best weight is picked on its validation pairs (101-point sweep
    on macro-F1, ties toward `prefer`, as fusion.sweep) and held fixed in the resamples. "Better
    branch" = higher validation macro-F1 on the same draw (ties: visual). The single-draw table (the
    run's `pairs`, else draw 0) keeps the old pair bootstrap (metrics.evaluate_many) for comparison.

    `pairing="fixed"`: the stored `pairs` are the only draw (R is ignored). For a protocol that builds
    its pairs (the seed protocol's CLIP matching), re-pairing at random would score another question;
    there each text sits in one pair, so the text-cluster bootstrap is a within-class pair bootstrap.
    """
    weight, prefer, rule = check_weight(weight), check_weight(prefer), _check_rule(rule)
    _check_ci(B, ci)
    if scheme not in SCHEMES:
        raise InputError(f"unknown bootstrap scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if pairing not in PAIRINGS:
        raise InputError(f"unknown pairing {pairing!r}; choose one of {', '.join(PAIRINGS)}")
    v, t = _check_split(val, "val"), _check_split(test, "test")
    weights = _weights(SWEEP_STEP)
    if pairing == "fixed":
        if "pairs" not in v or "pairs" not in t:
            raise InputError("pairing='fixed' scores the stored pairs, but val or test has none; "
                             "re-run the run, or use pairing='random'")
        R, vp, tp = 1, v["pairs"][None], t["pairs"][None]
    else:
        vp, tp = draw_pairings(v["y"], v["yt"], seed, R, 0), draw_pairings(t["y"], t["yt"], seed, R, 1)
    val_vis = _draw_scores(v["y"], v["pv"].argmax(1)[None])[1][0]
    val_txt = _draw_scores(v["y"], v["pt"].argmax(1)[vp])[1]
    better_text = val_txt > val_vis
    best = weights[pick_best(weights, _val_sweep(v, vp, rule), prefer)]
    fused = _fused(t, tp, weight, best, rule)
    preds = {"visual": t["pv"].argmax(1), "text": t["pt"].argmax(1)[tp], "fusion": fused[0],
             "fusion_best_val": fused[1]}
    point = {m: _draw_scores(t["y"], np.broadcast_to(p, tp.shape)) for m, p in preds.items()}
    boot, bdraw = _boot(t["y"], preds, tp, t["yt"].size, B, seed, scheme)

    # ---- the single default draw, scored as before (pair bootstrap), for comparison
    dv, dt = v.get("pairs", vp[0]), t.get("pairs", tp[0])
    w0 = float(weights[pick_best(weights, _val_sweep(v, dv[None], rule)[0], prefer)])
    f0 = _fused(t, dt[None], weight, np.array([w0]), rule)[:, 0]
    single_preds = {"visual": preds["visual"], "text": t["pt"].argmax(1)[dt], "fusion": f0[0],
                    "fusion_best_val": f0[1]}
    single = evaluate_many(t["y"], single_preds, n_boot=B, seed=seed, ci=ci)

    rows, widths = [], {}
    for m in MODELS:
        row = {"model": m, "split": "test"}
        if m == "fusion":
            row["weight"] = weight
        for k, name in enumerate(("accuracy", "macro_f1")):
            lo, hi = _interval(_for_mean(point[m][k], boot[m][k], bdraw), ci)
            row.update({name: float(point[m][k].mean()), f"{name}_ci": [lo, hi],
                        f"{name}_draw_sd": float(point[m][k].std())})
            one = single[m][f"{name}_ci"]
            w1 = one[1] - one[0]
            widths.setdefault(m, {})[name] = {"draws": hi - lo, "single_draw": w1,
                                              "ratio": (hi - lo) / w1 if w1 > 0 else None}
        rows.append({**row, "n": int(t["y"].size)})
    comparison = {}
    for m in ("fusion", "fusion_best_val"):
        c = {"weight": weight if m == "fusion" else None,
             "better_branch": {"visual": int((~better_text).sum()), "text": int(better_text.sum())}}
        for k, name in enumerate(("accuracy", "macro_f1")):
            diff = point[m][k] - np.where(better_text, point["text"][k], point["visual"][k])
            bdiff = boot[m][k] - np.where(better_text[bdraw], boot["text"][k], boot["visual"][k])
            values = _for_mean(diff, bdiff, bdraw)
            c[name] = {"mean_diff": float(diff.mean()), "ci": _interval(values, ci),
                       "p_value": _p_two_sided(values)}
        comparison[m] = c
    single_w = {"fusion": {"weight": weight}, "fusion_best_val": {"weight": w0}}
    mc = [{"model_a": a, "model_b": b, "weight": weight if a == "fusion" else w0,
           **mcnemar(t["y"], single_preds[a], single_preds[b])}
          for a in ("fusion", "fusion_best_val") for b in ("visual", "text")]
    return {"rule": rule, "weight": weight, "prefer": prefer, "draws": int(R), "pairing": pairing, "n_boot": int(B),
            "seed": int(seed), "ci": ci, "scheme": scheme, "rows": rows,
            "best_weight": {"mean": float(best.mean()), "sd": float(best.std()), "min": float(best.min()),
                            "max": float(best.max()), "per_draw": best.tolist()},
            "comparison": comparison, "widths": widths,
            "single_draw": {"pairs": "given" if "pairs" in t else "draw 0", "best_weight": w0,
                            "rows": [{"model": m, "split": "test", **single_w.get(m, {}), **single[m]}
                                     for m in MODELS],
                            "mcnemar": mc},
            "per_draw": {"val_macro_f1": {"visual": float(val_vis), "text": val_txt.tolist()},
                         "better_branch": np.where(better_text, "text", "visual").tolist(),
                         **{m: {"accuracy": point[m][0].tolist(), "macro_f1": point[m][1].tolist()}
                            for m in MODELS}},
            "text_reuse": {"val": text_reuse(dv, v["y"], v["yt"]),
                           "test": text_reuse(dt, t["y"], t["yt"])}}
