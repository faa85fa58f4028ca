"""GoEmotions: the dataset's own TSV folder (or its Hugging Face id), mapped to the 7 canonical classes.

A folder holds `{train,dev,test}.tsv` (`text<TAB>label ids<TAB>id`, no header, no quoting),
`emotions.txt` (the 28 label names, one a line) and optionally `ekman_mapping.json`. Files are read as
UTF-8 with or without a byte-order mark. A bad row raises `InputError` naming the file and line,
unless `skip_bad=True` skips it and lists it in `df.attrs["skipped"]`.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from emotion_fusion.errors import InputError

from ._loading import SKIP_BAD, WHERE_FIX, check_present, check_split_names
from .labels import CLASS_INDEX, GOEMOTIONS_LABELS, MAPPINGS, MULTI_LABEL_RULES, goemotions_map, map_labels

GO_SPLITS = ("train", "dev", "test")
HF_IDS = ("google-research-datasets/go_emotions", "go_emotions")
_COLUMNS = ["split", "text", "label_ids", "go_labels", "label", "y", "id"]
_INT = re.compile(r"\s*-?[0-9]+\s*")   # one label id in a TSV row


def load_goemotions(path: str | Path, mapping: str = "ekman", multi_label: str = "agree",
                    splits: str | Sequence[str] | None = None, skip_bad: bool = False) -> pd.DataFrame:
    """Read GoEmotions from a TSV folder (or the HF id when `datasets` is installed and online).

    Columns: split, text, label_ids, go_labels, label (canonical, None when the multi-label rule
    drops the row), y (-1 when dropped), id. `mapping` is `ekman` (the folder's ekman_mapping.json
    when present) or `seed`; `multi_label` is `agree` or `first` (see labels.map_labels).
    `df.attrs["skipped"]` lists rows skipped by `skip_bad=True`.
    """
    if mapping not in MAPPINGS:
        raise InputError(f"unknown label map {mapping!r}; choose one of {', '.join(MAPPINGS)}")
    if multi_label not in MULTI_LABEL_RULES:
        raise InputError(f"unknown multi-label rule {multi_label!r}; "
                         f"choose one of {', '.join(MULTI_LABEL_RULES)}")
    wanted = check_split_names(splits, GO_SPLITS, "GoEmotions")
    skipped: list[dict] = []
    label_map = None
    if str(path) in HF_IDS and not Path(path).exists():
        rows = _rows_from_hf(str(path), wanted, skip_bad, skipped)
    else:
        folder = Path(path)
        if not folder.exists():
            raise InputError(f"GoEmotions path {folder} does not exist; {WHERE_FIX}")
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder; pass the folder holding train.tsv/dev.tsv/test.tsv")
        present = [s for s in GO_SPLITS if (folder / f"{s}.tsv").is_file()]
        if not present:
            raise InputError(f"{folder}: no train.tsv, dev.tsv or test.tsv found; "
                             f"pass the GoEmotions data folder")
        wanted = check_present(folder, wanted, present)
        _check_emotions_txt(folder)
        if mapping == "ekman":
            label_map = _folder_ekman_map(folder)
        rows = [r for s in wanted for r in _read_tsv(folder / f"{s}.tsv", s, skip_bad, skipped)]
    label_map = label_map or goemotions_map(mapping)
    out = []
    for split, text, ids, cid in rows:
        names = tuple(GOEMOTIONS_LABELS[i] for i in ids)
        label = map_labels(names, label_map, multi_label)
        out.append((split, text, ids, names, label, -1 if label is None else CLASS_INDEX[label], cid))
    df = pd.DataFrame(out, columns=_COLUMNS)
    # object dtype keeps a dropped row's label None (pandas' string dtype would turn it into NaN)
    df["label"] = pd.Series([r[4] for r in out], index=df.index, dtype=object)
    df["y"] = df["y"].astype(np.int64)
    df.attrs.update(skipped=skipped, path=str(path), mapping=mapping, multi_label=multi_label)
    return df


# ---- the folder's files ---------------------------------------------------------------------------
def _read_text(file: Path, fix: str) -> str:
    """A file's text as UTF-8, a leading byte-order mark dropped (editors on Windows add one)."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise InputError(f"{file}: cannot be read ({e.strerror}); check it and its permissions") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{file}: is UTF-16 text (it starts with a UTF-16 byte-order mark); {fix}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{file}: not UTF-8 text ({e.reason} at byte {e.start}); {fix}") from None


def _check_row(text: str, ids: object) -> tuple[tuple[int, ...] | None, str | None]:
    """Validate one row; returns (label ids, None) or (None, problem)."""
    if not isinstance(text, str) or not text.strip():
        return None, "empty text"
    if isinstance(ids, str):
        fields = ids.split(",")
        if not all(_INT.fullmatch(f) for f in fields):
            return None, f"label ids {ids!r} are not comma-separated integers"
        ids = [int(f) for f in fields]
    ids = tuple(int(i) for i in ids)
    if not ids:
        return None, "no label ids"
    bad = [i for i in ids if not 0 <= i < len(GOEMOTIONS_LABELS)]
    if bad:
        return None, f"label id {bad[0]} is outside 0-{len(GOEMOTIONS_LABELS) - 1}"
    return ids, None


def _read_tsv(file: Path, split: str, skip_bad: bool, skipped: list) -> list[tuple]:
    """Rows (split, text, ids, id) of one `text<TAB>ids<TAB>id` file, no header, no quoting."""
    content = _read_text(file, "re-save it as UTF-8")
    # split on "\n" only: str.splitlines would also break texts at \x85 / \u2028 inside comments
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise InputError(f"{file}: is empty; restore it from the GoEmotions data, or leave {split} "
                         f"out of splits")
    rows = []
    for n, line in enumerate(lines, start=1):
        parts = line.rstrip("\r").split("\t")
        if len(parts) != 3:
            ids, problem = None, f"expected 3 tab-separated columns (text, label ids, id), got {len(parts)}"
        else:
            ids, problem = _check_row(parts[0], parts[1])
        if problem is not None:
            if not skip_bad:
                raise InputError(f"{file}:{n}: {problem}; fix the line, or skip bad rows with {SKIP_BAD}")
            skipped.append({"source": f"{file.name}:{n}", "reason": problem})
            continue
        rows.append((split, parts[0], ids, parts[2]))
    return rows


def _check_emotions_txt(folder: Path) -> None:
    file = folder / "emotions.txt"
    if not file.is_file():
        raise InputError(f"{folder}: emotions.txt is missing; copy it from the GoEmotions data folder "
                         f"(see data/README.md)")
    text = _read_text(file, "use the dataset's own emotions.txt")
    names = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if tuple(names) != GOEMOTIONS_LABELS:
        diff = next((i for i, (a, b) in enumerate(zip(names, GOEMOTIONS_LABELS)) if a != b),
                    min(len(names), len(GOEMOTIONS_LABELS)))
        raise InputError(f"{file}: not the 28 GoEmotions labels in order ({len(names)} names, first "
                         f"difference at line {diff + 1}); use the dataset's own emotions.txt")


def _folder_ekman_map(folder: Path) -> dict[str, str] | None:
    """The ekman map from the folder's ekman_mapping.json, or None when it has none."""
    file = folder / "ekman_mapping.json"
    if not file.is_file():
        return None
    try:
        groups = json.loads(_read_text(file, "fix or delete it"))
    except json.JSONDecodeError as e:
        raise InputError(f"{file}: not valid JSON ({e}); fix or delete it") from None
    if not isinstance(groups, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in groups.values()):
        raise InputError(f"{file}: expected an object of emotion -> list of GoEmotions labels; "
                         f"fix or delete it")
    try:
        return goemotions_map("ekman", groups)
    except InputError as e:  # its message does not say that the map came from this file
        why = str(e).removeprefix("ekman_mapping.json: ")
        raise InputError(f"{file}: {why}" + ("" if "; " in why else "; fix or delete it")) from None


# ---- the Hugging Face copy ------------------------------------------------------------------------
def _hub_unreachable(endpoint: str) -> bool:
    """True when the hub does not answer within 3 s: fail fast instead of `datasets`' ~25 s of retries.

    In cache-only mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set) nothing is probed: `datasets`
    reads its cache, or fails at once.
    """
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    from emotion_fusion.hub import is_online  # the same bounded probe as the weight lookups (DNS included)
    return not is_online(endpoint)


def _read_hf(name: str) -> list[tuple]:
    """Rows (split, text, ids, id, source) of the HF dataset's `simplified` config."""
    fix = "or pass a folder of GoEmotions TSVs (see data/README.md)"
    try:
        import datasets
    except ImportError:
        raise InputError(f"GoEmotions {name!r} needs the 'datasets' library, which is not installed; "
                         f"pip install datasets, {fix}") from None
    if _hub_unreachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co")):
        raise InputError(f"GoEmotions {name!r}: the Hugging Face hub is unreachable (offline); go online, "
                         f"set HF_DATASETS_OFFLINE=1 to use a cached copy, {fix}")
    try:
        ds = datasets.load_dataset(name, "simplified")
    except Exception as e:  # the hub raises many types (ConnectionError, HfHubHTTPError, ...)
        why = f"{type(e).__name__}: {e}".replace("\n", " ")[:200]
        raise InputError(f"GoEmotions {name!r} could not be loaded ({why}); go online, {fix}") from None
    rows = []
    for hf_split, split in (("train", "train"), ("validation", "dev"), ("test", "test")):
        if hf_split in ds:
            rows.extend((split, r["text"], r["labels"], r["id"], f"{hf_split}:{i}")
                        for i, r in enumerate(ds[hf_split]))
    return rows


def _rows_from_hf(name: str, wanted: list[str] | None, skip_bad: bool, skipped: list) -> list[tuple]:
    rows, present = [], set()
    for split, text, ids, cid, src in _read_hf(name):
        present.add(split)
        if wanted is not None and split not in wanted:
            continue
        ids, problem = _check_row(text, ids)
        if problem is not None:
            if not skip_bad:
                raise InputError(f"{name} {src}: {problem}; skip bad rows with {SKIP_BAD}")
            skipped.append({"source": src, "reason": problem})
            continue
        rows.append((split, text, ids, cid))
    check_present(name, wanted, sorted(present, key=GO_SPLITS.index))
    return rows
