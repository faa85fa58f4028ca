"""FER2013 in the Kaggle layout (`train/<emotion>/*.jpg`, `test/<emotion>/*.jpg`), from a folder or its zip.

The input is only ever read: a zip is decoded member by member without extracting it. Structural
problems (no splits, unknown class folders, stray files, a class without images) always raise
`InputError`; an undecodable image raises too, unless `skip_bad=True` skips it and lists it in
`df.attrs["skipped"]`.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from emotion_fusion.errors import InputError
from emotion_fusion.progress import bar_iter

from ._loading import SKIP_BAD, WHERE_FIX, check_present, check_split_names
from .files import MAX_IMAGE_PIXELS, read_image_file, read_zip_member
from .labels import CLASS_INDEX, CLASSES

IMAGE_SIZE = 48
FER_SPLITS = ("train", "val", "test")      # Kaggle ships train/test; a val/ folder is read too
# Decoding threads. Measured on the 2-core dev box (busy with other jobs): the real zip and an
# unpacked folder load in 6-8 s with 1 or 2 threads alike -- a 48x48 JPEG's decode is too short for
# PIL's GIL release to pay -- so 2 is kept only to overlap file reads on slow disks.
DECODE_THREADS = 2
ALLOW_EMPTY = "--allow-empty-classes (Python: allow_empty_classes=True)"
# OS metadata that sits in archives and folders but is not part of the dataset.
_JUNK = ("__MACOSX", "Thumbs.db", "desktop.ini")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, Image.DecompressionBombError)
# Reading a member: a damaged zip (CRC, header), an encrypted member (RuntimeError), a compression
# method zipfile lacks (NotImplementedError), or an unreadable file.
READ_ERRORS = (OSError, zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError)
_COLUMNS = ["split", "label", "y", "source", "hash", "pixels"]


class ImageDecodeError(InputError):
    """Image bytes that do not decode. The message says why but not which file: callers add that."""


def decode_face(raw: bytes) -> np.ndarray:
    """Image file bytes (JPEG, PNG, ...) -> (48, 48) uint8 grayscale, the way every FER2013 face is read.

    EXIF orientation is applied (phone photos store their rotation there; FER2013's JPEGs carry none),
    colour is converted to luma (`to_gray`) and other sizes are resized (bilinear). Raises
    `ImageDecodeError` ("cannot decode image: <why>", one line) when the bytes are not a readable image
    or the header declares more than MAX_IMAGE_PIXELS (checked before decoding).
    """
    try:
        with Image.open(io.BytesIO(raw)) as im:
            check_pixels(im)
            im.load()  # decode now, so a truncated file fails here rather than later
            out = to_gray(ImageOps.exif_transpose(im))
            if out.size != (IMAGE_SIZE, IMAGE_SIZE):
                out = out.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.array(out, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except Image.UnidentifiedImageError:  # its own message only names a BytesIO object
        raise ImageDecodeError("cannot decode image: not a recognised image format") from None
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(f"cannot decode image: {type(e).__name__}: {e}".replace("\n", " ")) from None


def check_pixels(im: Image.Image) -> None:
    """ImageDecodeError when the header declares more than MAX_IMAGE_PIXELS (nothing decoded yet)."""
    if im.width * im.height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"cannot decode image: it is {im.width}x{im.height} pixels, over the limit of "
                               f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")


def to_gray(im: Image.Image) -> Image.Image:
    """8-bit grayscale ("L"). 16-bit grayscale (PIL modes I;16* and I, as PIL opens 16-bit PNGs) is
    scaled from 0..65535 to 0..255 first: PIL's own convert("L") clips it, turning a face black and white."""
    if im.mode.startswith("I;16") or im.mode == "I":
        wide = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    return im if im.mode == "L" else im.convert("L")


def pixel_hash(pixels: np.ndarray) -> str:
    """blake2b (128 bit) of decoded pixels: equal faces, whatever their file format, hash equal."""
    return hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16).hexdigest()


def load_fer2013(path: str | Path, splits: str | Sequence[str] | None = None, skip_bad: bool = False,
                 progress: bool = True, allow_empty_classes: bool = False) -> pd.DataFrame:
    """Read FER2013 in the Kaggle layout from a folder or straight from its zip.

    One row per image: split, label, y (CLASSES order), source, hash (`pixel_hash`), pixels (48x48
    uint8); sorted by (split, label, source). `splits` picks which present splits to read (each must
    exist). Every read split must hold images of all 7 classes unless `allow_empty_classes=True`;
    the classes it lacks are then listed in `df.attrs["empty_classes"]`. `df.attrs["skipped"]` lists
    the images skipped by `skip_bad=True`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"FER2013 path {path} does not exist; {WHERE_FIX}")
    if path.is_dir():
        return _read(path, None, splits, skip_bad, progress, allow_empty_classes)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError(f"{path} is neither a folder nor a zip archive; pass the FER2013 folder "
                         f"or fer2013.zip") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror}); check it and its permissions") from None
    with zf:
        return _read(path, zf, splits, skip_bad, progress, allow_empty_classes)


# ---- layout ---------------------------------------------------------------------------------------
def _is_junk(rel: str) -> bool:
    return any(p.startswith(".") or p in _JUNK for p in rel.split("/"))


def _walk_error(e: OSError) -> None:
    # os.walk skips unreadable folders silently; their images would go missing without a word
    raise InputError(f"{e.filename}: cannot be listed ({e.strerror}); check its permissions")


def _list_tree(path: Path, zf: zipfile.ZipFile | None) -> tuple[list[str], set[str]]:
    """Relative posix paths of the files and folders in a folder or an open zip (junk left out)."""
    files: list[str] = []
    dirs: set[str] = set()
    if zf is None:
        for d, subdirs, names in os.walk(path, onerror=_walk_error):
            rel = Path(d).relative_to(path).as_posix()
            prefix = "" if rel == "." else rel + "/"
            dirs.update(prefix + s for s in subdirs)
            files.extend(prefix + n for n in names)
    else:
        for name in zf.namelist():
            parts = name.rstrip("/").split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if name.endswith("/"):
                dirs.add(name.rstrip("/"))
            else:
                files.append(name)
    return [f for f in files if not _is_junk(f)], {d for d in dirs if not _is_junk(d)}


def _find_root(path: Path, dirs: set[str]) -> str:
    """'' when the splits sit at the top, 'x/' when inside one extra top-level folder."""
    top = {d for d in dirs if "/" not in d}
    if top & set(FER_SPLITS):
        return ""
    if len(top) == 1:
        (only,) = top
        if {d.split("/", 1)[1] for d in dirs if d.startswith(only + "/")} & set(FER_SPLITS):
            return only + "/"
    raise InputError(f"{path}: holds neither train/ nor test/ (looked at the top and one folder down); "
                     f"pass the Kaggle FER2013 folder or zip (train/<emotion>/*.jpg, test/<emotion>/*.jpg)")


def _check_classes(path: Path, root: str, dirs: set[str], wanted: list[str],
                   found: dict[str, set[str]], allow_empty: bool, after_skip: bool) -> list[str]:
    """Every wanted split holds images, and of every class unless `allow_empty`; the empty ones.

    A class without images would train a model that never predicts it and score it on nothing.
    """
    for s in wanted:
        if not found[s]:
            what = "readable images (all were skipped as bad)" if after_skip else "images"
            raise InputError(f"{path}: {root}{s}/ holds no {what}; add them or leave {s} out of splits")
    empty = [f"{root}{s}/{c}/" for s in wanted for c in CLASSES if c not in found[s]]
    if empty and not allow_empty:
        first = empty[0]
        state = ("has no readable images (all were skipped as bad)" if after_skip
                 else "is empty" if first.rstrip("/") in dirs else "is missing")
        more = f" (and {len(empty) - 1} more: {', '.join(empty[1:4])}{', ...' if len(empty) > 4 else ''})"
        raise InputError(f"{path}: class folder {first} {state}{more if len(empty) > 1 else ''}; "
                         f"every class needs images: add them, or allow empty classes with {ALLOW_EMPTY}")
    return empty


def _items(path: Path, files: list[str], root: str, wanted: list[str]) -> list[tuple[str, str, str]]:
    """(split, label, relative name) of every image in the wanted splits, checked and sorted."""
    items = []
    for rel in files:
        if not rel.startswith(root):
            continue
        parts = rel[len(root):].split("/")
        if parts[0] not in wanted:
            continue
        if len(parts) != 3:
            raise InputError(f"{path}: unexpected file {rel}; images must sit at <split>/<emotion>/<image>")
        if parts[1] not in CLASS_INDEX:
            raise InputError(f"{path}: unknown class folder {root}{parts[0]}/{parts[1]}/; class folders "
                             f"must be one of {', '.join(CLASSES)} (rename or remove it)")
        items.append((parts[0], parts[1], rel))
    items.sort(key=lambda it: (FER_SPLITS.index(it[0]), CLASS_INDEX[it[1]], it[2]))
    return items


# ---- reading --------------------------------------------------------------------------------------
def _read(path: Path, zf: zipfile.ZipFile | None, splits, skip_bad: bool, progress: bool,
          allow_empty: bool) -> pd.DataFrame:
    files, dirs = _list_tree(path, zf)
    root = _find_root(path, dirs)
    wanted = check_present(path, check_split_names(splits, FER_SPLITS, "FER2013"),
                           [s for s in FER_SPLITS if root + s in dirs], what=root + "{}/ folder")
    items = _items(path, files, root, wanted)
    found: dict[str, set[str]] = {s: set() for s in wanted}
    for split, label, _ in items:
        found[split].add(label)
    empty = _check_classes(path, root, dirs, wanted, found, allow_empty, after_skip=False)

    def work(item: tuple[str, str, str]) -> tuple[np.ndarray | None, str | None]:
        rel = item[2]
        try:  # zipfile reads are thread-safe: members are read under the archive's own lock
            # named "the member"/"the file": the message below puts the file's name first
            raw = read_zip_member(zf, rel) if zf is not None else read_image_file(path / rel, "the file")
        except InputError as e:   # too large, or not a regular file
            return None, str(e)
        except READ_ERRORS as e:
            return None, f"cannot read file: {type(e).__name__}: {e}".replace("\n", " ")
        try:
            return decode_face(raw), None
        except ImageDecodeError as e:
            return None, str(e)

    rows, skipped = [], []
    with ThreadPool(DECODE_THREADS) as pool:
        results = pool.imap(work, items, chunksize=64)
        for (split, label, rel), (pixels, err) in bar_iter(zip(items, results), "FER2013", total=len(items),
                                                          unit="img", enabled=progress):
            source = rel if zf is not None else str(path / rel)
            if err is not None:
                if not skip_bad:
                    where = f"{path}:{rel}" if zf is not None else source
                    raise InputError(f"{where}: {err}; fix or remove the file, or skip bad items with "
                                     f"{SKIP_BAD}")
                skipped.append({"source": source, "reason": err})
                continue
            rows.append((split, label, CLASS_INDEX[label], source, pixel_hash(pixels), pixels))
    if skipped:  # skipping may have emptied a class (or a whole split)
        found = {s: set() for s in wanted}
        for row in rows:
            found[row[0]].add(row[1])
        empty = _check_classes(path, root, dirs, wanted, found, allow_empty, after_skip=True)
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df["y"] = df["y"].astype(np.int64)
    df.attrs.update(skipped=skipped, path=str(path), empty_classes=empty)
    return df


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
