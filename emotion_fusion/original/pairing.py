"""The original notebook's pairing (`protocol="seed"`): a one-to-one CLIP-similarity matching of faces
and texts within each class, and its 70/15/15 stratified split of the pairs."""
from __future__ import annotations

import numpy as np

from emotion_fusion.data.pairing import label_array
from emotion_fusion.errors import InputError

SEED_SPLIT = (0.70, 0.15, 0.15)     # the original protocol's train / val / test shares of the pairs


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
    image_y, text_y = label_array(image_y, "image labels"), label_array(text_y, "text labels")
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


def _original_split(idx: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) of `idx`, as sklearn's `train_test_split(..., stratify=y, random_state=seed)`
    returns them: in its order, not sorted. A class with one member cannot be split (the original would
    stop there) and stays in `kept`, at its end."""
    from sklearn.model_selection import train_test_split
    classes, counts = np.unique(y, return_counts=True)
    single = np.isin(y, classes[counts == 1])
    if single.all():
        return idx, np.zeros(0, dtype=np.int64)
    try:
        kept, held = train_test_split(idx[~single], test_size=fraction, stratify=y[~single], random_state=seed)
    except ValueError as e:   # too few rows for a stratified split of this size
        raise InputError(f"cannot hold out {fraction} of {int((~single).sum())} pairs stratified by class: {e}") from None
    return np.concatenate([kept, idx[single]]).astype(np.int64), np.asarray(held, dtype=np.int64)


def seed_protocol_split(n_pairs_y, seed: int) -> dict[str, np.ndarray]:
    """The original protocol's 70/15/15 stratified train/val/test split of the pairs (cell 26), `seed`
    as sklearn's random_state (the original's: 42).

    30% is held out stratified, then halved stratified into val and test, as the original called it: the
    second split takes the held-out pairs in the order the first returned them, and each part keeps its
    returned order (the original's val and test loaders did not shuffle, so its batches of 32, and a
    mean of per-batch losses over them, follow that order). Same pairs in, same random_state: the
    original's parts, in its order.
    """
    y = label_array(n_pairs_y, "pair labels")
    train, rest = _original_split(np.arange(y.size), y, SEED_SPLIT[1] + SEED_SPLIT[2], seed)
    val, test = _original_split(rest, y[rest], SEED_SPLIT[2] / (SEED_SPLIT[1] + SEED_SPLIT[2]), seed)
    return {"train": train, "val": val, "test": test}
