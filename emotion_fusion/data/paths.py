"""Where the datasets are: explicit paths, then $EMOTION_FUSION_DATA, then the repo's data/ folder."""
from __future__ import annotations

import os
from pathlib import Path

from emotion_fusion.errors import InputError

from ._loading import WHERE_FIX

ENV_VAR = "EMOTION_FUSION_DATA"
REPO_DATA = Path(__file__).resolve().parents[2] / "data"


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
