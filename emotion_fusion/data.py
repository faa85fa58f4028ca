"""The datasets in one place: where they are (`resolve_paths`), the loaders, and what a run does with them.

The loaders live in `fer2013` (faces: folder or zip, `decode_face`) and `goemotions` (texts), the
counts in `summary`; they are re-exported here, so `data.load_fer2013` and friends are the one import
a caller needs. Inputs are only ever read; bad input raises `InputError` naming the file and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._loading import WHERE_FIX
from .errors import InputError
from .fer2013 import FER_SPLITS, IMAGE_SIZE, ImageDecodeError, decode_face, load_fer2013, pixel_hash
from .goemotions import GO_SPLITS, HF_IDS, load_goemotions
from .summary import find_duplicates, format_summary, summarize

__all__ = [
    "ENV_VAR", "FER_SPLITS", "GO_SPLITS", "HF_IDS", "IMAGE_SIZE", "REPO_DATA", "ImageDecodeError",
    "decode_face", "drop_duplicates_of", "find_duplicates", "format_summary", "load_fer2013",
    "load_goemotions", "pixel_hash", "resolve_paths", "stack_pixels", "summarize",
]

ENV_VAR = "EMOTION_FUSION_DATA"
REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def resolve_paths(fer2013: str | Path | None = None,
                  goemotions: str | Path | None = None) -> tuple[Path, Path]:
    """(FER2013 path, GoEmotions path): explicit arguments win, then $EMOTION_FUSION_DATA, then data/.

    A set EMOTION_FUSION_DATA is the only place searched (no quiet fall-back to data/).
    """
    env = os.environ.get(ENV_VAR)
    base, where = (Path(env), f"{ENV_VAR}={env}") if env else (REPO_DATA, f"the repo's {REPO_DATA}")
    if fer2013 is not None:
        fer = Path(fer2013)
    elif (base / "fer2013.zip").is_file():
        fer = base / "fer2013.zip"
    elif (base / "fer2013").is_dir():
        fer = base / "fer2013"
    else:
        raise InputError(f"FER2013 not found: looked for fer2013.zip or fer2013/ in {where}; {WHERE_FIX}")
    if goemotions is not None:
        go = Path(goemotions)
    elif (base / "goemotions").is_dir():
        go = base / "goemotions"
    else:
        raise InputError(f"GoEmotions not found: looked for goemotions/ in {where}; {WHERE_FIX}")
    return fer, go


def stack_pixels(df: pd.DataFrame) -> np.ndarray:
    """The `pixels` column of `load_fer2013`'s frame as one (N, 48, 48) uint8 array."""
    if len(df) == 0:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return np.stack(df["pixels"].to_list()).astype(np.uint8, copy=False)


def drop_duplicates_of(df: pd.DataFrame, others: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """Rows of `df` whose pixel hash appears in any of `others` removed (index reset), and how many.

    A run uses it so that no test face (nor a copy of it) is trained or calibrated on.
    """
    seen = set().union(*(set(o["hash"]) for o in others)) if others else set()
    hit = df["hash"].isin(seen)
    out = df.loc[~hit].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out, int(hit.sum())
