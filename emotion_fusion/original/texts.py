"""The original notebook's text rules for `protocol="seed"`: cleaning, the pool filters, the label rule
and the filters applied to texts after pairing. Pure functions on strings and DataFrames.

Pool: GoEmotions `train` only; each text cleaned (URLs and @mentions dropped, characters other than
word characters, whitespace and ? ! . , ' replaced by spaces, spaces collapsed, lower-cased); texts of
fewer than 3 or more than 50 words dropped; a seeded 20% kept of the texts whose only GoEmotions label
is `neutral`; class = the seed label map applied to the text's first label.
After pairing: a pair is dropped when its text has fewer than 4 or more than 50 words, a unique-word
ratio below 0.4, or contains one of the spam phrases (as a substring, as the original did: "visit"
also matches "visited").
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from emotion_fusion.data.labels import CLASS_INDEX, goemotions_map, map_labels
from emotion_fusion.errors import InputError

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


def text_pool(go: pd.DataFrame, seed: int, neutral_keep: float = NEUTRAL_KEEP) -> tuple[pd.DataFrame, dict]:
    """The seed protocol's text pool from a `load_goemotions` frame, and its counts at each step.

    Uses the `train` split only; `text` becomes the cleaned text (the original is kept in `raw_text`);
    `label`/`y` are recomputed from `go_labels` with the seed map and the first-label rule, whatever map
    the frame was loaded with. "Neutral-only" means the raw label list is exactly ("neutral",).
    """
    _require(go, ("split", "text", "go_labels"), "the GoEmotions frame")
    if not 0.0 <= neutral_keep <= 1.0:
        raise InputError(f"neutral_keep {neutral_keep!r} must be in [0, 1]")
    train = go[go.split == "train"]
    if train.empty:
        raise InputError("GoEmotions has no train rows; the seed protocol pools GoEmotions train.tsv only")
    counts = {"train_rows": int(len(train))}
    cleaned = train.text.map(clean_text)
    words = cleaned.map(word_count)
    keep = ((words >= POOL_WORDS[0]) & (words <= POOL_WORDS[1])).to_numpy()
    pool = train[keep].assign(raw_text=train.text[keep], text=cleaned[keep])
    counts["after_length"] = int(len(pool))
    neutral_only = np.flatnonzero([tuple(n) == ("neutral",) for n in pool.go_labels])
    n_keep = int(round(neutral_keep * neutral_only.size))
    rng = np.random.default_rng([int(seed), 2])
    keep = np.ones(len(pool), dtype=bool)
    keep[np.setdiff1d(neutral_only, rng.choice(neutral_only, size=n_keep, replace=False))] = False
    pool = pool[keep]
    counts.update(neutral_only=int(neutral_only.size), neutral_only_kept=n_keep, after_neutral=int(len(pool)))
    mapping = goemotions_map("seed")
    labels = [map_labels(tuple(n), mapping, "first") for n in pool.go_labels]
    pool = pool.assign(label=pd.Series(labels, index=pool.index, dtype=object),
                       y=np.array([CLASS_INDEX[lab] for lab in labels], dtype=np.int64))
    return pool.reset_index(drop=True), counts


def post_pair_masks(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per rule of POST_FILTERS, a boolean mask of the texts that pass it (each rule on its own)."""
    texts = [str(t) for t in texts]
    words = np.array([word_count(t) for t in texts], dtype=np.int64)
    return {"word_count": (words >= PAIR_WORDS[0]) & (words <= PAIR_WORDS[1]),
            "unique_ratio": np.array([unique_word_ratio(t) >= MIN_UNIQUE_RATIO for t in texts], dtype=bool),
            "spam": np.array([not has_spam(t) for t in texts], dtype=bool)}
