"""Finding pretrained weights: the libraries' own caches first, a download only when online.

No machine this project runs on is guaranteed a network. Libraries left to themselves retry downloads
for minutes and then fail with a traceback; here a missing file is reported within seconds, in one line
that says what was expected, where it was looked for, where to get it and how to point at a local copy.
Imports nothing heavy (no torch), so the CLI can use it for messages.
"""
from __future__ import annotations

from pathlib import Path

from emotion_fusion.errors import InputError
from emotion_fusion.hub import hf_hub_cache, is_online  # noqa: F401 (the branches import both from here)


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint folder, read at call time so TORCH_HOME set late is honoured."""
    import torch.hub  # deferred: this module must not import torch at import time

    return Path(torch.hub.get_dir()) / "checkpoints"


def first_existing(paths: list[Path]) -> Path | None:
    """The first path that is a regular file, or None."""
    for p in paths:
        if p.is_file():
            return p
    return None


def missing_weights_error(model: str, expected: str, searched: list[Path], how: str,
                          option: str) -> InputError:
    """The one-line error for weights that are neither cached nor downloadable."""
    folders = ", ".join(str(p) for p in dict.fromkeys(searched))
    return InputError(f"{model} weights not found and no network to download them: expected {expected} "
                      f"in {folders}; {how}; or point to a local file with {option}")
