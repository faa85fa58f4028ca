"""Shared fixtures: tiny synthetic datasets made in tmp_path, and the real data when available.

Real-data tests are marked `data`. Without the datasets they skip locally, but CI sets
EMOTION_FUSION_REQUIRE_DATA=1 so that a missing dataset fails the run instead of skipping silently.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion_fusion.labels import CLASSES, GOEMOTIONS_LABELS

REPO = Path(__file__).resolve().parents[1]


def _real_data_root() -> Path | None:
    root = os.environ.get("EMOTION_FUSION_DATA")
    candidates = [Path(root)] if root else [REPO / "data", REPO.parent / "shared" / "data"]
    for c in candidates:
        if (c / "goemotions").is_dir() and ((c / "fer2013.zip").is_file() or (c / "fer2013").is_dir()):
            return c
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _real_data_root()
    if root is None:
        msg = ("real datasets not found: set EMOTION_FUSION_DATA to a folder holding fer2013.zip "
               "(or fer2013/) and goemotions/")
        if os.environ.get("EMOTION_FUSION_REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def fer_path(data_root) -> Path:
    return data_root / "fer2013.zip" if (data_root / "fer2013.zip").is_file() else data_root / "fer2013"


@pytest.fixture(scope="session")
def go_path(data_root) -> Path:
    return data_root / "goemotions"


def face(seed: int, label: int = 0) -> np.ndarray:
    """A deterministic 48x48 uint8 'face': noise plus a class-dependent bright bar (learnable)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, size=(48, 48), dtype=np.uint8)
    img[label * 6:label * 6 + 6, :] = 220
    return img


def jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_fer_tree(root: Path, per_class: int = 3, splits=("train", "test"), classes=CLASSES) -> Path:
    """Kaggle-layout folder `root/{split}/{emotion}/*.jpg` with distinct synthetic faces."""
    k = 0
    for split in splits:
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (d / f"{split}_{c}_{i}.jpg").write_bytes(jpeg_bytes(face(1000 + k, ci % 7)))
                k += 1
    return root


def make_fer_zip(path: Path, per_class: int = 3, splits=("train", "test")) -> Path:
    """The same layout inside a zip (no directory entries, like Kaggle's archive)."""
    k = 0
    with zipfile.ZipFile(path, "w") as z:
        for split in splits:
            for ci, c in enumerate(CLASSES):
                for i in range(per_class):
                    z.writestr(f"{split}/{c}/{split}_{c}_{i}.jpg", jpeg_bytes(face(1000 + k, ci)))
                    k += 1
    return path


# A few texts per canonical class, as GoEmotions label ids (emotions.txt order).
_TEXTS = {
    "angry": ("This makes me so angry", 2), "disgust": ("That is disgusting and gross", 11),
    "fear": ("I am scared of what comes next", 14), "happy": ("What a joyful day, I love it", 17),
    "neutral": ("The meeting is at noon", 27), "sad": ("I miss her so much, it hurts", 25),
    "surprise": ("Wow, I did not expect that at all", 26),
}


def make_goemotions_dir(root: Path, per_class: int = 4, splits=("train", "dev", "test")) -> Path:
    """A GoEmotions folder in the dataset's own format: {split}.tsv + emotions.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "emotions.txt").write_text("\n".join(GOEMOTIONS_LABELS) + "\n")
    n = 0
    for split in splits:
        lines = []
        for c, (text, lid) in _TEXTS.items():
            for i in range(per_class):
                lines.append(f"{text} ({split} {i})\t{lid}\tid{n}")
                n += 1
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file's bytes under `path` (or the file itself), to prove inputs stay untouched."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in files}
