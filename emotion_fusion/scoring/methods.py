"""The fusion methods on probabilities: today's two rules, the product rule with its prior correction,
stacking and a weight per class. Each is one registry entry (registry.py); the ones on embeddings and
per-pair weights are in learned.py. Fitted on validation pairs only (the caller never passes test).
"""
from __future__ import annotations

import numpy as np

from emotion_fusion.data.labels import NUM_CLASSES

from .fusion import SWEEP_STEP, WEIGHT, _weights, check_weight, pick_best
from .registry import Fitted, Items, register_fusion
from .stats import _val_sweep

FIT_DRAWS = 8          # validation pairings a learned method is fitted on (n_val faces x 8 pairs)
MAXITER = 300          # L-BFGS iterations for the NLL fits
ABSENT = -1e9          # the score of a class that no fitting pair has (never predicted)


# ---------------------------------------------------------------- shared by the learned methods
def fit_pairs(items: Items, draws: np.ndarray, n_draws: int | None = FIT_DRAWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces, texts, labels) of the fitting pairs: face i with text draws[r, i], for the first n_draws draws."""
    d = draws if n_draws is None else draws[:n_draws]
    faces = np.tile(np.arange(d.shape[1]), d.shape[0])
    return faces, d.ravel(), items.yv[faces]


def nll_grad(s: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of scores s (N, 7) against y, and its gradient with respect to s."""
    z = s - s.max(axis=1, keepdims=True)
    e = np.exp(z)
    q = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(y.size)
    loss = float(np.mean(np.log(e.sum(axis=1)) - z[rows, y]))
    q[rows, y] -= 1.0
    return loss, q / y.size


def minimize_nll(loss_grad, x0: np.ndarray, maxiter: int = MAXITER) -> np.ndarray:
    """L-BFGS on a (loss, gradient) function of a flat parameter vector; deterministic given x0."""
    from scipy.optimize import minimize

    res = minimize(loss_grad, np.asarray(x0, dtype=np.float64), jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter})
    return res.x


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- today's two rules, the weight by the val sweep
def _sweep_rule(rule: str):
    def fit(items: Items, draws: np.ndarray, settings: dict, seed: int) -> Fitted:
        # today's choice (stats.score_draws): the weight with the highest validation macro-F1 averaged over
        # the draws, ties toward the default 0.6; with the headline's draws it is the headline's best weight
        if "weight" in settings:    # a weight given by the caller (compare --weight): nothing is fitted
            w = check_weight(settings["weight"])
        else:
            weights = _weights(SWEEP_STEP)
            w = float(weights[pick_best(weights, _val_sweep(items.split_dict(), draws, rule).mean(0), WEIGHT)])
        if rule == "linear":
            return Fitted(face=lambda it: w * it.pv, text=lambda it: (1 - w) * it.pt, combine=np.add,
                          space="prob", params={"weight": w})
        return Fitted(face=lambda it: w * it.lv, text=lambda it: (1 - w) * it.lt, combine=np.add,
                      params={"weight": w})
    return fit


register_fusion("linear", label="w p_visual + (1 - w) p_text (the original's rule)",
                fitted_on="w: the validation sweep (0, 0.01, ..., 1), best mean macro-F1 over the draws")(
    _sweep_rule("linear"))
register_fusion("loglinear", label="softmax(w log p_visual + (1 - w) log p_text)",
                fitted_on="w: the validation sweep (0, 0.01, ..., 1), best mean macro-F1 over the draws")(
    _sweep_rule("loglinear"))


@register_fusion("product_prior", label="log p_visual + log p_text - log prior (the product rule)",
                 fitted_on="the prior only: the validation faces' class mix (no weights)")
def _product_prior(items: Items, draws: np.ndarray, settings: dict, seed: int) -> Fitted:
    # p(y | face, text) is proportional to p(y | face) p(y | text) / p(y) when face and text are independent
    # given y and both branches are calibrated to the same prior p(y) (Kittler et al. 1998): the prior
    # counted twice in the product is divided out once
    counts = np.bincount(items.yv, minlength=NUM_CLASSES).astype(np.float64)
    log_prior = np.log(np.maximum(counts / counts.sum(), 1e-12))
    return Fitted(face=lambda it: it.lv - log_prior, text=lambda it: it.lt, combine=np.add,
                  params={"prior": np.round(counts / counts.sum(), 4).tolist()})


@register_fusion("stacking", label="multinomial logistic regression on both branches' log-probabilities",
                 settings=({"C": 0.01}, {"C": 0.1}, {"C": 1.0}), fit_draws=FIT_DRAWS,
                 fitted_on="14 x 7 coefficients + 7 intercepts on the standardized log-probabilities "
                 "(scikit-learn, L2 with inverse strength C)")
def _stacking(items: Items, draws: np.ndarray, settings: dict, seed: int) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    faces, texts, y = fit_pairs(items, draws)
    x = np.hstack([items.lv[faces], items.lt[texts]])
    # standardized: the floor of log 1e-12 makes raw log-probabilities ill-conditioned (10-20x more L-BFGS
    # iterations, measured on the offline run); the scaling is folded back into the coefficients below
    mu, sd = x.mean(0), x.std(0) + 1e-12
    clf = LogisticRegression(C=settings["C"], max_iter=2000).fit((x - mu) / sd, y)
    coef, bias = np.zeros((NUM_CLASSES, 2 * NUM_CLASSES)), np.full(NUM_CLASSES, ABSENT)
    coef[clf.classes_] = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_, clf.coef_]) / 2
    bias[clf.classes_] = clf.intercept_ if len(clf.classes_) > 2 else np.r_[-clf.intercept_, clf.intercept_] / 2
    coef = coef / sd
    bias = bias - coef @ mu
    wv, wt = coef[:, :NUM_CLASSES].T.copy(), coef[:, NUM_CLASSES:].T.copy()
    return Fitted(face=lambda it: it.lv @ wv + bias, text=lambda it: it.lt @ wt, combine=np.add,
                  params={"C": settings["C"], "visual_coef_diag": np.round(np.diag(wv), 3).tolist(),
                          "text_coef_diag": np.round(np.diag(wt), 3).tolist()})


@register_fusion("per_class", label="w_k log p_visual,k + (1 - w_k) log p_text,k, a weight per class",
                 fit_draws=FIT_DRAWS, fitted_on="7 weights (sigmoid of a free parameter), by NLL on the draws")
def _per_class(items: Items, draws: np.ndarray, settings: dict, seed: int) -> Fitted:
    faces, texts, y = fit_pairs(items, draws)
    lv, lt = items.lv[faces], items.lt[texts]
    diff = lv - lt

    def loss_grad(theta):
        w = _sigmoid(theta)
        loss, ds = nll_grad(lt + w * diff, y)
        return loss + 1e-4 * theta @ theta, (ds * diff).sum(0) * w * (1 - w) + 2e-4 * theta

    w = _sigmoid(minimize_nll(loss_grad, np.zeros(NUM_CLASSES)))
    return Fitted(face=lambda it: w * it.lv, text=lambda it: (1 - w) * it.lt, combine=np.add,
                  params={"weights": np.round(w, 3).tolist()})
