"""Shared fixtures: tiny synthetic datasets made in tmp_path, and the real data when available.

Real-data tests are marked `data`. Without the datasets they skip locally, but CI sets
EMOTION_FUSION_REQUIRE_DATA=1 so that a missing dataset fails the run instead of skipping silently.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion_fusion.data.labels import CLASSES, GOEMOTIONS_LABELS

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


# ---------------------------------------------------------------- builders as fixtures
# Tests ask for these by name instead of `from conftest import ...` (pytest's way to share helpers).
@pytest.fixture(scope="session")
def repo() -> Path:
    """The project checkout (the cwd for CLI subprocesses)."""
    return REPO


@pytest.fixture(scope="session")
def make_face():
    """`make_face(seed, label)` -> a deterministic, learnable 48x48 uint8 synthetic face."""
    return face


@pytest.fixture(scope="session")
def make_jpeg():
    """`make_jpeg(pixels)` -> JPEG bytes of a grayscale uint8 image."""
    return jpeg_bytes


@pytest.fixture(scope="session")
def fer_tree():
    """`fer_tree(root, per_class=3, splits=("train", "test"))` -> a Kaggle-layout FER2013 folder."""
    return make_fer_tree


@pytest.fixture(scope="session")
def fer_zip():
    """`fer_zip(path, per_class=3, splits=("train", "test"))` -> the same layout as a zip."""
    return make_fer_zip


@pytest.fixture(scope="session")
def goemotions_dir():
    """`goemotions_dir(root, per_class=4, splits=("train", "dev", "test"))` -> a GoEmotions TSV folder."""
    return make_goemotions_dir


@pytest.fixture(scope="session")
def take_snapshot():
    """`take_snapshot(path)` -> {file: bytes} under path, to prove inputs stay untouched."""
    return snapshot


# ---------------------------------------------------------------- fake run directories
def synthetic_probs(rng: np.random.Generator, y: np.ndarray, strength: float) -> np.ndarray:
    """Softmax rows that favour the true class by `strength` logits (a branch of known quality)."""
    z = rng.normal(size=(len(y), len(CLASSES)))
    z[np.arange(len(y)), y] += strength
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def build_run_dir(d: Path, *, sizes=None, seed: int = 0, config: dict | None = None,
                  title: str = "synthetic run — test = made-up pairs", key: str = "synthetic-key",
                  image_strength: float = 1.5, text_strength: float = 2.0) -> Path:
    """A complete run directory made the way `run` makes one, without any model: per-item outputs
    (runs.write_outputs; more texts than faces, paired by label with pairing.make_pairs), config.json,
    run_info.json (title, key), and the manifest written last (runs.write_manifest)."""
    from emotion_fusion import runs
    from emotion_fusion.config import Config
    from emotion_fusion.data import pairing

    d = Path(d)
    rng = np.random.default_rng(seed)
    sizes = sizes or {"val": (300, 350), "test": (400, 450)}
    for i, (split, (n_faces, n_texts)) in enumerate(sizes.items()):
        y_image = rng.integers(0, len(CLASSES), n_faces)
        y_text = np.r_[np.arange(len(CLASSES)), rng.integers(0, len(CLASSES), n_texts - len(CLASSES))]
        runs.write_outputs(d, split, p_image=synthetic_probs(rng, y_image, image_strength), y_image=y_image,
                           p_text_items=synthetic_probs(rng, y_text, text_strength), y_text=y_text,
                           pairs=pairing.make_pairs(y_image, y_text, seed + i + 1))
    cfg = Config.from_profile("smoke").to_dict() if config is None else config
    runs.write_json(d / runs.CONFIG, cfg)
    runs.write_json(d / runs.INFO, {"key": key, "title": title})
    runs.write_manifest(d, key)
    return d


@pytest.fixture
def fake_run(tmp_path):
    """`fake_run(name="run", **kw)` -> a complete synthetic run dir under tmp_path (see build_run_dir)."""
    def make(name: str = "run", **kw) -> Path:
        return build_run_dir(tmp_path / name, **kw)
    return make


@pytest.fixture
def run_dir(fake_run) -> Path:
    """One complete synthetic run dir (val: 300 faces / 350 texts, test: 400 faces / 450 texts)."""
    return fake_run()


# ---------------------------------------------------------------- a toy text encoder
TOY_DIM = 64


def _toy_load(weights, device, seed: int = 0, cache_dir=None):
    # A hashed bag-of-words: no network object at all (TextModel.device falls back to `device`).
    return None, str.split, "hashed bag of words"


def _toy_encode(net, tokenize, texts, batch_size, fast, device, progress) -> np.ndarray:
    import zlib
    out = np.zeros((len(texts), TOY_DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in tokenize(t.lower()):
            out[i, zlib.crc32(w.encode()) % TOY_DIM] += 1.0
    out[:, 0] += 1e-3        # no all-zero row, even for a text of unknown words
    return out


@contextlib.contextmanager
def registered_toy_encoder():
    """The text encoder "toy" (numpy, no torch) in the registry while the block runs."""
    from emotion_fusion.branches import encoders
    spec = encoders.register_encoder(encoders.EncoderSpec("toy", "Toy BoW", _toy_load, _toy_encode))
    try:
        yield spec
    finally:
        encoders.ENCODERS.pop("toy", None)


@pytest.fixture
def toy_encoder():
    """Registers the text encoder "toy" for one test and removes it afterwards."""
    with registered_toy_encoder() as spec:
        yield spec


@pytest.fixture(scope="module")
def toy_encoder_module():
    """Registers the text encoder "toy" for a whole test module (for module-scoped runs that use it)."""
    with registered_toy_encoder() as spec:
        yield spec


@pytest.fixture
def chromium_paths() -> tuple[str, str]:
    """(chromium, chromedriver) from Debian's packages; a browser test fails without them in CI
    (EMOTION_FUSION_REQUIRE_DATA=1) and skips elsewhere."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    msg = ("Debian's chromium and chromium-driver are needed for the browser tests: "
           "`apt-get install -y chromium chromium-driver` (.ci/run does this)")
    if os.environ.get("EMOTION_FUSION_REQUIRE_DATA") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def count_builds(monkeypatch):
    """Counts the models built from here on (image.load_image_model, text.load_text_model)."""
    from emotion_fusion.branches import image, text
    calls = {"image": 0, "text": 0}

    def counting(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(image, "load_image_model", counting("image", image.load_image_model))
    monkeypatch.setattr(text, "load_text_model", counting("text", text.load_text_model))
    return calls


@pytest.fixture
def connection_attempts(monkeypatch) -> list:
    """socket.create_connection refused and recorded: the list of addresses a test's code tried (a list,
    not pytest.fail, because the weights probe runs in a thread where a raised failure would be lost)."""
    tried = []

    def refuse(address, *args, **kwargs):
        tried.append(address)
        raise OSError("no network in this test")
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


# ---------------------------------------------------------------- processes that die with the test
_HOLD_LOCK = ("import sys; from emotion_fusion import runs\n"
              "with runs.writer_lock(sys.argv[1]):\n"
              "    print('locked', flush=True); sys.stdin.read()\n")


@pytest.fixture
def lock_holder(repo):
    """`lock_holder(dir)` -> a process holding dir's writer lock until its stdin closes. Killed when the
    test ends, however it ends; and if pytest itself is killed, the holder's stdin closes and it exits."""
    import subprocess
    import sys
    procs = []

    def start(d):
        p = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(d)], cwd=repo, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p
    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def read_only_writes(monkeypatch):
    """Every `data.files.atomic_write` fails as on a read-only mount (root ignores chmod, so simulated);
    the CLI imports it at call time, so `sweep` and `dependence` see this one."""
    import errno

    @contextlib.contextmanager
    def read_only(path, mode="wb"):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
        yield
    monkeypatch.setattr("emotion_fusion.data.files.atomic_write", read_only)
