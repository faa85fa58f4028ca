"""Batch inference: many faces and/or texts through a finished run, written to one CSV.

    python -m emotion_fusion predict --run-dir R --images FOLDER_OR_ZIP --texts FILE [--pairs PAIRS.csv] \
        --out predictions.csv [--weight W] [--skip-bad] [--workers N] [--batch-size B]

Inputs. `--images`: a folder (searched recursively) or a zip of .jpg/.jpeg/.png faces, ordered by their
path inside it; a face's id is that relative path. `--texts`: a .txt file (one text per line; id = line
number), or a .csv/.tsv with a `text` column and an optional `id` column (else id = line number).

What is scored. Only --images: the image branch per face. Only --texts: the text branch per text. Both:
fused pairs - the rows of `--pairs` (a CSV with columns `image` and `text`, holding face and text ids),
else row-aligned (k-th face in path order with k-th text in file order), which needs equal counts.

Bad rows (an undecodable face, an empty or over-long text, a pair naming an unknown or bad id) are
named with their file and line. Without --skip-bad the first one stops the command with a one-line
InputError; with it they are skipped and listed on stderr. Faces are decoded by a DataLoader (worker
processes, `decode_face`, as in training); texts are encoded in one call, so CLIP's length sorting
spans the whole file.
"""
from __future__ import annotations

import dataclasses
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class FaceFiles(torch.utils.data.Dataset):
    """Faces of a folder or zip, decoded on access: (index, 48x48 uint8 or None, error or "")."""

    def __init__(self, source):
        self.source = Path(source)
        if self.source.is_dir():
            self.names = sorted(p.relative_to(self.source).as_posix() for p in self.source.rglob("*")
                                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif self.source.is_file() and zipfile.is_zipfile(self.source):
            with zipfile.ZipFile(self.source) as z:   # closed again: each worker opens its own handle
                self.names = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
        else:
            raise InputError(f"--images {self.source} is neither a folder nor a zip file; give a folder or .zip "
                             "of JPEG/PNG faces")
        if not self.names:
            raise InputError(f"--images {self.source} holds no .jpg/.jpeg/.png file")
        self._zip = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        from emotion_fusion.data import decode_face
        try:
            if self.source.is_dir():
                raw = (self.source / self.names[i]).read_bytes()
            else:
                self._zip = self._zip or zipfile.ZipFile(self.source)
                raw = self._zip.read(self.names[i])
            return i, decode_face(raw), ""
        except (InputError, OSError, zipfile.BadZipFile) as e:
            return i, None, str(e)


def _collate(items):
    return items   # (index, face or None, error) triples; stacked by the consumer


def read_texts(path) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(ids, texts, bad) from a .txt/.csv/.tsv file; `bad` holds (id, "FILE line N: why")."""
    from .inference import check_text
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--texts {path} does not exist; give a .txt, .csv or .tsv file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            rows = [(str(n), t, n) for n, t in enumerate(lines, 1)]
        elif suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                             encoding="utf-8-sig")
            if "text" not in df.columns:
                raise InputError(f"--texts {path} has no `text` column (columns: {', '.join(df.columns)}); "
                                 "name the column of texts `text`")
            ids = df["id"] if "id" in df.columns else pd.Series(range(2, len(df) + 2)).astype(str)
            rows = [(i, t, n) for n, (i, t) in enumerate(zip(ids, df["text"]), 2)]   # line 1 is the header
        else:
            raise InputError(f"--texts {path}: unknown file type {suffix!r}; use .txt, .csv or .tsv")
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise InputError(f"--texts {path} cannot be parsed ({type(e).__name__}); give UTF-8 text") from None
    ids, texts, bad = [], [], []
    for i, t, n in rows:
        try:
            texts.append(check_text(t))
            ids.append(i)
        except InputError as e:
            bad.append((i, f"{path} line {n}: {e}"))
    return ids, texts, bad


def read_pairs(path) -> list[tuple[str, str, str]]:
    """(image id, text id, "FILE line N") rows of a pairs CSV with columns `image` and `text`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--pairs {path} does not exist; give a CSV with columns image,text")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if not {"image", "text"} <= set(df.columns):
        raise InputError(f"--pairs {path} needs columns `image` and `text` (has {', '.join(df.columns)})")
    return [(a, b, f"{path} line {n}") for n, (a, b) in enumerate(zip(df["image"], df["text"]), 2)]


def _bad(problems: list[str], skip_bad: bool, what: str) -> None:
    """Stop at the first bad row, or (with --skip-bad) report them all on stderr and go on."""
    if problems and not skip_bad:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}; fix the {what} or pass --skip-bad to skip bad rows")
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)


def score_faces(pred, source, *, batch_size: int = 64, workers: int = 2, skip_bad: bool = False,
                progress: bool = True) -> tuple[list[str], np.ndarray, list[str]]:
    """(ids, calibrated (N,7) probabilities, bad-row messages) of every face in a folder/zip."""
    ds = FaceFiles(source)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=_collate)
    ids, probs, bad = [], [], []
    with tqdm(total=len(ds), desc="faces", unit="face", disable=not progress) as bar:
        for items in loader:
            good = [(i, f) for i, f, err in items if f is not None]
            bad += [f"{ds.source}/{ds.names[i]}: {err}" for i, f, err in items if f is None]
            if not skip_bad and bad:
                break
            if good:
                ids += [ds.names[i] for i, _ in good]
                probs.append(pred.image_probs(np.stack([f for _, f in good])))
            bar.update(len(items))
    _bad(bad, skip_bad, "image files")
    return ids, (np.concatenate(probs) if probs else np.zeros((0, len(CLASSES)), np.float32)), bad


def predict_batch(run_dir, *, images=None, texts=None, pairs=None, out, weight: float | None = None,
                  skip_bad: bool = False, batch_size: int = 64, workers: int = 2, progress: bool = True) -> dict:
    """Score faces and/or texts of RUN_DIR's run (see the module docstring); write `out` (CSV).

    Returns a summary: rows written, what was scored, and the bad rows skipped."""
    from .inference import load_predictor
    if images is None and texts is None:
        raise InputError("give --images and/or --texts (or --image FILE --text TEXT for a single pair)")
    if batch_size < 1 or workers < 0:
        raise InputError(f"--batch-size {batch_size} must be >= 1 and --workers {workers} >= 0")
    if pairs is not None and (images is None or texts is None):
        raise InputError("--pairs needs both --images and --texts")
    pred = load_predictor(run_dir)
    for b in (pred.image, pred.text):   # one bar per input here, none per batch inside the branches
        b.cfg = dataclasses.replace(b.cfg, progress=progress and b is pred.text)
    cols, skipped = {}, []
    if images is not None:
        img_ids, p_v, bad = score_faces(pred, images, batch_size=batch_size, workers=workers,
                                        skip_bad=skip_bad, progress=progress)
        skipped += bad
    if texts is not None:
        txt_ids, txt, bad = read_texts(texts)
        _bad([m for _, m in bad], skip_bad, "text file")
        skipped += [m for _, m in bad]
        p_t = pred.text_probs(txt) if txt else np.zeros((0, len(CLASSES)), np.float32)
    if images is not None and texts is not None:
        fi, ti, mode = _pair_rows(img_ids, txt_ids, pairs, skip_bad, skipped, images, texts)
        p_v, p_t, img_ids, txt_ids = p_v[fi], p_t[ti], [img_ids[i] for i in fi], [txt_ids[i] for i in ti]
        cols.update(image=img_ids, text=txt_ids)
        branches = {"visual": p_v, "text": p_t, "fusion": pred.fuse(p_v, p_t, weight)}
    elif images is not None:
        mode, branches = "images", {"visual": p_v}
        cols["image"] = img_ids
    else:
        mode, branches = "texts", {"text": p_t}
        cols["text"] = txt_ids
    for name, p in branches.items():
        cols[f"{name}_label"] = [CLASSES[k] for k in p.argmax(1)] if len(p) else []
        cols.update({f"{name}_{c}": p[:, k] for k, c in enumerate(CLASSES)})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cols).to_csv(out, index=False, float_format="%.6f")
    return {"out": str(out), "rows": len(next(iter(cols.values()))), "mode": mode, "skipped": skipped,
            "weight": None if "fusion" not in branches else (pred.config.fusion_weight if weight is None else weight)}


def _pair_rows(img_ids, txt_ids, pairs, skip_bad, skipped, images, texts):
    """Indices (faces, texts) of the pairs to fuse: --pairs rows, else row-aligned equal counts."""
    if pairs is None:
        if len(img_ids) != len(txt_ids):
            raise InputError(f"{len(img_ids)} faces in {images} but {len(txt_ids)} texts in {texts}: row-aligned "
                             "pairing needs equal counts; give --pairs PAIRS.csv (columns image,text)")
        return np.arange(len(img_ids)), np.arange(len(txt_ids)), "pairs (row-aligned)"
    fpos, tpos = {k: i for i, k in enumerate(img_ids)}, {k: i for i, k in enumerate(txt_ids)}
    fi, ti, bad = [], [], []
    for a, b, where in read_pairs(pairs):
        if a not in fpos or b not in tpos:
            what = f"image {a!r}" if a not in fpos else f"text {b!r}"
            bad.append(f"{where}: {what} is not among the readable inputs")
            continue
        fi.append(fpos[a])
        ti.append(tpos[b])
    _bad(bad, skip_bad, "pairs file")
    skipped += bad
    return np.array(fi, dtype=int), np.array(ti, dtype=int), "pairs (--pairs)"
