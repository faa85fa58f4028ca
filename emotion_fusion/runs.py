"""The run directory (DESIGN.md section 6): config, trained models, cached per-item outputs, a manifest.

RUN_DIR/config.json           the configuration that made the run
RUN_DIR/run_info.json         title, temperatures, history, text-head scores, sizes, timings, cache key
RUN_DIR/models/               the trained branches (image.pth, text_head.npz)
RUN_DIR/outputs/{split}.npz   joined from both branches' parts: per item: p_image (faces x 7), y_image, p_text_items (texts x 7), y_text,
                              and the default pairing `pairs` (face i <-> text pairs[i]); per pair (the
                              section 6 contract): p_visual, p_text, y. Probabilities are calibrated.
RUN_DIR/branches/{b}_{split}.npz  each branch's own cache (b = image, text), per item of the split: raw
                              probabilities `p` (before temperature), the other candidates it keeps
                              (`p_<name>`), `y`, and `emb`: the float16 representation its head classifies
RUN_DIR/branches/{b}.json     that branch's record, written last for it: its cache key, settings, date,
                              labels and history, and the sha256 of its files (its npz and its model file)
RUN_DIR/manifest.json         written LAST and atomically: sha256 of every file above + the cache key.
RUN_DIR/results.json          derived from the above, always rewritten, never trusted.

A dir without a valid manifest is incomplete everywhere (fuse, sweep, predict, evaluate, the notebook,
the demo). One writer at a time: `writer_lock`. Only numpy is imported here (no torch).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from emotion_fusion.data.files import atomic_write, write_bytes
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError, json_kind
from emotion_fusion.fingerprints import file_signature, fingerprint, sha256, to_jsonable  # noqa: F401 (re-export)
from emotion_fusion.scoring.fusion import check_classes, check_probs
from emotion_fusion.scoring.metrics import as_labels

OUTPUTS = "outputs"
MANIFEST = "manifest.json"
CONFIG = "config.json"
INFO = "run_info.json"
RESULTS = "results.json"
LOCK = ".lock"
MANIFEST_FORMAT = "emotion_fusion.run/3"
ITEM_ARRAYS = ("p_image", "y_image", "p_text_items", "y_text", "pairs")
PAIR_ARRAYS = ("p_visual", "p_text", "y")
SPLITS = ("val", "test")
BRANCH_DIR = "branches"
BRANCHES = ("image", "text")


def rerun(run_dir) -> str:
    return f"re-run `python -m emotion_fusion run ... --out {run_dir}`"


def run_dir_path(run_dir) -> Path:
    """`run_dir` as a Path; InputError unless it is an existing directory."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise InputError(f"{run_dir} is a file, not a run directory; pass the folder given to `run --out`")
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist; {rerun(run_dir)} or fix --run-dir")
    return run_dir


# ---------------------------------------------------------------- JSON
def write_json(path, obj) -> Path:
    """Write `obj` as indented JSON atomically (a temp file renamed over the target)."""
    path = Path(path)
    text = json.dumps(obj, indent=2, default=to_jsonable, allow_nan=False)
    write_bytes(path, (text + "\n").encode())
    return path


def read_json(path, kind: type | None = dict):
    """Read a JSON file; InputError (one line) when it is missing, not valid JSON, or not a `kind`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing; {rerun(path.parent)}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({getattr(e, 'msg', e)}); {rerun(path.parent)}") from None
    if kind is not None and not isinstance(obj, kind):
        raise InputError(f"{path} holds a JSON {json_kind(obj)}, expected an object; {rerun(path.parent)}")
    return obj


# ---------------------------------------------------------------- one writer at a time
@contextlib.contextmanager
def writer_lock(run_dir):
    """Hold RUN_DIR/.lock (an OS file lock) while writing; a second writer fails at once naming the
    holder's pid. The OS drops the lock when its holder dies (even by SIGKILL), so a stale lock file
    left behind is simply taken over."""
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_own_folders(run_dir)
    try:   # O_NOFOLLOW: a symlink planted at .lock is refused, never followed and truncated
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:
        if not (run_dir / LOCK).is_symlink():
            raise
        raise InputError(f"{run_dir / LOCK} is a symbolic link; remove it (a lock is never followed)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise InputError(f"run directory {run_dir} is being written by another process (pid {holder}); "
                             "wait for it to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield run_dir
    finally:
        os.close(fd)    # releases the lock


def check_own_folders(run_dir) -> None:
    """A one-line InputError when RUN_DIR/models or RUN_DIR/outputs is a symbolic link: a run writes
    only into its own folders, never into the folder a link points to."""
    for sub in ("models", OUTPUTS, BRANCH_DIR):
        if (Path(run_dir) / sub).is_symlink():
            raise InputError(f"{Path(run_dir) / sub} is a symbolic link; a run writes only into its own folders: "
                             "remove the link (what it points to is not touched) or choose another --out")


# ---------------------------------------------------------------- where a run may be written
class writing:
    """Check the output folder against the inputs, hold its writer lock, and remove it again when this
    command created it and then failed (no empty or half-written folder is left behind)."""

    def __init__(self, out, inputs: list[Path]):
        self.out, self.inputs = Path(out), [Path(p) for p in inputs]

    def __enter__(self) -> Path:
        out = check_out_dir(self.out, self.inputs)
        self.created = out       # the first folder this command creates (removed again on failure)
        while not self.created.parent.exists():
            self.created = self.created.parent
        self.created = None if out.exists() else self.created
        self.lock = writer_lock(out)
        return self.lock.__enter__()

    def __exit__(self, *exc) -> None:
        self.lock.__exit__(*exc)
        if exc[0] is not None and self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)


def check_out_dir(out, inputs: list[Path]) -> Path:
    """The output folder may not be an input, lie inside one, or be the folder that directly holds one
    (e.g. the EMOTION_FUSION_DATA folder): inputs are never written, moved or deleted."""
    out = Path(out).resolve()
    if out.is_file():
        raise InputError(f"--out {out} is a file; give a folder for the run directory")
    for p in inputs:
        if not p.exists():
            continue
        p = p.resolve()
        if out == p or p in out.parents or out == p.parent:
            raise InputError(f"output directory {out} would write into the input {p} or the folder holding it; "
                             "choose a folder outside the datasets")
    return out


# ---------------------------------------------------------------- the manifest
def _manifest_files(run_dir: Path) -> list[str]:
    """Every file the results depend on (results.json is derived, the lock is not content)."""
    keep = [CONFIG, INFO]
    for sub in ("models", OUTPUTS, BRANCH_DIR):
        if (run_dir / sub).is_dir():
            keep += sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / sub).iterdir()
                           if p.is_file() and not p.name.startswith("."))
    return keep


def write_manifest(run_dir, key: str) -> Path:
    """Hash every file the results depend on and write RUN_DIR/manifest.json last, atomically."""
    run_dir = Path(run_dir)
    files = {}
    for rel in _manifest_files(run_dir):
        if not (run_dir / rel).is_file():
            raise InputError(f"{run_dir / rel} is missing; cannot complete the run directory")
        files[rel] = {"sha256": sha256(run_dir / rel, cached=False), "size": (run_dir / rel).stat().st_size}
    return write_json(run_dir / MANIFEST, {"format": MANIFEST_FORMAT, "key": key, "files": files})


def invalidate(run_dir) -> None:
    """Mark a run dir incomplete before rewriting it: a crash from here on leaves no valid manifest."""
    check_own_folders(run_dir)
    (Path(run_dir) / MANIFEST).unlink(missing_ok=True)
    (Path(run_dir) / RESULTS).unlink(missing_ok=True)


def verify(run_dir, key: str | None = None) -> dict:
    """The run dir's manifest once every file it lists matches (and `key`, when given); else InputError
    saying the dir is incomplete and to re-run."""
    run_dir = run_dir_path(run_dir)
    path = run_dir / MANIFEST
    incomplete = f"run directory {run_dir} is incomplete"
    if not path.is_file():
        raise InputError(f"{incomplete} (no {MANIFEST}: the run did not finish); {rerun(run_dir)}")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        m = None
    if (not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("files"), dict)
            or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in m["files"].values())):
        raise InputError(f"{incomplete} ({path} is not a manifest written by this version); {rerun(run_dir)}")
    if key is not None and m.get("key") != key:
        raise InputError(f"{incomplete} for these settings (made from other data or config); {rerun(run_dir)}")
    listed = set(m["files"])
    for rel in sorted(listed | set(_manifest_files(run_dir))):
        f = run_dir / rel
        if rel not in listed:
            raise InputError(f"{incomplete}: {f} is not in the manifest (added after the run); {rerun(run_dir)}")
        if not f.is_file():
            raise InputError(f"{incomplete}: {f} is missing; {rerun(run_dir)}")
        entry = m["files"][rel]
        if f.stat().st_size != entry.get("size") or sha256(f) != entry["sha256"]:
            raise InputError(f"{incomplete}: {f} changed after the run (sha256 differs from {MANIFEST}); "
                             f"{rerun(run_dir)}")
    return m


def is_complete(run_dir, key: str) -> bool:
    try:
        verify(run_dir, key)
        return True
    except InputError:
        return False


# ---------------------------------------------------------------- cached outputs
def write_outputs(run_dir, split: str, *, p_image, y_image, p_text_items, y_text, pairs,
                  other_text_heads: dict | None = None, other_image_weights: dict | None = None) -> Path:
    """Write RUN_DIR/outputs/{split}.npz: the per-item arrays, the default pairing and, derived from
    them, the per-pair p_visual / p_text / y of the section 6 contract. `other_text_heads` {head: per-text
    probabilities} are stored as `p_text_items_<head>`, `other_image_weights` as `p_image_<name>`."""
    p_image, p_text_items = check_probs(p_image, f"{split} p_image"), check_probs(p_text_items, f"{split} p_text_items")
    y_image, y_text = as_labels(y_image, f"{split} y_image"), as_labels(y_text, f"{split} y_text")
    pairs = np.asarray(pairs, dtype=np.int64)
    if len(p_image) != y_image.size or len(p_text_items) != y_text.size:
        raise InputError(f"{split}: {len(p_image)} image rows / {y_image.size} labels, {len(p_text_items)} text "
                         f"rows / {y_text.size} labels; give one label per row")
    if pairs.shape != y_image.shape or (pairs.size and (pairs.min() < 0 or pairs.max() >= y_text.size)):
        raise InputError(f"{split}: pairs must hold one text index (0..{y_text.size - 1}) per image")
    if not np.array_equal(y_text[pairs], y_image):
        raise InputError(f"{split}: a pair joins a face and a text of different labels; pair by label")
    arrays = {"p_image": p_image, "y_image": y_image, "p_text_items": p_text_items, "y_text": y_text,
              "pairs": pairs, "p_visual": p_image, "p_text": p_text_items[pairs], "y": y_image,
              "classes": np.array(CLASSES)}
    others = [("text", "p_text_items_", y_text.size, other_text_heads),
              ("image", "p_image_", y_image.size, other_image_weights)]
    for kind, prefix, n, extra in others:
        for name, p in (extra or {}).items():
            p = arrays[prefix + name] = check_probs(p, f"{split} {name} {kind} probabilities")
            if len(p) != n:
                raise InputError(f"{split}: {name} has {len(p)} {kind} rows, expected {n}")
    check_own_folders(run_dir)
    out_dir = Path(run_dir) / OUTPUTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{split}.npz"
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def load_outputs(run_dir, split: str, verified: bool = False) -> dict:
    """RUN_DIR/outputs/{split}.npz as a dict of arrays, after checking the whole run dir against its
    manifest (skip with `verified=True` when the caller just did). InputError when anything is off."""
    run_dir = run_dir_path(run_dir)
    if not verified:
        verify(run_dir)
    path = run_dir / OUTPUTS / f"{split}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is not a readable npz ({e}); {rerun(run_dir)}") from None
    missing = [k for k in (*ITEM_ARRAYS, *PAIR_ARRAYS, "classes") if k not in arrays]
    if missing:
        raise InputError(f"{path} lacks arrays {missing} (an older format?); {rerun(run_dir)}")
    check_classes(arrays["classes"], str(path))
    arrays["classes"] = tuple(str(c) for c in arrays["classes"])
    return arrays


def read_run(run_dir) -> tuple[dict, dict, dict]:
    """(config dict, run_info dict, {split: outputs}) of a complete run dir, verified once."""
    run_dir = run_dir_path(run_dir)
    verify(run_dir)
    return (read_json(run_dir / CONFIG), read_json(run_dir / INFO),
            {s: load_outputs(run_dir, s, verified=True) for s in SPLITS})


def read_config(run_dir) -> dict:
    """RUN_DIR/config.json as a dict."""
    return read_json(run_dir_path(run_dir) / CONFIG)
