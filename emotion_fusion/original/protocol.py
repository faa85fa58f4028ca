"""The original notebook's evaluation protocol (`protocol="seed"`), kept for reproducing its numbers.

1. Pools: FER2013 `train` only, identical faces once, disgust augmented in memory to 1,500 images
   (augment.py); GoEmotions `train` only, cleaned and filtered, neutral thinned, seed label map, one
   class per text (texts.py; the neutral and class rules are settings, the original's by default).
2. Per class, pair target 650 (disgust, fear) or 1,500 (the other five): a seeded sample of
   n = min(2 x target, images, texts) images and n texts, CLIP ViT-B/32 embeddings, the Hungarian
   assignment maximising cosine similarity, the matches sorted by similarity and the top `target`
   kept among those with similarity >= 0.15.
3. Pairs whose text fails the post-pairing filters (word count, unique-word ratio, spam) are dropped.
4. 70/15/15 split of the pairs, stratified by class, as the original called sklearn (the second split on
   the first's held-out pairs in the order it returned them; every part kept in its returned order), with
   the original's `random_state` in the `seed` profile (`seed_random_state=42`, which also seeds the
   neutral thinning). The original reported 8,472 pairs.

Dedup: the original deleted files whose bytes (md5) repeated an earlier file's, over train and test
(cell 11: 1,853 files). `dedup=True` drops train faces whose decoded pixels repeat another train
face's, the pool's equivalent; `dedup=False` keeps them all.
Inherent to the original and kept: augmented disgust copies of a face can land in other splits than it.

Every rule is a pure function of DataFrames/arrays and two callables, `embed_images((n, 48, 48) uint8)`
and `embed_texts(list[str])`, each returning (n, D) embeddings, so the rules are testable without CLIP.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from emotion_fusion.data import stack_pixels
from emotion_fusion.data.labels import CLASS_INDEX, CLASSES
from emotion_fusion.errors import InputError

from . import pairing as _pairing
from .augment import AUG_TARGET, augment_class, clip_image_embeddings
from .texts import POST_FILTERS, mapped_label_counts, post_pair_masks, seed_text_class_weights, text_pool

SMALL_CLASSES = ("disgust", "fear")
SMALL_TARGET, LARGE_TARGET = 650, 1500   # pairs per class: SMALL_CLASSES, the other five
SAMPLE_FACTOR = 2                        # images and texts sampled per class = 2 x target (at most)
MIN_SIMILARITY = 0.15                    # cosine similarity a kept pair must reach

EmbedFn = Callable[..., np.ndarray]

__all__ = ["pair_targets", "image_pool", "pair_class", "seed_pairs", "split_pairs", "pairing_summary_table",
           "random_state", "seed_split", "clip_image_embeddings"]


def pair_targets(small: int = SMALL_TARGET, large: int = LARGE_TARGET) -> dict[int, int]:
    """{class id: pair target}: `small` for disgust and fear, `large` for the other five."""
    for name, v in (("small", small), ("large", large)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name} pair target {v!r} must be a positive integer")
    return {CLASS_INDEX[c]: int(small if c in SMALL_CLASSES else large) for c in CLASSES}


def image_pool(fer: pd.DataFrame, seed: int, *, dedup: bool = True,
               aug_target: int = AUG_TARGET) -> tuple[pd.DataFrame, dict]:
    """FER2013 train images (identical faces once when `dedup`), disgust augmented to `aug_target`."""
    missing = [c for c in ("split", "y", "hash", "source", "pixels") if c not in fer.columns]
    if missing:
        raise InputError(f"the FER2013 frame lacks column(s) {missing}; pass emotion_fusion.data.load_fer2013's frame")
    train = fer[fer.split == "train"]
    if train.empty:
        raise InputError("FER2013 has no train images; the seed protocol pools the train/ folder only")
    counts = {"train_images": int(len(train)), "dedup": bool(dedup)}
    if dedup:
        train = train.drop_duplicates("hash")
    counts["duplicates_dropped"] = int(counts["train_images"] - len(train))
    pool, added = augment_class(train, seed, target=aug_target)
    counts.update(augmented_added=int(added), pool_images=int(len(pool)))
    return pool, counts


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _stats(s: np.ndarray, prefix: str) -> dict:
    if s.size == 0:
        return {f"{prefix}_min": None, f"{prefix}_mean": None, f"{prefix}_max": None}
    return {f"{prefix}_min": float(s.min()), f"{prefix}_mean": float(s.mean()), f"{prefix}_max": float(s.max())}


def _embed(fn: EmbedFn, data, n: int, what: str) -> np.ndarray:
    emb = np.asarray(fn(data), dtype=np.float64)
    if emb.ndim != 2 or len(emb) != n:
        raise InputError(f"embed_{what} returned shape {emb.shape} for {n} {what}; it must return (n, D)")
    return _unit(emb)


def pair_class(images: pd.DataFrame, texts: pd.DataFrame, target: int, embed_images: EmbedFn,
               embed_texts: EmbedFn, rng: np.random.Generator,
               min_similarity: float = MIN_SIMILARITY) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """One class's pairs: (image positions, text positions, similarities, counts), best pair first.

    Samples n = min(2 x target, len(images), len(texts)) of each, matches them one-to-one maximising
    the summed cosine similarity, and keeps the top `target` matches with similarity >= min_similarity.
    """
    n = min(SAMPLE_FACTOR * int(target), len(images), len(texts))
    row = {"pool_images": int(len(images)), "pool_texts": int(len(texts)), "target": int(target), "sampled": int(n)}
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:
        return empty, empty, np.zeros(0), {**row, "matched": 0, "above_threshold": 0, "kept_top_target": 0,
                                           **_stats(np.zeros(0), "sim_matched")}
    img_pick = np.sort(rng.choice(len(images), size=n, replace=False))
    txt_pick = np.sort(rng.choice(len(texts), size=n, replace=False))
    ie = _embed(embed_images, stack_pixels(images.iloc[img_pick]), n, "images")
    te = _embed(embed_texts, texts.text.iloc[txt_pick].tolist(), n, "texts")
    if ie.shape[1] != te.shape[1]:
        raise InputError(f"image embeddings are {ie.shape[1]}-D but text embeddings {te.shape[1]}-D; "
                         f"embed both with the same CLIP model")
    same = np.zeros(n, dtype=np.int64)       # one class: a single assignment problem
    ii, ti = _pairing.hungarian_pairs(ie, te, same, same)
    sims = np.einsum("ij,ij->i", ie[ii], te[ti])
    order = np.argsort(-sims, kind="stable")
    above = order[sims[order] >= min_similarity]
    keep = above[:int(target)]
    row.update(matched=int(len(ii)), above_threshold=int(len(above)), kept_top_target=int(len(keep)),
               **_stats(sims, "sim_matched"))
    return img_pick[ii[keep]], txt_pick[ti[keep]], sims[keep], row


def seed_pairs(fer: pd.DataFrame, go: pd.DataFrame, embed_images: EmbedFn, embed_texts: EmbedFn, *,
               seed: int, targets: dict[int, int] | None = None, min_similarity: float = MIN_SIMILARITY,
               dedup: bool = True, aug_target: int = AUG_TARGET, neutral_rule: str = "mapped_bernoulli",
               dominant: str = "random_mapped", neutral_seed: int | None = None) -> dict:
    """The seed protocol's pairs: {"images", "texts"} (frames aligned row by row, class by class),
    "similarity" (per pair) and "summary" (pool counts; per class, pairs after each step).

    `fer`/`go` are `load_fer2013`/`load_goemotions` frames (any label map: texts are relabelled);
    `neutral_rule`/`dominant`/`neutral_seed` are `text_pool`'s. The summary's "label_counts" are the
    text pool's mapped-label counts, from which the original computed its loss weights.
    """
    targets = pair_targets() if targets is None else targets
    if not -1.0 <= float(min_similarity) <= 1.0:
        raise InputError(f"min_similarity {min_similarity!r} must be a cosine similarity in [-1, 1]")
    images, img_counts = image_pool(fer, seed, dedup=dedup, aug_target=aug_target)
    texts, txt_counts = text_pool(go, seed, neutral_rule=neutral_rule, dominant=dominant, neutral_seed=neutral_seed)
    rows, img_parts, txt_parts, sim_parts = [], [], [], []
    for c, name in enumerate(CLASSES):
        img_c, txt_c = images[images.y == c], texts[texts.y == c]
        rng = np.random.default_rng([int(seed), 3, c])     # each class its own stream
        ip, tp, sims, row = pair_class(img_c, txt_c, targets[c], embed_images, embed_texts, rng, min_similarity)
        masks = post_pair_masks(txt_c.text.iloc[tp].tolist())
        ok = np.ones(len(tp), dtype=bool)
        for f in POST_FILTERS:                             # cumulative: the count after each filter
            ok &= masks[f]
            row[f"after_{f}"] = int(ok.sum())
        row.update(final=int(ok.sum()), **_stats(sims[ok], "sim_kept"))
        rows.append({"class": name, **row})
        img_parts.append(img_c.iloc[ip[ok]])
        txt_parts.append(txt_c.iloc[tp[ok]])
        sim_parts.append(sims[ok])
    sims = np.concatenate(sim_parts)
    summary = {"images": img_counts, "texts": txt_counts, "label_counts": mapped_label_counts(texts),
               "min_similarity": float(min_similarity),
               "sample_factor": SAMPLE_FACTOR, "classes": rows, "n_pairs": int(sims.size)}
    if sims.size == 0:
        best = max((r["sim_matched_max"] for r in rows if r["sim_matched_max"] is not None), default=None)
        raise InputError(f"the seed protocol kept no pairs: no match reached cosine similarity {min_similarity} "
                         f"(best {best}); with random-init CLIP lower it (--set seed_min_similarity=-1)")
    return {"images": pd.concat(img_parts, ignore_index=True), "texts": pd.concat(txt_parts, ignore_index=True),
            "similarity": sims, "summary": summary}


def split_pairs(pairs: dict, seed: int) -> dict[str, np.ndarray]:
    """70/15/15 split of `seed_pairs`' pairs, stratified by class, `seed` as sklearn's random_state (the
    original's: 42); adds per-class split sizes and the random_state to its summary."""
    y = pairs["images"].y.to_numpy()
    parts = _pairing.seed_protocol_split(y, seed)
    pairs["summary"]["split_random_state"] = int(seed)
    for row in pairs["summary"]["classes"]:
        c = CLASS_INDEX[row["class"]]
        row.update({p: int((y[idx] == c).sum()) for p, idx in parts.items()})
    pairs["summary"]["split"] = {p: int(len(idx)) for p, idx in parts.items()}
    return parts


_TABLE_COLUMNS = ("pool_images", "pool_texts", "target", "sampled", "matched", "above_threshold",
                  "kept_top_target", *(f"after_{f}" for f in POST_FILTERS), "final", "train", "val", "test",
                  "sim_matched_min", "sim_matched_mean", "sim_matched_max", "sim_kept_min", "sim_kept_mean",
                  "sim_kept_max")


def pairing_summary_table(summary: dict) -> pd.DataFrame:
    """The per-class pairing summary as a DataFrame (one row per class and a total row)."""
    df = pd.DataFrame(summary["classes"]).set_index("class")
    df = df[[c for c in _TABLE_COLUMNS if c in df.columns]]
    counts = [c for c in df.columns if not c.startswith("sim_")]
    total = df[counts].sum().to_frame("total").T
    return pd.concat([df, total]).astype({c: "Int64" for c in counts})


def random_state(cfg) -> int:
    """The seed of two of the original's steps seeded with 42, the neutral thinning's legacy stream (cell 19)
    and the 70/15/15 split's random_state (cell 26): `cfg.seed_random_state` (42 in the `seed` profile), or
    the run's seed when None. Its third, cell 24's seeded sample of faces and texts per class, is not
    replayed (it drew from `os.listdir` order and from text buckets set by an unknown hash order): the
    pairing sample draws from `cfg.seed`."""
    return int(cfg.seed if cfg.seed_random_state is None else cfg.seed_random_state)


def seed_split(cfg, fer, go, *, dedup: bool = True) -> dict:
    """Train/val/test frames for both modalities and the val/test pairs, the seed protocol's way.

    Pair targets come from `cfg.seed_pairs_rare` (disgust, fear; 650) and `cfg.seed_pairs_common`
    (the other five; 1,500); the similarity threshold from `cfg.seed_min_similarity` (0.15); the
    neutral thinning's stream and the split's random_state from `random_state(cfg)`, the rest from
    `cfg.seed`.
    The pairing summary is returned under "pairing_summary"; with `cfg.class_weights="seed_text_counts"`
    the original's loss weights (from the text pool's label counts) under "image_class_weights".
    """
    from emotion_fusion.branches import text as _text
    # Config already guarantees text_model == 'ViT-B/32' for this protocol.
    model, tokenize = _text.load_text_model("ViT-B/32", weights=cfg.text_weights, device=cfg.device,
                                            seed=cfg.seed)
    pairs = seed_pairs(
        fer, go, lambda px: clip_image_embeddings(model, px, progress=cfg.progress, resize=cfg.clip_resize),
        lambda t: _text.encode_texts(model, tokenize, t, fast=cfg.fast, progress=cfg.progress),
        seed=cfg.seed, targets=pair_targets(cfg.seed_pairs_rare, cfg.seed_pairs_common),
        min_similarity=cfg.seed_min_similarity, dedup=dedup, neutral_rule=cfg.neutral_rule,
        dominant=cfg.dominant_label, neutral_seed=random_state(cfg))
    parts = split_pairs(pairs, random_state(cfg))
    weights = (seed_text_class_weights(pairs["summary"]["label_counts"])
               if cfg.class_weights == "seed_text_counts" else None)
    images, texts = pairs["images"], pairs["texts"]
    return {"images": {p: images.iloc[i].reset_index(drop=True) for p, i in parts.items()},
            "texts": {p: texts.iloc[i].reset_index(drop=True) for p, i in parts.items()},
            "pairs": {p: np.arange(len(parts[p])) for p in ("val", "test")},   # aligned row by row
            "duplicates_dropped": pairs["summary"]["images"]["duplicates_dropped"],
            "text_test_split": "seed pool",
            "pairing_summary": pairs["summary"],
            "image_class_weights": weights,
            "test_desc": "15% of the seed protocol's CLIP-similarity pairs (FER2013 train × GoEmotions train)"}
