"""The `holdout` evaluation protocol (DESIGN.md section 5): who trains on what, and what is scored.

Each branch trains on its own modality's train split minus a seeded, stratified validation slice; train
faces whose pixels duplicate a val/test face are dropped, and so are train texts that also occur (after
normalising case and spaces) in val/test, and val texts that occur in test. Test = FER2013 `test` faces x
GoEmotions `test` texts (`dev` when there is no test.tsv). Each val/test face is paired with a seeded
random text of its label (`pairing.make_pairs`); every face and every text of a split is scored once.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emotion_fusion.errors import InputError

from . import pairing as _pairing
from .fer2013 import drop_duplicates_of, stack_pixels
from .files import atomic_write
from .labels import CLASSES

N_EXAMPLES = 12          # test pairs kept (face + text) for the notebook's example gallery
FACES_PER_CLASS = 6      # train faces kept per class for the notebook's sample grid
EXAMPLES = "outputs/examples.npz"
SEEN = "outputs/seen.npz"   # what the branches trained on: evaluate drops it from other test sets


def normalise_text(text: str) -> str:
    """Case- and whitespace-insensitive identity of a text (for train/val/test leakage checks)."""
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def test_text_split(go, go_path) -> str:
    for s in ("test", "dev"):
        if ((go.split == s) & (go.y >= 0)).any():
            return s
    raise InputError(f"{go_path}: no test.tsv or dev.tsv with usable texts; test pairs need one of them")


def _drop_seen_texts(df, others) -> tuple:
    seen = set().union(*(map(normalise_text, o.text) for o in others))
    keep = ~df.text.map(normalise_text).isin(seen).to_numpy()
    return df[keep].reset_index(drop=True), int((~keep).sum())


def holdout_split(cfg, fer, go, go_path: Path) -> dict:
    """Train/val/test frames of both modalities, the default val/test pairings, and what was dropped."""
    if not (fer.split == "train").any() or not (fer.split == "test").any():
        raise InputError("FER2013 source needs both train/ and test/ for `run`; for a test-only source "
                         "use `python -m emotion_fusion evaluate`")
    train = fer[fer.split == "train"].reset_index(drop=True)
    keep, held = _pairing.stratified_split(train.y.to_numpy(), cfg.val_fraction, cfg.seed)
    images = {"train": train.iloc[keep].reset_index(drop=True), "val": train.iloc[held].reset_index(drop=True),
              "test": fer[fer.split == "test"].reset_index(drop=True)}
    dropped = {"images": 0, "texts": 0}
    if cfg.drop_train_duplicates:   # a face seen in training (or validation) must not be scored again
        images["val"], n_val = drop_duplicates_of(images["val"], [images["test"]])
        images["train"], n_train = drop_duplicates_of(images["train"], [images["val"], images["test"]])
        dropped["images"] = n_val + n_train
    go = go[go.y >= 0]
    gtrain = go[go.split == "train"].reset_index(drop=True)
    if gtrain.empty:
        raise InputError(f"{go_path}: no usable train texts (train.tsv missing or every row dropped)")
    keep, held = _pairing.stratified_split(gtrain.y.to_numpy(), cfg.val_fraction, cfg.seed)
    text_split = test_text_split(go, go_path)
    texts = {"train": gtrain.iloc[keep].reset_index(drop=True), "val": gtrain.iloc[held].reset_index(drop=True),
             "test": go[go.split == text_split].reset_index(drop=True)}
    if cfg.drop_train_duplicates:   # "Thank you!" in train and test is the same text seen twice
        texts["val"], n_val = _drop_seen_texts(texts["val"], [texts["test"]])
        texts["train"], n_train = _drop_seen_texts(texts["train"], [texts["val"], texts["test"]])
        dropped["texts"] = n_val + n_train
    caps = [(images, "train", cfg.train_per_class), (images, "val", cfg.val_per_class),
            (images, "test", cfg.test_per_class), (texts, "train", cfg.text_train_per_class),
            (texts, "val", cfg.val_per_class), (texts, "test", cfg.test_per_class)]
    for frames, part, cap in caps:   # per-class caps (None = all)
        if cap is not None:
            idx = _pairing.cap_per_class(frames[part].y.to_numpy(), cap, cfg.seed)
            frames[part] = frames[part].iloc[idx].reset_index(drop=True)
    pairs = {part: _pairing.make_pairs(images[part].y.to_numpy(), texts[part].y.to_numpy(), cfg.seed + i + 1)
             for i, part in enumerate(("val", "test"))}
    return {"images": images, "texts": texts, "pairs": pairs, "dropped": dropped,
            "text_test_split": text_split, "test_desc": f"FER2013 test × GoEmotions {text_split}"}


def save_seen(out: Path, images: dict, texts: dict) -> None:
    """The pixel hashes and normalised texts the branches trained and validated on."""
    with atomic_write(Path(out) / SEEN) as f:
        np.savez(f, image_hashes=np.concatenate([images[p].hash.to_numpy(str) for p in ("train", "val")]),
                 texts=np.array([normalise_text(t) for p in ("train", "val") for t in texts[p].text]))


def load_seen(run_dir: Path) -> tuple[set, set]:
    with np.load(Path(run_dir) / SEEN, allow_pickle=False) as z:
        return set(z["image_hashes"].tolist()), set(z["texts"].tolist())


def save_examples(out: Path, img: dict, txt: dict, test_pairs: np.ndarray) -> None:
    """A few faces and pairs for the notebook, so a cached re-run needs no dataset decoding."""
    rng = np.random.default_rng(0)
    train = img["train"]
    face_idx = np.concatenate([rng.permutation(np.flatnonzero(train.y.to_numpy() == c))[:FACES_PER_CLASS]
                               for c in range(len(CLASSES))])
    pair_idx = np.sort(rng.permutation(len(img["test"]))[:N_EXAMPLES])
    with atomic_write(Path(out) / EXAMPLES) as f:
        np.savez(f, face_pixels=stack_pixels(train.iloc[face_idx]), face_y=train.y.to_numpy()[face_idx],
                 pair_index=pair_idx, pair_pixels=stack_pixels(img["test"].iloc[pair_idx]),
                 pair_texts=np.array(txt["test"].text.iloc[test_pairs[pair_idx]].tolist()),
                 pair_y=img["test"].y.to_numpy()[pair_idx])


def read_examples(run_dir) -> dict:
    """The sample faces and example test pairs saved by `save_examples` (unverified: see
    `pipeline.load_examples`)."""
    with np.load(Path(run_dir) / EXAMPLES) as z:
        return {k: z[k] for k in z.files}
