"""The fusion methods with per-pair weights or on embeddings: the original's future work.

- `gated`: a per-pair visual weight g = sigmoid(a . u_face + b . u_text + c) from each branch's confidence
  (entropy and top probability), fused as g log p_visual + (1 - g) log p_text: "attention fusion" over
  probabilities.
- `attention`: the same per-pair weight from the two embeddings (the shape of TorchMultimodal's
  AttentionFusionModule: a softmax over a linear layer on the concatenated embeddings; over two modalities
  that softmax is a sigmoid of a linear function, which splits into a face part plus a text part).
- `early`: concatenated embeddings -> a one-hidden-layer MLP (its first layer split the same way).
Embeddings are reduced to a few whitened principal components fitted on the fitting faces / texts only
(scikit-learn PCA), so a fit takes a second. Numpy gradients and scipy's L-BFGS: no torch.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .methods import FIT_DRAWS, _sigmoid, fit_pairs, minimize_nll, nll_grad
from .registry import Fitted, Items, register_fusion

ATTENTION_DIMS = 16    # principal components per modality for the attention weight
EARLY_DIMS = 32        # ... and for the early-fusion MLP
HIDDEN = 32            # its hidden units
EARLY_DRAWS = 4        # validation pairings the MLP is fitted on (n_val faces x 4 pairs)
EARLY_MAXITER = 100    # its L-BFGS iterations (more changed test macro-F1 by < 1 point on the offline run)


def _confidence(p: np.ndarray) -> np.ndarray:
    """(n, 2): entropy and top probability of each row."""
    return np.stack([-(p * np.log(np.maximum(p, 1e-12))).sum(1), p.max(1)], axis=1)


def _standardizer(x: np.ndarray):
    mu, sd = x.mean(0), x.std(0) + 1e-8
    return lambda z: (z - mu) / sd


_PCA_CACHE: dict = {}    # (bytes digest, dims, seed) -> fitted PCA: cross-fitting and refits reuse the same items


def _pca(x: np.ndarray, dims: int, seed: int):
    """Whitened principal components of the fitting items' embeddings, as a function of any embeddings."""
    from sklearn.decomposition import PCA

    x = np.ascontiguousarray(x, dtype=np.float32)
    k = max(1, min(dims, x.shape[0] - 1, x.shape[1]))
    key = (hashlib.blake2b(x.view(np.uint8), digest_size=16).digest(), x.shape, k, int(seed))
    if key not in _PCA_CACHE:
        if len(_PCA_CACHE) >= 32:
            _PCA_CACHE.clear()
        _PCA_CACHE[key] = PCA(n_components=k, whiten=True, svd_solver="randomized", random_state=seed).fit(x)
    pca = _PCA_CACHE[key]
    return lambda z: pca.transform(np.asarray(z, dtype=np.float32)).astype(np.float64)


def _need(a, what: str) -> np.ndarray:
    if a is None:
        raise ValueError(f"{what} embeddings were not loaded")   # compare loads them for methods that need them
    return a


def _gate(items: Items, draws: np.ndarray, u_face, u_text, l2: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit the per-pair weight g = sigmoid(u_face(i) . a + u_text(j) . b + c) by NLL on the fitting pairs."""
    faces, texts, y = fit_pairs(items, draws)
    uf, ut = u_face(items), u_text(items)
    lv, lt = items.lv[faces], items.lt[texts]
    diff, df = lv - lt, uf.shape[1]

    def loss_grad(x):
        a, b, c = x[:df], x[df:-1], x[-1]
        g = _sigmoid(uf[faces] @ a + ut[texts] @ b + c)
        loss, ds = nll_grad(lt + g[:, None] * diff, y)
        dz = (ds * diff).sum(1) * g * (1 - g)
        ga = np.bincount(faces, dz, minlength=len(uf)) @ uf
        gb = np.bincount(texts, dz, minlength=len(ut)) @ ut
        return loss + 0.5 * l2 * (a @ a + b @ b), np.r_[ga + l2 * a, gb + l2 * b, dz.sum()]

    x = minimize_nll(loss_grad, np.zeros(df + ut.shape[1] + 1))
    return x[:df], x[df:-1], float(x[-1])


def _gated_fitted(u_face, u_text, a, b, c, params: dict) -> Fitted:
    def combine(fa, tb):
        g = _sigmoid(fa[..., -1:] + tb[..., -1:])
        return tb[..., :-1] + g * (fa[..., :-1] - tb[..., :-1])
    return Fitted(face=lambda it: np.hstack([it.lv, (u_face(it) @ a + c)[:, None]]),
                  text=lambda it: np.hstack([it.lt, (u_text(it) @ b)[:, None]]), combine=combine, params=params)


@register_fusion("gated", label="per-pair weight from both branches' confidence (entropy, top probability)",
                 fit_draws=FIT_DRAWS, fitted_on="5 parameters of the per-pair weight, by NLL on the draws")
def _gated(items: Items, draws: np.ndarray, settings: dict, seed: int) -> Fitted:
    sf, st = _standardizer(_confidence(items.pv)), _standardizer(_confidence(items.pt))
    u_face, u_text = (lambda it: sf(_confidence(it.pv))), (lambda it: st(_confidence(it.pt)))
    a, b, c = _gate(items, draws, u_face, u_text, 1e-4)
    return _gated_fitted(u_face, u_text, a, b, c, {"face_entropy_top": np.round(a, 3).tolist(),
                                                   "text_entropy_top": np.round(b, 3).tolist(), "bias": round(c, 3)})


@register_fusion("attention", label="per-pair modality weights from the two embeddings (attention fusion)",
                 needs=("probabilities", "embeddings"), settings=({"l2": 1.0}, {"l2": 0.1}, {"l2": 0.01}),
                 fit_draws=FIT_DRAWS, fitted_on=f"2 x {ATTENTION_DIMS} + 1 weights on whitened principal "
                 "components of the embeddings, by NLL with an L2 penalty")
def _attention(items: Items, draws: np.ndarray, settings: dict, seed: int) -> Fitted:
    pf = _pca(_need(items.ev, "image"), ATTENTION_DIMS, seed)
    pt = _pca(_need(items.et, "text"), ATTENTION_DIMS, seed)
    u_face, u_text = (lambda it: pf(it.ev)), (lambda it: pt(it.et))
    a, b, c = _gate(items, draws, u_face, u_text, settings["l2"])
    return _gated_fitted(u_face, u_text, a, b, c, {"l2": settings["l2"], "bias": round(c, 3)})


@register_fusion("early", label="concatenated embeddings -> MLP (early, feature-level fusion)",
                 needs=("embeddings",), settings=({"l2": 1e-2}, {"l2": 3e-3}), fit_draws=EARLY_DRAWS,
                 fitted_on=f"an MLP ({EARLY_DIMS} + {EARLY_DIMS} whitened principal components -> {HIDDEN} ReLU "
                 "-> 7), by NLL with an L2 penalty (weight decay)")
def _early(items: Items, draws: np.ndarray, settings: dict, seed: int) -> Fitted:
    pf = _pca(_need(items.ev, "image"), EARLY_DIMS, seed)
    pt = _pca(_need(items.et, "text"), EARLY_DIMS, seed)
    xf, xt = pf(items.ev), pt(items.et)
    faces, texts, y = fit_pairs(items, draws)
    r, n = -(-faces.size // len(xf)), len(xf)
    df, dt, h, k = xf.shape[1], xt.shape[1], HIDDEN, 7
    shapes = [(df, h), (dt, h), (h,), (h, k), (k,)]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(x):
        return [p.reshape(s) for p, s in zip(np.split(x, np.cumsum(sizes)[:-1]), shapes)]

    from scipy.sparse import csr_matrix
    gather = csr_matrix((np.ones(texts.size), (texts, np.arange(texts.size))), shape=(len(xt), texts.size))

    def loss_grad(x):
        w1f, w1t, b1, w2, b2 = unpack(x)
        pre = (xf @ w1f)[faces] + (xt @ w1t)[texts] + b1
        hid = np.maximum(pre, 0.0)
        loss, ds = nll_grad(hid @ w2 + b2, y)
        dpre = (ds @ w2.T) * (pre > 0)
        dpf = dpre.reshape(r, n, h).sum(0)        # faces = tile(arange(n), r): each face once per draw
        dpt = gather @ dpre                        # each text's sum over the pairs it is in
        reg = sum(float((w * w).sum()) for w in (w1f, w1t, w2))
        grads = [xf.T @ dpf + settings["l2"] * w1f, xt.T @ dpt + settings["l2"] * w1t, dpre.sum(0),
                 hid.T @ ds + settings["l2"] * w2, ds.sum(0)]
        return loss + 0.5 * settings["l2"] * reg, np.concatenate([g.ravel() for g in grads])

    rng = np.random.default_rng(seed)
    x0 = np.concatenate([rng.normal(0, np.sqrt(2 / (df + dt)), sizes[0]), rng.normal(0, np.sqrt(2 / (df + dt)), sizes[1]),
                         np.zeros(h), rng.normal(0, np.sqrt(1 / h), sizes[3]), np.zeros(k)])
    w1f, w1t, b1, w2, b2 = unpack(minimize_nll(loss_grad, x0, EARLY_MAXITER))
    return Fitted(face=lambda it: pf(it.ev) @ w1f + b1, text=lambda it: pt(it.et) @ w1t,
                  combine=lambda fa, tb: np.maximum(fa + tb, 0.0) @ w2 + b2, params={"l2": settings["l2"]})
