"""Accuracy, macro-F1, bootstrap CIs, per-class report, confusion matrix and McNemar's test.

The point metrics and the bootstrap are computed from confusion counts with numpy (all resamples at
once) instead of calling scikit-learn per resample: 1,000 sklearn calls take seconds, and importing
sklearn alone (~1.5 s here) would use up the `fuse` CLI's whole 1.5 s limit (benchmarks/fusion.py (3)
times `fuse` against it). The tests check
that every value equals scikit-learn's. sklearn / pandas are imported inside the functions that need
them (`per_class_table`, `confusion`), so this module costs only numpy to import.
"""
from __future__ import annotations

import math

import numpy as np

from emotion_fusion.data.labels import CLASSES, NUM_CLASSES
from emotion_fusion.errors import InputError

from .bootstrap import multiplicities, weighted_confusion

N_BOOT = 1000  # bootstrap resamples
CI = 0.95  # two-sided percentile interval
SEED = 0
EXACT_BELOW = 25  # McNemar: exact binomial test when b + c < 25, else chi-square with correction
METRICS = ("accuracy", "macro_f1")


def as_pred(p_or_pred, name: str = "predictions") -> np.ndarray:
    """Predicted class ids from an N x 7 probability array (argmax) or an N vector of ints."""
    a = np.asarray(p_or_pred)
    if a.ndim == 2:
        if a.shape[1] != NUM_CLASSES:
            raise InputError(f"{name} has shape {a.shape}; expected N x {NUM_CLASSES} probabilities "
                             f"({', '.join(CLASSES)}) or N class ids")
        if not np.isfinite(a).all():
            raise InputError(f"{name} contains NaN or infinite values; re-run the branch that made them")
        return a.argmax(axis=1)
    return as_labels(a, name)


def as_labels(y, name: str = "y") -> np.ndarray:
    """Validate a 1-D vector of class ids in 0..6 and return it as int64."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise InputError(f"{name} has shape {a.shape}; expected a 1-D vector of class ids "
                         f"0..{NUM_CLASSES - 1}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() and (a == np.round(a)).all()):
            raise InputError(f"{name} has dtype {a.dtype}; expected integer class ids 0..{NUM_CLASSES - 1}")
    a = a.astype(np.int64)
    bad = np.flatnonzero((a < 0) | (a >= NUM_CLASSES))
    if bad.size:
        raise InputError(f"{name}[{bad[0]}] = {a[bad[0]]} is not a class id 0..{NUM_CLASSES - 1}")
    return a


def _pair(y, pred) -> tuple[np.ndarray, np.ndarray]:
    y, pred = as_labels(y, "y"), as_pred(pred, "pred")
    if y.shape != pred.shape:
        raise InputError(f"y has {y.size} labels but predictions have {pred.size}; pass one per sample")
    if y.size == 0:
        raise InputError("no samples to score (y is empty); check the split that produced them")
    return y, pred


def _counts(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Confusion counts [true, pred], shape (1, 7, 7)."""
    cell = y * NUM_CLASSES + pred
    return np.bincount(cell, minlength=NUM_CLASSES ** 2).reshape(1, NUM_CLASSES, NUM_CLASSES)


def confusion_scores(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 per confusion matrix in `counts` (R, 7, 7): the project's one definition.

    Macro-F1 is the mean F1 over the 7 canonical classes (scikit-learn's
    `f1_score(..., labels=range(7), average="macro", zero_division=0)`): a class that never occurs in
    y or in the predictions counts as F1 = 0, so a score is always over the same 7 classes.
    """
    tp = np.diagonal(counts, axis1=1, axis2=2).astype(float)
    denom = (counts.sum(axis=2) + counts.sum(axis=1)).astype(float)  # = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return tp.sum(axis=1) / counts.sum(axis=(1, 2)), f1.mean(axis=1)


def macro_f1(y, pred) -> float:
    """Macro-F1 over the 7 classes (see `confusion_scores`) of labels `y` and predictions `pred`."""
    y, pred = _pair(y, pred)
    return float(confusion_scores(_counts(y, pred))[1][0])


def _check_ci(n_boot: int, ci: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InputError(f"n_boot = {n_boot!r}; use a positive number of bootstrap resamples (e.g. 1000)")
    if not 0 < ci < 1:
        raise InputError(f"ci = {ci!r}; use a confidence level between 0 and 1 (e.g. 0.95)")


def _boot_counts(y: np.ndarray, preds: list[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """Per model, the (n_boot, 7, 7) confusion counts of the same seeded resamples of the N samples
    (paired bootstrap): `bootstrap.multiplicities` with one group, the project's one bootstrap."""
    w = multiplicities([np.arange(y.size)], y.size, n_boot, np.random.default_rng(seed))
    return [weighted_confusion(w, y, p) for p in preds]


def _interval(values: np.ndarray, ci: float) -> list[float]:
    lo, hi = np.percentile(values, [50 * (1 - ci), 50 * (1 + ci)])
    return [float(lo), float(hi)]


def bootstrap_ci(y, pred, metric: str, n_boot: int = N_BOOT, seed: int = SEED,
                 ci: float = CI) -> list[float]:
    """Percentile bootstrap interval [lo, hi] of `metric` ("accuracy" or "macro_f1").

    Vectorised over resamples; the same seed gives the same interval.
    """
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    _check_ci(n_boot, ci)
    y, pred = _pair(y, pred)
    acc, f1 = confusion_scores(_boot_counts(y, [pred], n_boot, seed)[0])
    return _interval(acc if metric == "accuracy" else f1, ci)


def evaluate_many(y, preds: dict, *, n_boot: int = N_BOOT, seed: int = SEED, ci: float = CI) -> dict:
    """`evaluate` for several models on the same samples, with CIs from shared (paired) resamples.

    `preds` maps a name to probabilities or class ids; returns {name: evaluate-style dict}.
    """
    y = as_labels(y)
    pairs = {name: _pair(y, p) for name, p in preds.items()}
    out = {}
    for name, (_, pred) in pairs.items():
        acc, f1 = confusion_scores(_counts(y, pred))
        out[name] = {"accuracy": float(acc[0]), "macro_f1": float(f1[0]), "accuracy_ci": None,
                     "macro_f1_ci": None, "n": int(y.size)}
    if n_boot == 0:  # quick re-scoring: point estimates only
        return out
    _check_ci(n_boot, ci)
    boots = _boot_counts(y, [pred for _, pred in pairs.values()], n_boot, seed)
    for name, counts in zip(pairs, boots):
        b_acc, b_f1 = confusion_scores(counts)
        out[name].update(accuracy_ci=_interval(b_acc, ci), macro_f1_ci=_interval(b_f1, ci))
    return out


def evaluate(y, p_or_pred, *, n_boot: int = N_BOOT, seed: int = SEED, ci: float = CI) -> dict:
    """{accuracy, macro_f1, accuracy_ci, macro_f1_ci, n} for probabilities (argmax) or class ids.

    `n_boot=0` skips the bootstrap (the CIs are then None) for quick re-scoring.
    """
    return evaluate_many(y, {"model": p_or_pred}, n_boot=n_boot, seed=seed, ci=ci)["model"]


def confusion(y, pred, normalize: bool = False) -> np.ndarray:
    """7 x 7 confusion matrix [true, predicted] in canonical order; rows sum to 1 when normalize."""
    from sklearn.metrics import confusion_matrix

    y, pred = _pair(y, pred)
    return confusion_matrix(y, pred, labels=list(range(NUM_CLASSES)),
                            normalize="true" if normalize else None)


def per_class_table(y, pred):
    """pandas DataFrame of precision, recall, f1 and support per class (index = CLASSES)."""
    import pandas as pd
    from sklearn.metrics import precision_recall_fscore_support

    y, pred = _pair(y, pred)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=list(range(NUM_CLASSES)),
                                                 zero_division=0)
    return pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s},
                        index=pd.Index(CLASSES, name="class"))


def mcnemar(y, pred_a, pred_b) -> dict:
    """McNemar's test of two classifiers on the same samples: {b, c, statistic, pvalue, method}.

    b = a right & b wrong, c = a wrong & b right. Exact two-sided binomial test when b + c < 25, else
    chi-square with continuity correction -- the same rule and numbers as statsmodels' `mcnemar`
    (checked in tests). Written with `math` because importing statsmodels costs ~1.5 s, the whole
    budget of the `fuse` CLI, for two closed-form lines.
    """
    y, a = _pair(y, pred_a)
    _, b_pred = _pair(y, pred_b)
    ok_a, ok_b = a == y, b_pred == y
    b, c = int((ok_a & ~ok_b).sum()), int((~ok_a & ok_b).sum())
    n = b + c
    if n < EXACT_BELOW:
        # P(X <= min(b, c)) for X ~ Binomial(n, 1/2), doubled, capped at 1.
        k = min(b, c)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
        return {"b": b, "c": c, "statistic": float(k), "pvalue": min(1.0, 2 * tail),
                "method": "exact binomial"}
    stat = (abs(b - c) - 1) ** 2 / n
    # Survival function of chi-square with 1 dof: P(Z^2 > x) = erfc(sqrt(x / 2)).
    return {"b": b, "c": c, "statistic": float(stat), "pvalue": math.erfc(math.sqrt(stat / 2)),
            "method": "chi-square with continuity correction"}
