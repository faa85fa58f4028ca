"""Label-anchored image-text pairing, per-class caps and stratified splits.

Images (FER2013) and texts (GoEmotions) come from different people, so a "pair" only shares an
emotion label. `make_pairs` draws a random text of the same label for every image (seeded). The
original notebook's CLIP-similarity matching lives in `original/pairing.py`.
"""
from __future__ import annotations

import numpy as np

from emotion_fusion.errors import InputError

from .labels import CLASSES

# ---- defaults -----------------------------------------------------------------------------------


def label_array(y, name: str) -> np.ndarray:
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
    y = label_array(y, "y")
    if not 0.0 < fraction < 1.0:
        raise InputError(f"split fraction {fraction} must be between 0 and 1 (exclusive)")
    from sklearn.model_selection import train_test_split  # here: re-pairing must stay numpy-only
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
    y = label_array(y, "y")
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
    image_y, text_y = label_array(image_y, "image labels"), label_array(text_y, "text labels")
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
