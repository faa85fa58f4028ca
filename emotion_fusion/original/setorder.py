"""The order in which CPython iterates a small set of strings, emulated: the original's dominant label.

The original built each text's mapped classes as a `set` and took `list(that set)[0]` (cells 18, 21).
A set iterates in hash-table slot order, and a string's hash is keyed per process (PYTHONHASHSEED), so
which class comes first depends on the process, not on the text: within one run every text with the
same classes gets the same one (the original's happiness pool kept 15,671 of the 15,691 texts that
carry happiness). `set_order` replays CPython's insertion into the table (setobject.c: slot = hash &
mask, then the perturbed probe; a resize when the table is 3/5 full), so a seeded draw of one 64-bit
hash per class name stands in for one process of the original.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

_PERTURB_SHIFT = 5
_LINEAR_PROBES = 9
_MIN_SIZE = 8
_MASK64 = (1 << 64) - 1


def draw_hashes(names: Sequence[str], seed: int) -> dict[str, int]:
    """One random signed 64-bit hash per name, seeded: a stand-in for one process's `hash(name)`."""
    rng = np.random.default_rng([int(seed), 5])
    raw = rng.integers(0, 1 << 63, size=len(names), dtype=np.uint64) * 2 + rng.integers(0, 2, size=len(names),
                                                                                       dtype=np.uint64)
    return {n: int(v) - (1 << 64) if int(v) >= 1 << 63 else int(v) for n, v in zip(names, raw)}


def _slot(table: list, h: int, mask: int) -> int:
    """The free slot CPython's probe sequence reaches first for hash `h` (no deletions, distinct keys)."""
    perturb = h & _MASK64
    i = perturb & mask
    while True:
        probes = _LINEAR_PROBES if i + _LINEAR_PROBES <= mask else 0
        for j in range(i, i + probes + 1):
            if table[j] is None:
                return j
        perturb >>= _PERTURB_SHIFT
        i = (i * 5 + 1 + perturb) & mask


def set_order(items: Iterable[str], hashes: dict[str, int]) -> list[str]:
    """`list(set_built_by_adding(items))` as CPython orders it, given each item's hash."""
    table: list = [None] * _MIN_SIZE
    used = 0
    for item in items:
        if item in table:
            continue
        table[_slot(table, hashes[item], len(table) - 1)] = item
        used += 1
        if used * 5 >= (len(table) - 1) * 3:          # setobject.c: fill*5 >= mask*3 -> resize to used*4
            size = _MIN_SIZE
            while size <= used * 4:
                size <<= 1
            new: list = [None] * size
            for old in (x for x in table if x is not None):   # re-inserted in the old table's order
                new[_slot(new, hashes[old], size - 1)] = old
            table = new
    return [x for x in table if x is not None]
