"""What a run's cache key and manifest are made of: canonical-JSON fingerprints of objects, cheap
signatures of input files, and sha256 of files (remembered per process while a file is unchanged).
Numpy only; `runs` re-exports these names."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np


def to_jsonable(obj):
    """json `default=`: numpy values, paths and dataclasses; anything else is a bug, not a guess."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _fp_default(obj):
    # Arrays are hashed by dtype, shape and bytes so large data makes a short, exact key.
    if isinstance(obj, np.ndarray):
        data = np.ascontiguousarray(obj)
        if data.dtype == object:
            raise TypeError("cannot fingerprint an object array; convert it to a numeric or str dtype")
        return {"__ndarray__": [data.dtype.str, list(data.shape), hashlib.sha256(data.tobytes()).hexdigest()]}
    if isinstance(obj, bytes):
        return {"__bytes__": hashlib.sha256(obj).hexdigest()}
    return to_jsonable(obj)


def fingerprint(*objs) -> str:
    """Stable sha256 of canonical JSON (sorted keys; numpy arrays by bytes) of `objs`, for cache keys."""
    text = json.dumps(list(objs), sort_keys=True, separators=(",", ":"), default=_fp_default,
                      allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def file_signature(path: Path) -> list:
    """Cheap identity of a dataset or weight file on disk: (name, size, mtime) of every file under it."""
    path = Path(path)
    if not path.exists():
        return [str(path)]      # e.g. a HF dataset id
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


# sha256 of files this process has already hashed, keyed by what changes whenever the content can have:
# device, inode (a file swapped in by rename is another inode), size, mtime and ctime (an in-place
# rewrite that restores the mtime still moves the ctime, which no user call can set). In memory only:
# another process never trusts it, and a manifest is always written from fresh hashes.
_HASHES: dict[tuple, str] = {}


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def sha256(path: Path, *, cached: bool = True) -> str:
    """The file's sha256; with `cached`, reused while its (inode, size, mtime, ctime) are unchanged."""
    key = _identity(os.stat(path))
    if cached and key in _HASHES:
        return _HASHES[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if len(_HASHES) > 4096:     # a long-lived kernel scoring many run dirs: stay bounded
        _HASHES.clear()
    _HASHES[key] = h.hexdigest()
    return _HASHES[key]
