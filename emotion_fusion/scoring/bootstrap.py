"""The project's one bootstrap: multiplicities resampled within groups, and the confusion counts they weight.

Two designs share it:
- the pair bootstrap of one pairing (`metrics.evaluate_many`; `stats.score_draws` for a fixed
  pairing): the pairs are the units, one multiplicity per pair;
- the crossed two-way bootstrap of the all-pairs estimand (`stats.score_draws`): faces and texts are
  resampled independently within each class, and the pair (i, j) of class c weighs W_i V_j. Per
  resample the class-c row of the confusion matrix is n_c * W^T C_k V / (sum W * sum V) for each
  predicted class k, C_k the 0/1 matrix of the class's face x text pairs predicted k.
Resampling within class keeps the test class mix fixed, as the estimand does. Pure numpy.
"""
from __future__ import annotations

import numpy as np

from emotion_fusion.data.labels import NUM_CLASSES

K2 = NUM_CLASSES * NUM_CLASSES


def multiplicities(groups: list[np.ndarray], n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) float64: how often each of n items is drawn when every group (an index array) is
    resampled with replacement to its own size; items in no group get 0. One group `arange(n)` is the
    ordinary bootstrap, drawn as `rng.integers(0, n, (n_boot, n))`."""
    out = np.zeros((n_boot, n))
    offset = np.arange(n_boot)[:, None] * n
    for g in groups:
        picks = g[rng.integers(0, g.size, (n_boot, g.size))] + offset
        out += np.bincount(picks.ravel(), minlength=n_boot * n).reshape(n_boot, n)
    return out


def weighted_confusion(weights: np.ndarray, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(B, 7, 7) confusion counts [true, pred] of the samples weighted by each row of `weights` (B, n)."""
    onehot = np.zeros((y.size, K2))
    onehot[np.arange(y.size), y * NUM_CLASSES + pred] = 1
    # float64 matmul uses BLAS and is exact for integer counts < 2**53
    return (weights @ onehot).reshape(-1, NUM_CLASSES, NUM_CLASSES)


def class_blocks(y_image: np.ndarray, y_text: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(class, face indices, text indices) per class that has faces; the caller checks texts exist."""
    return [(int(c), np.flatnonzero(y_image == c), np.flatnonzero(y_text == c)) for c in np.unique(y_image)]


def _onehot_rows(w: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(B, 7): the weight of each label, w (B, n) over n items labelled `labels`."""
    out = np.zeros((labels.size, NUM_CLASSES))
    out[np.arange(labels.size), labels] = 1
    return w @ out


def crossed_counts(blocks: list[tuple[int, np.ndarray, np.ndarray]], labels: list[np.ndarray],
                   wf: list[np.ndarray], wt: list[np.ndarray]) -> np.ndarray:
    """(B, 7, 7) confusion counts of the all-pairs average, row c summing to n_c (the class's faces).

    labels[b]: the predicted class of block b's face x text pairs, (n_c, 1) when it depends on the
    face only, (1, m_c) on the text only, else (n_c, m_c). wf[b] (B, n_c), wt[b] (B, m_c): face and
    text multiplicities (ones, shape (1, .), for the point value). A full block costs one (B, n_c) x
    (n_c, m_c) product per predicted class, restricted to the rows and columns where that class
    occurs; the most frequent class is the remainder, since a row's weights sum to sum W * sum V.
    """
    B = wf[0].shape[0]
    out = np.zeros((B, NUM_CLASSES, NUM_CLASSES))
    for (c, faces, texts), lab, f, t in zip(blocks, labels, wf, wt):
        sf, st = f.sum(1), t.sum(1)
        if lab.shape[1] == 1:        # visual: every text of the class gives the same label
            out[:, c] = _onehot_rows(f, lab[:, 0]) / sf[:, None]
        elif lab.shape[0] == 1:      # text: every face gives the same label
            out[:, c] = _onehot_rows(t, lab[0]) / st[:, None]
        else:
            present = np.bincount(lab.ravel(), minlength=NUM_CLASSES)
            rest = int(present.argmax())
            f32 = f.astype(np.float32)
            for k in np.flatnonzero(present):
                if k == rest:
                    continue
                hit = lab == k
                rows, cols = hit.any(1), hit.any(0)
                x = f32[:, rows] @ hit[np.ix_(rows, cols)].astype(np.float32)  # integer sums < 2**24: exact
                out[:, c, k] = np.einsum("bj,bj->b", x.astype(np.float64), t[:, cols]) / (sf * st)
            out[:, c, rest] = 1 - out[:, c].sum(1)   # still 0 before this line
        out[:, c] *= faces.size
    return out
