"""Batch inference: many faces and/or texts through a finished run, written to one CSV.

    python -m emotion_fusion predict --run-dir R --images FOLDER_OR_ZIP --texts FILE [--pairs PAIRS.csv] \
        --out predictions.csv [--weight W] [--skip-bad] [--workers N] [--batch-size B]

Inputs. `--images`: a folder (searched recursively) or a zip of .jpg/.jpeg/.png faces, ordered by their
path inside it; a face's id is that relative path. `--texts`: a .txt file (one text per line; id = line
number), or a .csv/.tsv with a `text` column and an optional `id` column (else id = line number).

What is scored. Only --images: the image branch per face. Only --texts: the text branch per text. Both:
fused pairs - the rows of `--pairs` (a CSV with columns `image` and `text`, holding face and text ids),
else row-aligned (k-th face in path order with k-th text in file order), which needs equal counts; a
pair whose face or text is skipped as bad is dropped, and no later pair moves.

Bad rows (an undecodable face, an empty or over-long text, a pair naming an unknown or bad id) are
named with their file and line. Without --skip-bad the first one stops the command with a one-line
InputError; with it they are skipped and listed on stderr. Faces are decoded by a DataLoader (worker
processes, `decode_face`, as in training); texts are encoded in one call, so CLIP's length sorting
spans the whole file. Every input (`inputs.py`) and --out are checked before a model loads; the CSV
is written atomically, and an id a spreadsheet would run as a formula (=, +, -, @) is written with a
leading `'`.
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emotion_fusion.data.files import atomic_write, check_out_file
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError

from .inputs import FaceFiles, read_pairs, read_texts, safe_cell


def _collate(items):
    return items   # (index, face or None, error) triples; stacked by the consumer


def _bad(problems: list[str], skip_bad: bool, what: str) -> None:
    """Stop at the first bad row, or (with --skip-bad) report them all on stderr and go on."""
    if problems and not skip_bad:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}; fix the {what} or pass --skip-bad to skip bad rows")
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)


def score_faces(pred, ds: FaceFiles, *, batch_size: int = 64, workers: int = 2, skip_bad: bool = False,
                progress: bool = True, positions: list[int] | None = None) -> tuple[list[int], np.ndarray, list[str]]:
    """(positions in `ds` of the faces scored, calibrated (N,7) probabilities, bad-row messages), of
    the faces at `positions` (default: all)."""
    subset = ds if positions is None else torch.utils.data.Subset(ds, positions)   # items keep ds positions
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=workers, collate_fn=_collate)
    pos, probs, bad = [], [], []
    with tqdm(total=len(subset), desc="faces", unit="face", disable=not progress) as bar:
        for items in loader:
            good = [(i, f) for i, f, err in items if f is not None]
            bad += [f"{ds.source}/{ds.names[i]}: {err}" for i, f, err in items if f is None]
            if not skip_bad and bad:
                break
            if good:
                pos += [i for i, _ in good]
                probs.append(pred.image_probs(np.stack([f for _, f in good])))
            bar.update(len(items))
    _bad(bad, skip_bad, "image files")
    return pos, (np.concatenate(probs) if probs else np.zeros((0, len(CLASSES)), np.float32)), bad


def predict_batch(run_dir, *, images=None, texts=None, pairs=None, out, weight: float | None = None,
                  skip_bad: bool = False, batch_size: int = 64, workers: int = 2, progress: bool = True) -> dict:
    """Score faces and/or texts of RUN_DIR's run (see the module docstring); write `out` (CSV).

    Every input is read and checked before the models load. Returns a summary: rows written, what was
    scored, and the bad rows skipped."""
    from .inference import load_predictor
    if images is None and texts is None:
        raise InputError("give --images and/or --texts (or --image FILE --text TEXT for a single pair)")
    if batch_size < 1 or workers < 0:
        raise InputError(f"--batch-size {batch_size} must be >= 1 and --workers {workers} >= 0")
    if pairs is not None and (images is None or texts is None):
        raise InputError("--pairs needs both --images and --texts")
    out = check_out_file(out, {"--images": images, "--texts": texts, "--pairs": pairs, "--run-dir": run_dir})
    ds = FaceFiles(images) if images is not None else None
    skipped: list[str] = []
    if ds is not None:   # faces bad without decoding (encrypted, oversized, not a regular file): now
        pre = ds.precheck()
        msgs = [f"{ds.source}/{ds.names[i]}: {why}" for i, why in sorted(pre.items())]
        _bad(msgs, skip_bad, "image files")
        skipped += msgs
        readable = [i for i in range(len(ds)) if i not in pre]
        _some_left(readable, images, "face")
    if texts is not None:
        txt_rows, bad, n_texts = read_texts(texts)
        _bad([m for _, m in bad], skip_bad, "text file")
        skipped += [m for _, m in bad]
        _some_left(txt_rows, texts, "text")
    pair_rows = None
    if pairs is not None:   # ids that name no face or no good text are bad rows now, before any scoring
        pair_rows = _listed([ds.names[i] for i in readable], [r[1] for r in txt_rows], read_pairs(pairs),
                            skip_bad, skipped)
        _pairs_left(pair_rows, pairs)
    if ds is not None and texts is not None and pairs is None and len(ds) != n_texts:
        raise InputError(f"{len(ds)} faces in {images} but {n_texts} texts in {texts}: row-aligned "
                         "pairing needs equal counts; give --pairs PAIRS.csv (columns image,text)")
    if ds is not None and texts is not None and pairs is None:
        _pairs_left(set(readable) & {r[0] for r in txt_rows}, None)
    pred = load_predictor(run_dir)
    for b in (pred.image, pred.text):   # one bar per input here, none per batch inside the branches
        b.cfg = dataclasses.replace(b.cfg, progress=progress and b is pred.text)
    cols: dict[str, list] = {}
    if ds is not None:
        img_pos, p_v, bad = score_faces(pred, ds, batch_size=batch_size, workers=workers, skip_bad=skip_bad,
                                        progress=progress, positions=readable)
        skipped += bad
        _some_left(img_pos, images, "face")
        img_ids = [ds.names[i] for i in img_pos]
    if texts is not None:
        txt_pos, txt_ids = [r[0] for r in txt_rows], [r[1] for r in txt_rows]
        p_t = pred.text_probs([r[2] for r in txt_rows])
    if ds is not None and texts is not None:
        if pair_rows is None:
            (fi, ti), mode = _aligned(img_pos, txt_pos, skipped), "pairs (row-aligned)"
        else:   # a face that failed to decode drops the rows naming it here
            kept = _listed(img_ids, txt_ids, pair_rows, skip_bad, skipped)
            (fi, ti), mode = _indices(kept, img_ids, txt_ids), "pairs (--pairs)"
        _pairs_left(fi, pairs)
        p_v, p_t, img_ids, txt_ids = p_v[fi], p_t[ti], [img_ids[i] for i in fi], [txt_ids[i] for i in ti]
        cols.update(image=img_ids, text=txt_ids)
        branches = {"visual": p_v, "text": p_t, "fusion": pred.fuse(p_v, p_t, weight)}
    elif ds is not None:
        mode, branches = "images", {"visual": p_v}
        cols["image"] = img_ids
    else:
        mode, branches = "texts", {"text": p_t}
        cols["text"] = txt_ids
    cols = {k: [safe_cell(v) for v in ids] for k, ids in cols.items()}
    for name, p in branches.items():
        cols[f"{name}_label"] = [CLASSES[k] for k in p.argmax(1)] if len(p) else []
        cols.update({f"{name}_{c}": p[:, k] for k, c in enumerate(CLASSES)})
    with atomic_write(out, "w") as f:   # a crash or a full disk leaves no half-written CSV
        pd.DataFrame(cols).to_csv(f, index=False, float_format="%.6f")
    return {"out": str(out), "rows": len(next(iter(cols.values()))), "mode": mode, "skipped": skipped,
            "weight": None if "fusion" not in branches else (pred.config.fusion_weight if weight is None else weight)}


def _some_left(rows, source, what: str) -> None:
    if not rows:
        raise InputError(f"every {what} in {source} was bad and skipped; nothing is left to score")


def _pairs_left(rows, pairs) -> None:
    """A one-line InputError when no pair is left (every --pairs row, or every row-aligned pair, bad)."""
    if len(rows) == 0:
        what = f"every row of {pairs}" if pairs is not None else "every row-aligned pair had a face or a text that"
        raise InputError(f"no pair is left to score: {what} was bad (the skipped rows are listed above); "
                         "fix the inputs")


def _aligned(img_pos: list[int], txt_pos: list[int], skipped: list[str]):
    """Row-aligned pairs by original position: face k with text k, a pair dropped (and listed) when
    either side was skipped as bad, so no later pair shifts."""
    fpos, tpos = {p: i for i, p in enumerate(img_pos)}, {p: i for i, p in enumerate(txt_pos)}
    keep = sorted(set(fpos) & set(tpos))
    skipped += [f"row-aligned pair {k + 1} dropped: its face or its text was skipped"
                for k in sorted(set(fpos) ^ set(tpos))]
    return np.array([fpos[k] for k in keep], dtype=int), np.array([tpos[k] for k in keep], dtype=int)


def _listed(img_ids, txt_ids, rows, skip_bad, skipped) -> list[tuple[str, str, str]]:
    """The --pairs rows whose face and text are among `img_ids` / `txt_ids`; the others are bad rows."""
    faces, texts = set(img_ids), set(txt_ids)
    good, bad = [], []
    for a, b, where in rows:
        if a in faces and b in texts:
            good.append((a, b, where))
        else:
            what = f"image {a!r}" if a not in faces else f"text {b!r}"
            bad.append(f"{where}: {what} is not among the readable inputs")
    _bad(bad, skip_bad, "pairs file")
    skipped += bad
    return good


def _indices(rows, img_ids, txt_ids) -> tuple[np.ndarray, np.ndarray]:
    """(face indices, text indices) of (image id, text id, where) rows."""
    fpos, tpos = {k: i for i, k in enumerate(img_ids)}, {k: i for i, k in enumerate(txt_ids)}
    return (np.array([fpos[a] for a, _, _ in rows], dtype=int), np.array([tpos[b] for _, b, _ in rows], dtype=int))
