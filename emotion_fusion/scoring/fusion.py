"""Late fusion of the two branches' class probabilities, per-branch temperature scaling, weight sweep.

Everything here is numpy (scipy only inside `fit_temperature`), so the `fuse`/`sweep` CLI re-scores a
run from its cached outputs without importing torch.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from emotion_fusion.data.labels import CLASSES, NUM_CLASSES
from emotion_fusion.errors import InputError

from .metrics import N_BOOT, SEED, as_labels, confusion_scores, evaluate

WEIGHT = 0.6  # visual share; the original system's 0.6 visual / 0.4 text
RULES = ("linear", "loglinear")
EPS = 1e-12  # probability floor before taking logs
ROW_SUM_TOL = 1e-3
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))  # temperature search range
SWEEP_STEP = 0.01


def check_classes(classes: Sequence[str] | np.ndarray, source: str = "array") -> None:
    """Raise InputError unless `classes` lists exactly labels.CLASSES in canonical order."""
    got = tuple(str(c) for c in np.asarray(classes).ravel())
    if got != CLASSES:
        raise InputError(f"{source} has classes {list(got)} but the canonical order is {list(CLASSES)}; "
                         "reorder its columns (or re-run) so they follow labels.CLASSES")


def check_probs(p, name: str = "probabilities") -> np.ndarray:
    """Validate an N x 7 array of finite, non-negative rows summing to 1 (within 1e-3); return float64."""
    a = np.asarray(p)
    if a.ndim != 2 or a.shape[1] != NUM_CLASSES:
        raise InputError(f"{name} has shape {a.shape}; expected N x {NUM_CLASSES} class probabilities "
                         f"in the order {', '.join(CLASSES)}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"{name} has dtype {a.dtype}; expected real-valued probabilities")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise InputError(f"{name} row {np.flatnonzero(bad)[0]} contains NaN or infinite values; "
                         "re-run the branch that produced it")
    bad = (a < 0).any(axis=1) | (np.abs(a.sum(axis=1) - 1) > ROW_SUM_TOL)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise InputError(f"{name} row {i} is not a probability vector (sum {a[i].sum():.4f}, min "
                         f"{a[i].min():.4f}); pass softmax outputs, not logits")
    return a


def check_weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight):
        raise InputError(f"fusion weight {weight!r} is not a number; use a value between 0 "
                         "(text only) and 1 (visual only)")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"fusion weight {weight} is outside [0, 1]; use a value between 0 "
                         "(text only) and 1 (visual only)")
    return float(weight)


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise InputError(f"unknown fusion rule {rule!r}; choose one of {', '.join(RULES)}")
    return rule


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(p, EPS))


def fuse(p_visual, p_text, weight: float = WEIGHT, rule: str = "linear") -> np.ndarray:
    """Fuse two N x 7 probability arrays; `weight` is the visual share.

    linear: w * p_visual + (1 - w) * p_text (the original rule).
    loglinear: softmax(w * log p_visual + (1 - w) * log p_text), a weighted geometric mean.
    """
    w, rule = check_weight(weight), _check_rule(rule)
    pv, pt = check_probs(p_visual, "p_visual"), check_probs(p_text, "p_text")
    if pv.shape != pt.shape:
        raise InputError(f"p_visual has shape {pv.shape} but p_text has {pt.shape}; "
                         "pass one visual and one text row per pair")
    if rule == "linear":
        return w * pv + (1 - w) * pt
    return _softmax(w * _log(pv) + (1 - w) * _log(pt))


def apply_temperature(p, T: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens, T < 1 sharpens; the argmax never changes."""
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or not (np.isfinite(T) and T > 0):
        raise InputError(f"temperature {T!r} must be a positive number")
    return _softmax(_log(check_probs(p)) / float(T))


def fit_temperature(p, y, log_bounds: tuple[float, float] = LOG_T_BOUNDS) -> float:
    """Temperature minimising the NLL of `softmax(log p / T)` on validation labels `y`.

    Searched over log T within `log_bounds` (default: T in [0.05, 20]) with scipy's bounded scalar
    minimiser. The project's one NLL fit: a zero-shot head's logit scale is 1 / T of softmax(cosines).
    """
    from scipy.optimize import minimize_scalar

    logp, y = _log(check_probs(p)), as_labels(y)
    if y.size != logp.shape[0]:
        raise InputError(f"{logp.shape[0]} probability rows but {y.size} labels; pass one label per row")
    if y.size == 0:
        raise InputError("no validation samples to fit a temperature on")
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y]))

    res = minimize_scalar(nll, bounds=log_bounds, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def _weights(step: float) -> np.ndarray:
    n = 1 / step if isinstance(step, numbers.Real) and step > 0 else np.inf
    if not (np.isfinite(n) and abs(n - round(n)) < 1e-6):
        raise InputError(f"sweep step {step!r} must divide 1 evenly (e.g. 0.01, 0.05, 0.1)")
    # Rounded so that fuse(..., weight=best_weight) reproduces the sweep's numbers bit for bit.
    return np.linspace(0.0, 1.0, int(round(n)) + 1).round(6)


def _split(d: dict, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = [k for k in ("p_visual", "p_text", "y") if k not in d]
    if missing:
        raise InputError(f"sweep {name} data lacks {missing}; pass a dict with p_visual, p_text and y")
    pv, pt = check_probs(d["p_visual"], f"{name} p_visual"), check_probs(d["p_text"], f"{name} p_text")
    y = as_labels(d["y"], f"{name} y")
    if not pv.shape == pt.shape or pv.shape[0] != y.size:
        raise InputError(f"{name}: p_visual {pv.shape}, p_text {pt.shape} and y ({y.size},) "
                         "must describe the same pairs")
    return pv, pt, y


def _sweep_preds(pv, pt, weights: np.ndarray, rule: str) -> np.ndarray:
    """Predicted ids for every weight at once, shape (W, N); argmax ignores loglinear's softmax.

    A running max over the 7 classes on (W, N) planes: much faster than argmax over a trailing
    axis of length 7, and it keeps argmax's first-maximum tie rule.
    """
    a, b = (pv, pt) if rule == "linear" else (_log(pv), _log(pt))
    a, b, w = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), weights[:, None]
    best = w * a[0] + (1 - w) * b[0]
    arg = np.zeros(best.shape, dtype=np.int64)
    for k in range(1, NUM_CLASSES):
        s = w * a[k] + (1 - w) * b[k]
        better = s > best
        best = np.where(better, s, best)
        arg[better] = k
    return arg


def fused_labels(pv: np.ndarray, pt: np.ndarray, weights, rule: str = "linear") -> np.ndarray:
    """Fused labels (W, N) at each weight, for arrays and weights the caller has checked once
    (`check_probs`, `check_weight`, rule in RULES): equal to `fuse(pv, pt, w, rule).argmax(1)` per w."""
    return _sweep_preds(pv, pt, np.asarray(weights, dtype=np.float64), rule)


def grid_labels(pv: np.ndarray, pt: np.ndarray, weight: float, rule: str = "linear") -> np.ndarray:
    """Fused labels (n, m) of every face x text combination: row i, column j is
    `fuse(pv[i], pt[j], weight, rule).argmax()` (same arithmetic, first maximum on ties). Inputs as
    `fused_labels` takes them; memory ~3 n m floats."""
    a, b = (pv, pt) if rule == "linear" else (_log(pv), _log(pt))
    a, b = weight * a, (1 - weight) * b
    best = a[:, None, 0] + b[None, :, 0]
    arg = np.zeros(best.shape, dtype=np.int64)
    for k in range(1, NUM_CLASSES):
        s = a[:, None, k] + b[None, :, k]
        better = s > best
        np.copyto(best, s, where=better)
        arg[better] = k
    return arg


def _scores_per_weight(preds: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 per row of `preds` (W, N): one bincount builds all W confusion matrices."""
    k = NUM_CLASSES * NUM_CLASSES
    flat = (np.arange(preds.shape[0])[:, None] * k + y[None, :] * NUM_CLASSES + preds).ravel()
    counts = np.bincount(flat, minlength=preds.shape[0] * k).reshape(-1, NUM_CLASSES, NUM_CLASSES)
    return confusion_scores(counts)


def pick_best(weights: np.ndarray, val_f1: np.ndarray, prefer: float = WEIGHT) -> np.ndarray:
    """Index of the best weight per row of `val_f1` (..., W): the highest validation macro-F1, ties
    (within 1e-12) going to the weight closest to `prefer`, the lower weight when equally close.

    Vectorised over leading axes so that `stats` picks one weight per pairing draw with the same rule.
    """
    f1 = np.asarray(val_f1, dtype=np.float64)
    top = f1 >= f1.max(axis=-1, keepdims=True) - 1e-12
    return np.where(top, np.abs(np.asarray(weights) - prefer), np.inf).argmin(axis=-1)


def sweep_counts(a: np.ndarray, b: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Confusion counts (D, W, 7, 7) of argmax(w a + (1 - w) b) at every sorted weight in [0, 1].

    a, b: (D, N, 7) visual / text scores of D pairings of N pairs (log-probabilities for loglinear),
    y: (N,) labels. `stats` uses it to sweep 200 validation pairings in a fraction of a second.
    Each class score is a line in w, so a pair's prediction is the upper envelope of 7 lines and
    changes at most 6 times: we walk the envelope (vectorised over pairs), then add +1/-1 at the grid
    indices where a segment starts/ends and take a cumulative sum over w. This is O(N) per draw
    instead of the O(101 N 7) of `_sweep_preds`, and gives the same counts except where two
    classes tie to the last bit exactly at a grid weight (tested against `_sweep_preds`).
    """
    D, N, K = a.shape
    a, b = a.reshape(-1, K), b.reshape(-1, K)
    n_w, slope, rows = weights.size, a - b, np.arange(D * N)
    cell = (rows // N) * (n_w + 1) * K * K + np.tile(y, D) * K  # the draw and true-class part of a cell
    cls = b.argmax(axis=1)  # the class at w = 0
    idx, val = [cell + cls], [np.ones(rows.size)]
    act, w_at = rows, np.zeros(rows.size)
    for _ in range(K - 1):
        den = slope[act] - slope[act, cls][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (b[act, cls][:, None] - b[act]) / den  # where each steeper line overtakes the current one
        t = np.where(den > 0, np.maximum(t, w_at[:, None]), np.inf)
        t_next = t.min(axis=1)
        go = t_next < 1.0
        if not go.any():
            break
        act, t, t_next, old = act[go], t[go], t_next[go], cls[go]
        cls = np.where(t == t_next[:, None], slope[act], -np.inf).argmax(axis=1)  # tie: steepest wins
        g = np.searchsorted(weights, t_next) * K * K
        idx += [cell[act] + g + old, cell[act] + g + cls]
        val += [-np.ones(act.size), np.ones(act.size)]
        w_at = t_next
    flat = np.bincount(np.concatenate(idx), np.concatenate(val), minlength=D * (n_w + 1) * K * K)
    counts = np.rint(np.cumsum(flat.reshape(D, n_w + 1, K * K), axis=1)[:, :n_w]).astype(np.int64)
    return counts.reshape(D, n_w, NUM_CLASSES, NUM_CLASSES)


def sweep(val: dict, test: dict | None = None, rule: str = "linear", step: float = SWEEP_STEP,
          prefer: float = WEIGHT, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Score fusion at weights 0, step, ..., 1 on validation (and test); pick the weight on val.

    The best weight maximises validation macro-F1; ties go to the weight closest to `prefer`.
    Returns the per-weight lists, `best_weight`, and (with `test`) `test_at_best`: the test
    scores at that weight with bootstrap CIs. Test scores never influence the choice.
    """
    rule, prefer = _check_rule(rule), check_weight(prefer)
    weights = _weights(step)
    pv, pt, y = _split(val, "val")
    val_acc, val_f1 = _scores_per_weight(_sweep_preds(pv, pt, weights, rule), y)
    best = int(pick_best(weights, val_f1, prefer))
    out = {"rule": rule, "weights": weights.tolist(), "val_accuracy": val_acc.tolist(),
           "val_macro_f1": val_f1.tolist(), "best_weight": float(weights[best]),
           "best_val_macro_f1": float(val_f1[best]), "best_val_accuracy": float(val_acc[best])}
    if test is not None:
        tv, tt, ty = _split(test, "test")
        preds = _sweep_preds(tv, tt, weights, rule)
        test_acc, test_f1 = _scores_per_weight(preds, ty)
        out.update(test_accuracy=test_acc.tolist(), test_macro_f1=test_f1.tolist(),
                   test_at_best=evaluate(ty, preds[best], n_boot=n_boot, seed=seed))
    return out
