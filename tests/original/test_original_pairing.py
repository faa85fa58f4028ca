"""The original notebook's pairing: CLIP-similarity matching within class, and its 70/15/15 split."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_fusion.errors import InputError
from emotion_fusion.original.pairing import hungarian_pairs, seed_protocol_split


def test_hungarian_pairs_maximise_cosine_within_class():
    # class 0: image i is most similar to text 2-i; class 1 has more texts than images
    image_emb = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 0]], dtype=float)
    text_emb = np.array([[0, 0, 2], [0, 3, 0], [4, 0, 0], [1, -1, 0], [1, 1, 0.1]], dtype=float)
    image_y = np.array([0, 0, 0, 1])
    text_y = np.array([0, 0, 0, 1, 1])
    img, txt = hungarian_pairs(image_emb, text_emb, image_y, text_y)
    assert img.tolist() == [0, 1, 2, 3]
    assert txt.tolist() == [2, 1, 0, 4]
    with pytest.raises(InputError, match=r"same width"):
        hungarian_pairs(image_emb, text_emb[:, :2], image_y, text_y)
    with pytest.raises(InputError, match=r"one label per embedding"):
        hungarian_pairs(image_emb, text_emb, image_y[:3], text_y)


def test_hungarian_pairs_unequal_counts_and_missing_classes():
    rng = np.random.default_rng(0)
    img, txt = hungarian_pairs(rng.normal(size=(6, 4)), rng.normal(size=(3, 4)),
                               [0, 0, 0, 0, 2, 2], [0, 0, 1])
    assert len(img) == 2 and len(set(txt)) == 2 and set(txt) <= {0, 1}  # class 2 has no texts


def test_seed_protocol_split_70_15_15():
    y = np.repeat(np.arange(7), 100)
    parts = seed_protocol_split(y, seed=42)
    assert {k: len(v) for k, v in parts.items()} == {"train": 490, "val": 105, "test": 105}
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(700))
    assert np.bincount(y[parts["val"]]).tolist() == [15] * 7  # stratified: 15% of each class
    assert np.bincount(y[parts["test"]]).tolist() == [15] * 7
    assert np.array_equal(seed_protocol_split(y, seed=42)["test"], parts["test"])
