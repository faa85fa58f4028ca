"""Label-anchored image-text pairing, per-class caps and stratified splits.

Images (FER2013) and texts (GoEmotions) come from different people, so a "pair" only shares an
emotion label. `make_pairs` draws a random text of the same label for every image (seeded);
`hungarian_pairs` reproduces the original notebook's CLIP-similarity matching within each class.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError
from .labels import CLASSES

# ---- defaults -----------------------------------------------------------------------------------
SEED_SPLIT = (0.70, 0.15, 0.15)     # the original protocol's train / val / test shares of the pairs
SEED_TEXT_WORDS = (3, 60)           # the original protocol's text length filter, in words (inclusive)


def _labels(y, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} must be a 1-D array of integer class ids, got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _class_name(c: int) -> str:
    return CLASSES[c] if 0 <= c < len(CLASSES) else str(c)


def stratified_split(y, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) sorted indices; `fraction` of each class is held out (sklearn, stratified).

    Classes with a single member cannot be split and stay in `kept`.
    """
    y = _labels(y, "y")
    if not 0.0 < fraction < 1.0:
        raise InputError(f"split fraction {fraction} must be between 0 and 1 (exclusive)")
    from sklearn.model_selection import train_test_split   # here: re-pairing must stay numpy-only
    classes, counts = np.unique(y, return_counts=True)
    single = np.isin(y, classes[counts == 1])
    idx = np.flatnonzero(~single)
    if idx.size == 0:
        return np.flatnonzero(single), np.zeros(0, dtype=np.int64)
    try:
        kept, held = train_test_split(idx, test_size=fraction, stratify=y[idx], random_state=seed)
    except ValueError as e:  # too few rows for a stratified split of this size
        raise InputError(f"cannot hold out {fraction} of {idx.size} items stratified by class: {e}") from None
    return np.sort(np.concatenate([kept, np.flatnonzero(single)])), np.sort(held)


def cap_per_class(y, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices keeping at most `cap` items of each class (a seeded random subset); all when None."""
    y = _labels(y, "y")
    if cap is None:
        return np.arange(y.size)
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1:
        raise InputError(f"per-class cap {cap!r} must be a positive integer or None")
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        keep.append(members if members.size <= cap else rng.choice(members, size=int(cap), replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def make_pairs(image_y, text_y, seed: int) -> np.ndarray:
    """For each image, the index of a text with the same label.

    Within a class, texts are drawn without replacement; when the class has fewer texts than images,
    a new seeded permutation starts, so every text is used before any is reused. Each class draws
    from its own generator (seed, class), so one class's pairs do not depend on the others.
    """
    image_y, text_y = _labels(image_y, "image labels"), _labels(text_y, "text labels")
    if image_y.size and image_y.min() < 0:
        raise InputError(f"image label {int(image_y.min())} is negative; "
                         f"drop unlabelled images before pairing")
    if int(seed) < 0:
        raise InputError(f"seed {seed} must be a non-negative integer")
    pairs = np.empty(image_y.size, dtype=np.int64)
    for c in np.unique(image_y):
        images = np.flatnonzero(image_y == c)
        texts = np.flatnonzero(text_y == c)
        if texts.size == 0:
            raise InputError(f"class {_class_name(int(c))!r} has {images.size} images but no texts to pair "
                             f"with; add texts of that class or drop those images")
        rng = np.random.default_rng([int(seed), int(c)])
        rounds = -(-images.size // texts.size)  # ceil
        order = np.concatenate([rng.permutation(texts) for _ in range(rounds)])
        pairs[images] = order[:images.size]
    return pairs


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)  # an all-zero embedding stays zero instead of NaN


def hungarian_pairs(image_emb, text_emb, image_y, text_y) -> tuple[np.ndarray, np.ndarray]:
    """The original notebook's pairing: within each class, a one-to-one matching of images and texts
    maximising the summed cosine similarity of L2-normalised embeddings (scipy linear_sum_assignment).

    Returns (image indices, text indices) of the matched pairs, sorted by image index; a class yields
    min(#images, #texts) pairs, so surplus images or texts stay unpaired.
    """
    from scipy.optimize import linear_sum_assignment
    image_emb, text_emb = np.asarray(image_emb, dtype=np.float64), np.asarray(text_emb, dtype=np.float64)
    image_y, text_y = _labels(image_y, "image labels"), _labels(text_y, "text labels")
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise InputError(f"embeddings must be 2-D with the same width, "
                         f"got {image_emb.shape} and {text_emb.shape}")
    if len(image_emb) != image_y.size or len(text_emb) != text_y.size:
        raise InputError(f"{len(image_emb)} image / {len(text_emb)} text embeddings but {image_y.size} / "
                         f"{text_y.size} labels; pass one label per embedding")
    image_emb, text_emb = _unit_rows(image_emb), _unit_rows(text_emb)
    img_out, txt_out = [], []
    for c in np.intersect1d(image_y, text_y):
        images, texts = np.flatnonzero(image_y == c), np.flatnonzero(text_y == c)
        rows, cols = linear_sum_assignment(image_emb[images] @ text_emb[texts].T, maximize=True)
        img_out.append(images[rows])
        txt_out.append(texts[cols])
    if not img_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    img, txt = np.concatenate(img_out), np.concatenate(txt_out)
    order = np.argsort(img, kind="stable")
    return img[order], txt[order]


def seed_protocol_split(n_pairs_y, seed: int) -> dict[str, np.ndarray]:
    """The original protocol's 70/15/15 stratified train/val/test split of the pairs (sorted indices).

    30% is held out stratified, then halved stratified into val and test.
    """
    y = _labels(n_pairs_y, "pair labels")
    train, rest = stratified_split(y, SEED_SPLIT[1] + SEED_SPLIT[2], seed)
    val_pos, test_pos = stratified_split(y[rest], SEED_SPLIT[2] / (SEED_SPLIT[1] + SEED_SPLIT[2]), seed)
    return {"train": train, "val": np.sort(rest[val_pos]), "test": np.sort(rest[test_pos])}


def seed_text_filter(texts: Sequence[str]) -> np.ndarray:
    """Boolean mask of texts with 3-60 whitespace-separated words (inclusive).

    This is our reconstruction of the original notebook's text filter (its exact rule was not kept).
    """
    lo, hi = SEED_TEXT_WORDS
    return np.array([lo <= len(str(t).split()) <= hi for t in texts], dtype=bool)
