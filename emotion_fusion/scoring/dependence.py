"""How much of the fusion gain survives dependence: pairings with controlled dependence, from the cache.

Label pairing makes the two branches independent given the emotion, the favourable case for late
fusion. Every face and text of val and test is scored once, so any within-class pairing is scored
without a model. Each setting starts from today's random pairing draw r (`stats.draw_pairings`: the
seeds and streams of `score_draws`) and changes only *who meets whom* inside a class: the draw's texts
and how often each is used stay the same, so both branches' scores do not move (checked per draw).

Two families, one parameter rho each, both exactly the random draw at rho = 0.
- `copula`, rho in [-1, 1]: per class, faces and the draw's text slots are each ranked by their
  branch's true-class probability; a face's normal score is a = z(its rank), the normal score of the
  slot the random draw gave it is e, and the faces sorted by w = rho * a + sqrt(1 - rho^2) * e take
  the slots in rank order. a and e are independent (the draw is random), so this is a Gaussian copula
  of correlation rho between the two ranks: rho = 0 returns the draw itself (w = e), rho = 1 pairs the
  hardest face with the hardest text (comonotone), rho = -1 the hardest with the easiest.
- `wrong`, rho in [0, 1], harsher: each pair of the draw is picked with probability rho (a seeded
  uniform per face and draw, so the picked set grows with rho) and, per class, the picked pairs'
  texts are re-dealt among the picked faces so that faces and texts favouring the same wrong class
  meet (largest margin over the true class first; as many as those texts allow), the rest by that
  margin. rho = 1 aligns the wrong guesses of the whole class. There is no "opposite" of it.
Read against phi within class (pooled phi also carries the class mix). Pure numpy (benchmarks/dependence.py).
"""
from __future__ import annotations

import numbers
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from emotion_fusion.data.labels import NUM_CLASSES
from emotion_fusion.errors import InputError

from .fusion import SWEEP_STEP, WEIGHT, _check_rule, _scores_per_weight, _weights, check_weight, fused_labels, pick_best
from .stats import _check_split, _val_sweep, draw_pairings

FAMILIES = {"copula": "Gaussian copula on true-class probabilities", "wrong": "same wrong guess aligned"}
RHOS = tuple(round(float(r), 2) for r in np.linspace(-1, 1, 21))
DRAWS = 20
BRANCHES, GAINS = ("visual", "text"), ("fusion", "fusion_best_val")
METRICS = ("accuracy", "macro_f1")
SPREAD = "± is the sd over the draws: how much the pairing moves a value, not a sampling interval"


# ---------------------------------------------------------------- the pairings
@lru_cache(maxsize=None)
def _normal_scores(n: int) -> np.ndarray:
    inv = NormalDist().inv_cdf
    return np.array([inv((k + 0.5) / n) for k in range(n)])


def _positions(keys: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (0 = smallest key; ties by index, so each row is a permutation)."""
    order = np.argsort(keys, axis=-1, kind="stable")
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.broadcast_to(np.arange(keys.shape[-1]), order.shape), axis=-1)
    return pos


def _wrong_guess(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per item its favoured wrong class and that class's margin over the true one (> 0: predicted)."""
    rows = np.arange(y.size)
    k = np.where(np.arange(NUM_CLASSES) == y[:, None], -np.inf, p).argmax(axis=1)
    return k, p[rows, k] - p[rows, y]


def _wrong_order(k: np.ndarray, margin: np.ndarray, matched: np.ndarray) -> np.ndarray:
    """Indices in wrong-guess order: for each class j in turn, the first matched[j] items favouring j
    (larger margin first); then all the others, larger margin first."""
    order = np.lexsort((-margin, k))
    sizes = np.bincount(k, minlength=NUM_CLASSES)
    rank = np.empty(k.size, dtype=np.int64)
    rank[order] = np.arange(k.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    first = rank < matched[k]
    rest = np.argsort(-margin, kind="stable")
    return np.concatenate([order[first[order]], rest[~first[rest]]])


def _copula_orders(s: dict, draws: np.ndarray) -> list:
    """Per class (faces, the draws' slots (R, n), face positions (1, n), slot positions (R, n)), both
    by true-class probability (hardest first; slot ties: same text, or by text index)."""
    y, yt = s["y"], s["yt"]
    face_key, text_rank = s["pv"][np.arange(y.size), y], _positions(s["pt"][np.arange(yt.size), yt])
    out = []
    for c in np.unique(y):
        faces = np.flatnonzero(y == c)
        slots = draws[:, faces]
        out.append((faces, slots, _positions(face_key[faces])[None], _positions(text_rank[slots])))
    return out


def _copula_at(orders: list, rho: float, shape: tuple) -> np.ndarray:
    """The pairings (R, n_faces) at rho: per class, the slots re-dealt by the copula's w."""
    out = np.empty(shape, dtype=np.int64)
    for faces, slots, face_pos, slot_pos in orders:
        z = _normal_scores(faces.size)
        w = rho * z[face_pos] + np.sqrt(1.0 - rho * rho) * z[slot_pos]
        by_w = np.argsort(np.broadcast_to(w, slots.shape), axis=1, kind="stable")
        dealt = np.empty_like(slots)
        np.put_along_axis(dealt, by_w, np.take_along_axis(slots, np.argsort(slot_pos, axis=1), 1), 1)
        out[:, faces] = dealt
    return out


def _wrong_at(s: dict, draws: np.ndarray, share: np.ndarray, rho: float) -> np.ndarray:
    """The pairings at rho: per draw and class, the pairs with share < rho re-dealt among themselves so
    that faces and texts favouring the same wrong class meet, as many as those pairs allow."""
    (kf, mf), (kt, mt) = _wrong_guess(s["pv"], s["y"]), _wrong_guess(s["pt"], s["yt"])
    out = draws.copy()
    for c in np.unique(s["y"]):
        faces = np.flatnonzero(s["y"] == c)
        for r in range(len(draws)):
            pick = faces[share[r, faces] < rho]
            slots = draws[r, pick]
            matched = np.minimum(np.bincount(kf[pick], minlength=NUM_CLASSES),
                                 np.bincount(kt[slots], minlength=NUM_CLASSES))
            out[r, pick[_wrong_order(kf[pick], mf[pick], matched)]] = slots[_wrong_order(kt[slots], mt[slots],
                                                                                          matched)]
    return out


def _shares(seed: int, stream: int, shape: tuple) -> np.ndarray:
    """The `wrong` family's uniform draw per (draw, face); row r does not depend on how many rows."""
    # spawn_key: a stream of its own, apart from every draw_seed(seed, stream, r)
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)], spawn_key=(1,))).random(shape)


def _check_family(family: str, rho) -> float:
    if family not in FAMILIES:
        raise InputError(f"unknown dependence family {family!r}; choose one of {', '.join(FAMILIES)}")
    lo = 0.0 if family == "wrong" else -1.0
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not lo <= rho <= 1.0:
        raise InputError(f"rho = {rho!r} for family {family!r}: use a number in [{lo:g}, 1]")
    return float(rho)


def family_pairings(family: str, rho: float, p_image, y_image, p_text_items, y_text, seed: int = 0,
                    R: int = DRAWS, stream: int = 0) -> np.ndarray:
    """(R, n_faces) text indices: the random draws `stats.draw_pairings(y_image, y_text, seed, R, stream)`
    re-dealt within class by `family` at `rho` (module docstring). rho = 0 returns those draws."""
    rho = _check_family(family, rho)
    s = _check_split({"p_image": p_image, "y_image": y_image, "p_text_items": p_text_items, "y_text": y_text},
                     "dependence")
    draws = draw_pairings(s["y"], s["yt"], seed, R, stream)
    if family == "copula":
        return _copula_at(_copula_orders(s, draws), rho, draws.shape)
    return _wrong_at(s, draws, _shares(seed, stream, draws.shape), rho)


# ---------------------------------------------------------------- what a pairing does to the scores
def _dependence(y: np.ndarray, vpred: np.ndarray, tpred: np.ndarray) -> dict:
    """Per draw (rows of tpred): phi of the correctness indicators, pooled and within class, and the
    rate of pairs where both branches make the same wrong guess."""
    cv, ct = (vpred == y).astype(float), (tpred == y).astype(float)
    onehot = (y[:, None] == np.arange(NUM_CLASSES)).astype(float)
    n, kv, kt, k11 = onehot.sum(0), cv @ onehot, ct @ onehot, (ct * cv) @ onehot
    # a class with no faces here adds nothing to the within-class sums (its 0/0 would make them NaN)
    inv = np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sv, st = cv.mean(), ct.mean(1)
        phi = ((ct * cv).mean(1) - sv * st) / np.sqrt(sv * (1 - sv) * st * (1 - st))
        # the within-class version: pooled covariance over pooled variances (class means removed)
        cov, var_t = (k11 - kv * kt * inv).sum(1), (kt - kt * kt * inv).sum(1)
        within = cov / np.sqrt((kv - kv * kv * inv).sum() * var_t)
    return {"phi": phi, "phi_within": within, "same_wrong": ((tpred == vpred) & (vpred != y)).mean(1)}


def _score(v: dict, t: dict, vp: np.ndarray, tp: np.ndarray, weight: float, rule: str, prefer: float) -> dict:
    """Per draw: dependence, the four models' scores and fusion minus the better branch (on val)."""
    weights = _weights(SWEEP_STEP)
    best = weights[pick_best(weights, _val_sweep(v, vp, rule), prefer)]
    # each draw's pairs fused at the configured weight and at the weight its own val pairs chose
    fused = np.stack([fused_labels(t["pv"], t["pt"][p], [weight, w], rule) for p, w in zip(tp, best)], axis=1)
    tpred = t["pt"].argmax(1)[tp]
    preds = {"visual": np.broadcast_to(t["pv"].argmax(1), tp.shape), "text": tpred, "fusion": fused[0],
             "fusion_best_val": fused[1]}
    out = {"best_weight": best, **_dependence(t["y"], t["pv"].argmax(1), tpred),
           "val_phi": _dependence(v["y"], v["pv"].argmax(1), v["pt"].argmax(1)[vp])["phi"]}
    for m, p in preds.items():
        out[f"{m}_accuracy"], out[f"{m}_macro_f1"] = _scores_per_weight(p, t["y"])
    val_vis = _scores_per_weight(v["pv"].argmax(1)[None], v["y"])[1][0]
    better_text = _scores_per_weight(v["pt"].argmax(1)[vp], v["y"])[1] > val_vis
    for m in GAINS:
        for k in METRICS:
            out[f"gain_{m}_{k}"] = out[f"{m}_{k}"] - np.where(better_text, out[f"text_{k}"], out[f"visual_{k}"])
    out["better_branch_text"] = better_text.astype(float)
    return out


def _number(x: float):
    return float(x) if np.isfinite(x) else None


def _summary(per_draw: dict) -> dict:
    return {k: _number(v.mean()) for k, v in per_draw.items()} | {
        f"{k}_sd": _number(v.std()) for k, v in per_draw.items() if k != "better_branch_text"}


def _crossing(rows: list[dict], key: str) -> dict:
    """Where the mean `key` first falls to <= 0 as rho rises from 0 (linear between settings), and phi within
    class there (pooled phi also carries the classes' differing difficulty: well above 0 at rho = 0)."""
    up = [r for r in rows if r["rho"] >= 0]
    g, rho, phi = ([r[k] for r in up] for k in (key, "rho", "phi_within"))
    if g[0] <= 0:
        return {"crosses": True, "rho": rho[0], "phi_within": phi[0]}
    for i in range(len(up) - 1):
        if g[i + 1] <= 0:
            f = g[i] / (g[i] - g[i + 1])
            return {"crosses": True, "rho": rho[i] + f * (rho[i + 1] - rho[i]),
                    "phi_within": None if None in (phi[i], phi[i + 1]) else phi[i] + f * (phi[i + 1] - phi[i])}
    return {"crosses": False, "rho": None, "phi_within": None, "smallest": min(g), "at_rho": rho[int(np.argmin(g))]}


def _at_phi(rows: list[dict], phi: float | None, key: str) -> float | None:
    """The curve's `key` at phi within class, linear between settings; None where phi is undefined or beyond
    the phi the curve reached (np.interp would return the end value there, a gain the curve never showed)."""
    pts = sorted((r["phi_within"], r[key]) for r in rows if r["phi_within"] is not None and r[key] is not None)
    if phi is None or not pts or not pts[0][0] <= phi <= pts[-1][0]:
        return None
    x, y = zip(*pts)
    return float(np.interp(phi, x, y))


def _check_rhos(rhos) -> list[float]:
    return sorted({_check_family("copula", r) for r in rhos} | {0.0})


def _dealer(family: str, v: dict, t: dict, vd: np.ndarray, td: np.ndarray, seed: int):
    """rho -> (val pairings, test pairings) of `family`, with the rho-free work done once."""
    if family == "copula":
        vo, to = _copula_orders(v, vd), _copula_orders(t, td)
        return lambda rho: (_copula_at(vo, rho, vd.shape), _copula_at(to, rho, td.shape))
    vs, ts = _shares(seed, 0, vd.shape), _shares(seed, 1, td.shape)
    return lambda rho: (_wrong_at(v, vd, vs, rho), _wrong_at(t, td, ts, rho))


def curve(val: dict, test: dict, weight: float = WEIGHT, rule: str = "linear", R: int = DRAWS, seed: int = 0,
          rhos=RHOS, prefer: float = WEIGHT, stored: bool = False) -> dict:
    """The dependence curve: per family and rho, the mean and sd over R seeded draws (val and test built
    the same way) of phi, phi within class, the same-wrong-guess rate, every model's accuracy and
    macro-F1, fusion minus the better branch (higher validation macro-F1 on the same draw) at `weight`
    and at each draw's best validation weight (ties toward `prefer`). Inputs: the per-item dicts of
    `score_draws`. `rhos`: the copula family's grid (0 always added); `wrong` uses its values >= 0.
    `stored=True` also scores the stored `pairs` (a protocol that builds its own, e.g. the seed
    protocol's CLIP matches) and places them on each family's curve by their phi within class. JSON-able."""
    weight, prefer, rule, grid = check_weight(weight), check_weight(prefer), _check_rule(rule), _check_rhos(rhos)
    v, t = _check_split(val, "val"), _check_split(test, "test")
    vd, td = draw_pairings(v["y"], v["yt"], seed, R, 0), draw_pairings(t["y"], t["yt"], seed, R, 1)
    independent = _score(v, t, vd, td, weight, rule, prefer)
    rows, moved = [], 0.0
    for family in FAMILIES:
        deal = _dealer(family, v, t, vd, td, seed)
        for rho in (r for r in grid if family == "copula" or r >= 0):
            per = independent if rho == 0 else _score(v, t, *deal(rho), weight, rule, prefer)
            moved = max(moved, *(np.abs(per[f"{m}_{k}"] - independent[f"{m}_{k}"]).max()
                                 for m in BRANCHES for k in METRICS))
            rows.append({"family": family, "rho": rho, **_summary(per)})
    out = {"weight": weight, "rule": rule, "prefer": prefer, "seed": int(seed), "draws": int(R),
           "families": FAMILIES, "spread": SPREAD, "rows": rows,
           "branches_unchanged": bool(moved == 0.0), "branch_scores_max_change": float(moved),
           "crossing": {f: {f"gain_{m}_{k}": _crossing([r for r in rows if r["family"] == f], f"gain_{m}_{k}")
                            for m in GAINS for k in METRICS} for f in FAMILIES}}
    if stored:
        if "pairs" not in v or "pairs" not in t:
            raise InputError("stored=True places the stored pairs on the curve, but val or test has none; "
                             "re-run the run, or use stored=False")
        point = _summary(_score(v, t, v["pairs"][None], t["pairs"][None], weight, rule, prefer))
        on_curve = {}
        for f in FAMILIES:   # by phi within class, the curve's x; None: beyond the phi the family reached
            fam = [r for r in rows if r["family"] == f]
            reached = [r["phi_within"] for r in fam if r["phi_within"] is not None]
            on_curve[f] = {"phi_within_range": [min(reached), max(reached)] if reached else None,
                           **{f"gain_{m}_macro_f1": _at_phi(fam, point["phi_within"], f"gain_{m}_macro_f1")
                              for m in GAINS}}
        out["stored_pairs"] = {**{k: v for k, v in point.items() if not k.endswith("_sd")}, "curve_at_same_phi": on_curve}
    return out


# ---------------------------------------------------------------- in words
def _pm(row: dict, key: str, scale: float = 100, digits: int = 1, sign: str = "+") -> str:
    """A curve row's value as "mean ± sd" (no sd for a single pairing; "-" when undefined)."""
    if row[key] is None:
        return "-"
    sd = row.get(f"{key}_sd")
    return f"{scale * row[key]:{sign}.{digits}f}" + (f" ± {scale * sd:.{digits}f}" if sd else "")


def curve_title(res: dict) -> str:
    """What the curve's numbers are, in one line."""
    return (f"{res.get('title', 'Late fusion')} — fusion under dependence, test pairs: mean ± sd over "
            f"{res['draws']} seeded pairing draws per setting; {res['spread']}")


def curve_records(res: dict, metric: str = "macro_f1") -> list[dict]:
    """One table row per family and rho: phi, same-wrong-guess rate, each model's score, the gains."""
    m = metric.replace("_", "-")
    return [{"family": row["family"], "rho": row["rho"], "phi": _pm(row, "phi", 1, 3),
             "phi within class": _pm(row, "phi_within", 1, 3),
             "same wrong guess %": _pm(row, "same_wrong", sign="-"),
             f"visual {m} %": f"{100 * row[f'visual_{metric}']:.1f}",
             f"text {m} %": f"{100 * row[f'text_{metric}']:.1f}",
             f"fusion w = {res['weight']:.2f}, {m} %": _pm(row, f"fusion_{metric}", sign="-"),
             "gain (points)": _pm(row, f"gain_fusion_{metric}"),
             f"fusion best val w, {m} %": _pm(row, f"fusion_best_val_{metric}", sign="-"),
             "gain at best val w (points)": _pm(row, f"gain_fusion_best_val_{metric}"),
             "best val w": f"{row['best_weight']:.2f}"} for row in res["rows"]]


def _where(c: dict) -> str:
    if not c["crosses"]:
        return f"never (smallest {100 * c['smallest']:+.1f} points, at rho = {c['at_rho']:.2f})"
    if c["rho"] == 0:
        return "already at rho = 0 (independent): no gain to lose"
    return f"rho = {c['rho']:.2f}" + ("" if c["phi_within"] is None else f", phi within class = {c['phi_within']:.3f}")


def format_curve(res: dict) -> str:
    """Plain text: the title, the macro-F1 table, then `curve_summary`."""
    recs = curve_records(res)
    widths = {k: max(len(k), *(len(str(r[k])) for r in recs)) for k in recs[0]}   # header: each key as itself
    lines = [curve_title(res)] + ["  ".join(str(r[k]).rjust(w) for k, w in widths.items())
                                  for r in [dict(zip(widths, widths)), *recs]]
    return "\n".join(lines + [curve_summary(res)])


def curve_summary(res: dict) -> str:
    """Where the gain reaches zero per family, the check that the branches did not move, the stored pairs."""
    lines = ["Where the mean macro-F1 gain (fusion - better branch) first reaches zero as rho rises from 0:"]
    for f, label in res["families"].items():
        for m, name in (("fusion", f"w = {res['weight']:.2f}"), ("fusion_best_val", "best val w")):
            lines.append(f"  {label}, {name}: {_where(res['crossing'][f][f'gain_{m}_macro_f1'])}")
    lines.append("Both branches' scores are the same in every setting (each draw keeps its texts and their reuse): "
                 + ("yes" if res["branches_unchanged"] else f"NO, max change {res['branch_scores_max_change']:.4f}"))
    s = res.get("stored_pairs")
    lines.append(f"At rho = 0 the curve is the mean of {res['draws']} single random pairings, each with its own best "
                 "validation weight and better branch; the headline (`fuse`, `run`) " + (
                     "scores the protocol's own pairs" if s else "is the all-pairs value at one weight chosen on "
                     "validation over all its draws") + ", so the two need not agree.")
    if s:
        lines.append(f"The protocol's own (CLIP-matched) pairs: phi = {_pm(s, 'phi', 1, 3)}, phi within class = "
                     f"{_pm(s, 'phi_within', 1, 3)}, gain at best val w {_pm(s, 'gain_fusion_best_val_macro_f1')} "
                     f"points; the curves at that phi within class: "
                     + "; ".join(f"{f} {_on_curve(g)}" for f, g in s["curve_at_same_phi"].items()))
    return "\n".join(lines)


def _on_curve(g: dict) -> str:
    gain, span = g["gain_fusion_best_val_macro_f1"], g["phi_within_range"]
    return f"{100 * gain:+.1f}" if gain is not None else (
        "beyond the curve" + (f" (it reached {span[0]:.3f} to {span[1]:.3f})" if span else ""))
