"""The 7 canonical emotions and the GoEmotions 28 -> 7 label maps.

The canonical order is FER2013's folder order; every probability array in the project uses it.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from emotion_fusion.errors import InputError

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
CLASS_INDEX: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
NUM_CLASSES = len(CLASSES)

# GoEmotions' 28 labels in emotions.txt order (label id = position).
GOEMOTIONS_LABELS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
)

# The dataset authors' ekman_mapping.json, renamed to our class names (joy -> happy, ...) + neutral.
_EKMAN_GROUPS: dict[str, tuple[str, ...]] = {
    "angry": ("anger", "annoyance", "disapproval"),
    "disgust": ("disgust",),
    "fear": ("fear", "nervousness"),
    "happy": ("joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief",
              "pride", "admiration", "desire", "caring"),
    "sad": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"),
    "neutral": ("neutral",),
}
# The original notebook's hand-made map (kept for reproducing its numbers).
_SEED_GROUPS: dict[str, tuple[str, ...]] = {
    "happy": ("admiration", "amusement", "approval", "excitement", "gratitude", "joy", "love",
              "optimism", "pride", "relief"),
    "sad": ("disappointment", "grief", "remorse", "sadness"),
    "angry": ("anger", "annoyance", "disapproval"),
    "fear": ("fear", "nervousness"),
    "surprise": ("confusion", "curiosity", "realization", "surprise"),
    "disgust": ("disgust", "embarrassment"),
    "neutral": ("neutral", "caring", "desire"),
}
# The ekman json uses these names for our classes.
_EKMAN_JSON_NAMES = {"anger": "angry", "joy": "happy", "sadness": "sad"}

MAPPINGS = ("ekman", "seed")
MULTI_LABEL_RULES = ("agree", "first")
# protocol=seed's text pool (original/texts.py): the neutral thinning and the one-class-per-text rule.
# The original's are mapped_bernoulli and random_mapped; the others are the project's earlier readings.
NEUTRAL_RULES = ("raw_exact", "mapped_bernoulli")
DOMINANT_RULES = ("first_raw", "random_mapped")


def _invert(groups: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {go: canon for canon, gos in groups.items() for go in gos}


def goemotions_map(name: str = "ekman", ekman_json: dict | None = None) -> dict[str, str]:
    """Return {goemotions label -> canonical class} for the named map (`ekman` or `seed`).

    `ekman_json` (the parsed ekman_mapping.json) replaces the built-in ekman groups when given, so a
    dataset folder's own file is what gets used; neutral is always added.
    """
    if name not in MAPPINGS:
        raise InputError(f"unknown label map {name!r}; choose one of {', '.join(MAPPINGS)}")
    if name == "seed":
        mapping = _invert(_SEED_GROUPS)
    elif ekman_json is None:
        mapping = _invert(_EKMAN_GROUPS)
    else:
        groups = {}
        for key, members in ekman_json.items():
            canon = _EKMAN_JSON_NAMES.get(key, key)
            if canon not in CLASS_INDEX:
                raise InputError(f"ekman_mapping.json: group {key!r} is not one of the 7 emotions "
                                 f"({', '.join(CLASSES)}); fix the file or use the built-in map")
            groups[canon] = tuple(members)
        groups.setdefault("neutral", ("neutral",))
        mapping = _invert(groups)
    unknown = sorted(set(mapping) - set(GOEMOTIONS_LABELS))
    if unknown:
        raise InputError(f"label map {name!r} names unknown GoEmotions labels {unknown}")
    missing = sorted(set(GOEMOTIONS_LABELS) - set(mapping))
    if missing:
        raise InputError(f"label map {name!r} leaves GoEmotions labels unmapped: {missing}")
    return mapping


def map_labels(names: Sequence[str], mapping: dict[str, str], rule: str = "agree") -> str | None:
    """Map one text's GoEmotions labels to a canonical class, or None when it is dropped.

    `agree` (default) keeps a text only when all its labels map to one class; `first` keeps its first
    label's class. (`first` is not quite the original notebook's rule: it took the first element of the
    *set* of mapped classes, an order Python's string hashing decides; protocol=seed reproduces that
    in original/texts.py.)
    """
    if rule not in MULTI_LABEL_RULES:
        raise InputError(f"unknown multi-label rule {rule!r}; choose one of {', '.join(MULTI_LABEL_RULES)}")
    if not names:
        return None
    unknown = [n for n in names if n not in mapping]
    if unknown:
        raise InputError(f"unknown GoEmotions label(s) {unknown}; valid: {', '.join(GOEMOTIONS_LABELS)}")
    if rule == "first":
        return mapping[names[0]]
    classes = {mapping[n] for n in names}
    return classes.pop() if len(classes) == 1 else None


def class_ids(labels: Iterable[str]) -> list[int]:
    """Canonical class names -> ids; an unknown name raises InputError listing the valid ones."""
    out = []
    for lab in labels:
        if lab not in CLASS_INDEX:
            raise InputError(f"unknown emotion {lab!r}; valid: {', '.join(CLASSES)}")
        out.append(CLASS_INDEX[lab])
    return out
