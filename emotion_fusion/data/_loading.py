"""What the FER2013 and GoEmotions loaders share: the fixes their messages advise, and split checks."""
from __future__ import annotations

from typing import Sequence

from emotion_fusion.errors import InputError

# How to point the loaders at the data (data/README.md explains the layout).
WHERE_FIX = "put it in data/ (see data/README.md), set EMOTION_FUSION_DATA, or pass the path"
# Every "bad item" message names both spellings: the CLI flag and the Python keyword.
SKIP_BAD = "--skip-bad (Python: skip_bad=True)"


def check_split_names(splits: str | Sequence[str] | None, known: tuple[str, ...],
                      dataset: str) -> list[str] | None:
    """`splits` as a list (None or empty: all present splits), each name checked before any reading."""
    if not splits:
        return None
    splits = [splits] if isinstance(splits, str) else list(splits)
    for s in splits:
        if s not in known:
            raise InputError(f"unknown {dataset} split {s!r}; choose from {', '.join(known)}")
    return splits


def check_present(source: object, wanted: list[str] | None, present: Sequence[str],
                  what: str = "{} split") -> list[str]:
    """The splits to read (`wanted`, or all `present` when None); a wanted one that is absent raises.

    `what` names a split in the message, "{}" standing for its name ("{} split", "{}/ folder").
    """
    for s in wanted or ():
        if s not in present:
            found = ", ".join(present) or "none"
            raise InputError(f"{source}: has no {what.replace('{}', s)} (found: {found}); "
                             f"choose splits that exist")
    return list(wanted) if wanted else list(present)
