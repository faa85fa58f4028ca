"""The original notebook's text rules for `protocol="seed"`: cleaning, the pool filters, the label rule
and the filters applied to texts after pairing. Pure functions on strings and DataFrames.

Pool: GoEmotions `train` only; each text cleaned (URLs and @mentions dropped, characters other than
word characters, whitespace and ? ! . , ' replaced by spaces, spaces collapsed, lower-cased); texts of
fewer than 3 or more than 50 words dropped; neutral thinned to about 20%; one class per text.
Two of these rules have two forms (`NEUTRAL_RULES`, `DOMINANT_RULES`); the original's (cells 18, 19, 21):
- neutral `mapped_bernoulli`: a text whose *mapped* label set is exactly {neutral} (raw neutral, caring,
  desire, alone or together) is kept with probability 0.2, one draw per text: the original's own stream,
  NumPy's legacy `np.random.seed(42)` then one `np.random.random()` per such text in file order, the text
  dropped when the draw exceeds 0.2 (replayed with `RandomState(neutral_seed)`; on GoEmotions train.tsv
  with 42 it gives cell 19's printed counts exactly). The project's earlier `raw_exact`: exactly 20% of
  the texts whose raw labels are exactly ("neutral",), drawn from the run's seed.
- class `random_mapped`: the original took `list(set(mapped labels))[0]`, the element that Python's
  per-process string hashing puts first: one process ranks the classes at random, the same for every
  text. Emulated exactly for a seeded draw of the hashes (setorder.py). The earlier `first_raw`: the
  class of the first raw label.
After pairing: a pair is dropped when its text has fewer than 4 or more than 50 words, a unique-word
ratio below 0.4, or contains one of the spam phrases (as a substring, as the original did: "visit"
also matches "visited").
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from emotion_fusion.data.labels import CLASS_INDEX, CLASSES, DOMINANT_RULES, NEUTRAL_RULES, goemotions_map, map_labels
from emotion_fusion.errors import InputError

from .setorder import draw_hashes, set_order

POOL_WORDS = (3, 50)          # kept when lo <= words <= hi (before pairing)
PAIR_WORDS = (4, 50)          # kept when lo <= words <= hi (after pairing)
MIN_UNIQUE_RATIO = 0.4        # distinct words / words, after pairing
NEUTRAL_KEEP = 0.2            # share of the neutral-only texts kept in the pool
SPAM_PHRASES = ("click here", "buy now", "subscribe", "follow me", "check out", "link in bio", "dm me", "visit")
POST_FILTERS = ("word_count", "unique_ratio", "spam")   # applied in this order; the summary counts each

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_OTHER = re.compile(r"[^\w\s?!.,']")
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """The original's cleaning: no URLs or @mentions, only word chars/whitespace/?!.,' kept, one space, lower."""
    text = _MENTION.sub(" ", _URL.sub(" ", str(text)))
    return _SPACES.sub(" ", _OTHER.sub(" ", text)).strip().lower()


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(str(text).split())


def unique_word_ratio(text: str) -> float:
    """Distinct words / words (0.0 for an empty text)."""
    words = str(text).split()
    return len(set(words)) / len(words) if words else 0.0


def has_spam(text: str) -> bool:
    """True when the (lower-cased) text contains one of SPAM_PHRASES."""
    low = str(text).lower()
    return any(p in low for p in SPAM_PHRASES)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {missing}; pass the frame from "
                         f"emotion_fusion.data.load_goemotions")


def text_pool(go: pd.DataFrame, seed: int, neutral_keep: float = NEUTRAL_KEEP, *,
              neutral_rule: str = "mapped_bernoulli", dominant: str = "random_mapped",
              neutral_seed: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The seed protocol's text pool from a `load_goemotions` frame, and its counts at each step.

    Uses the `train` split only, in the frame's row order (the file's); `text` becomes the cleaned text
    (the original is kept in `raw_text`); `mapped` holds each text's seed-map classes (sorted, distinct),
    `label`/`y` its one class by the `dominant` rule, whatever map the frame was loaded with.
    `neutral_rule` picks the neutral thinning (module docstring): `mapped_bernoulli` replays the legacy
    NumPy stream of `neutral_seed` (None: `seed`; the original's is 42), `raw_exact` draws from `seed`.
    The class rule's hash draw uses `seed`.
    """
    _require(go, ("split", "text", "go_labels"), "the GoEmotions frame")
    if not 0.0 <= neutral_keep <= 1.0:
        raise InputError(f"neutral_keep {neutral_keep!r} must be in [0, 1]")
    for name, value, valid in (("neutral_rule", neutral_rule, NEUTRAL_RULES), ("dominant_label", dominant, DOMINANT_RULES)):
        if value not in valid:
            raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(valid)}")
    neutral_seed = int(seed) if neutral_seed is None else neutral_seed
    if (isinstance(neutral_seed, bool) or not isinstance(neutral_seed, (int, np.integer))
            or not 0 <= neutral_seed < 2**32):
        raise InputError(f"neutral_seed {neutral_seed!r} must be an integer in [0, 2**32) (np.random.seed's range)")
    train = go[go.split == "train"]
    if train.empty:
        raise InputError("GoEmotions has no train rows; the seed protocol pools GoEmotions train.tsv only")
    counts = {"train_rows": int(len(train)), "neutral_rule": neutral_rule, "dominant_label": dominant,
              **({"neutral_seed": int(neutral_seed)} if neutral_rule == "mapped_bernoulli" else {})}
    cleaned = train.text.map(clean_text)
    words = cleaned.map(word_count)
    keep = ((words >= POOL_WORDS[0]) & (words <= POOL_WORDS[1])).to_numpy()
    pool = train[keep].assign(raw_text=train.text[keep], text=cleaned[keep])
    counts["after_length"] = int(len(pool))
    mapping = goemotions_map("seed")
    mapped = [tuple(sorted({mapping[n] for n in names})) for names in pool.go_labels]
    pool = pool.assign(mapped=pd.Series(mapped, index=pool.index, dtype=object))
    if neutral_rule == "mapped_bernoulli":
        candidates = np.flatnonzero([m == ("neutral",) for m in mapped])
        # cell 19: NumPy's global legacy stream seeded once, one draw per candidate in file order, the text
        # skipped when its draw exceeds the keep ratio (so a draw equal to it keeps the text)
        draws = np.random.RandomState(int(neutral_seed)).random_sample(candidates.size)
        dropped = candidates[draws > neutral_keep]                          # kept with probability neutral_keep
    else:
        rng = np.random.default_rng([int(seed), 2])
        candidates = np.flatnonzero([tuple(n) == ("neutral",) for n in pool.go_labels])
        n_keep = int(round(neutral_keep * candidates.size))
        dropped = np.setdiff1d(candidates, rng.choice(candidates, size=n_keep, replace=False))
    keep = np.ones(len(pool), dtype=bool)
    keep[dropped] = False
    pool = pool[keep]
    counts.update(neutral_only=int(candidates.size), neutral_only_kept=int(candidates.size - dropped.size),
                  after_neutral=int(len(pool)))
    labels = _dominant(pool, mapping, dominant, seed)
    pool = pool.assign(label=pd.Series(labels, index=pool.index, dtype=object),
                       y=np.array([CLASS_INDEX[lab] for lab in labels], dtype=np.int64))
    return pool.reset_index(drop=True), counts


def _dominant(pool: pd.DataFrame, mapping: dict[str, str], rule: str, seed: int) -> list[str]:
    """One class per text: the first of its mapped classes in the set order of one seeded "process"
    (classes added in raw-label order, as the original's loop did), or its first raw label's class."""
    if rule == "first_raw":
        return [map_labels(tuple(n), mapping, "first") for n in pool.go_labels]
    hashes = draw_hashes(CLASSES, seed)
    return [set_order([mapping[n] for n in names], hashes)[0] for names in pool.go_labels]


def seed_text_class_weights(label_counts: dict[str, int]) -> np.ndarray:
    """The original's loss weights (cells 19-20, used for the image loss in cell 28), canonical order:
    total / (n_classes x count) per class over the mapped-label counts of the text pool (a text with
    two classes counts once for each), rounded to 3 decimals as the original printed and used them."""
    missing = [c for c in CLASS_INDEX if int(label_counts.get(c, 0)) < 1]
    if missing:
        raise InputError(f"no texts of class(es) {missing} in the pool; the text-count weights need every class")
    total = sum(int(label_counts[c]) for c in CLASS_INDEX)
    return np.array([round(total / (len(CLASS_INDEX) * int(label_counts[c])), 3) for c in CLASS_INDEX],
                    dtype=np.float32)


def mapped_label_counts(pool: pd.DataFrame) -> dict[str, int]:
    """Per class, the pool's texts that carry it among their mapped classes (the original's label_counts)."""
    _require(pool, ("mapped",), "the text pool")
    return {c: int(sum(c in m for m in pool.mapped)) for c in CLASS_INDEX}


def post_pair_masks(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per rule of POST_FILTERS, a boolean mask of the texts that pass it (each rule on its own)."""
    texts = [str(t) for t in texts]
    words = np.array([word_count(t) for t in texts], dtype=np.int64)
    return {"word_count": (words >= PAIR_WORDS[0]) & (words <= PAIR_WORDS[1]),
            "unique_ratio": np.array([unique_word_ratio(t) >= MIN_UNIQUE_RATIO for t in texts], dtype=bool),
            "spam": np.array([not has_spam(t) for t in texts], dtype=bool)}
