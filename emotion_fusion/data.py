"""Dataset loaders returning plain DataFrames: FER2013 (Kaggle layout, folder or zip) and GoEmotions.

Inputs are only ever read: a zip is decoded member by member without extracting, and nothing is
written beside a dataset. Bad input raises `InputError` naming the file (and line) and the fix;
`skip_bad=True` skips bad images/rows instead and lists them in `df.attrs["skipped"]`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm  # text bars: work in a terminal, Jupyter and papermill alike

from .errors import InputError
from .labels import (CLASS_INDEX, CLASSES, GOEMOTIONS_LABELS, MAPPINGS, MULTI_LABEL_RULES,
                     goemotions_map, map_labels)

# ---- defaults -----------------------------------------------------------------------------------
ENV_VAR = "EMOTION_FUSION_DATA"
REPO_DATA = Path(__file__).resolve().parents[1] / "data"
IMAGE_SIZE = 48
FER_SPLITS = ("train", "val", "test")      # Kaggle ships train/test; a val/ folder is read too
GO_SPLITS = ("train", "dev", "test")
HF_IDS = ("google-research-datasets/go_emotions", "go_emotions")
# Decoding threads. Measured on the 2-core dev box (busy with other jobs): the real zip and an
# unpacked folder load in 6-8 s with 1 or 2 threads alike -- a 48x48 JPEG's decode is too short for
# PIL's GIL release to pay -- so 2 is kept only to overlap file reads on slow disks.
DECODE_THREADS = 2
# OS metadata that sits in archives and folders but is not part of the dataset.
_JUNK = ("__MACOSX", "Thumbs.db", "desktop.ini")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, zipfile.BadZipFile,
                  Image.DecompressionBombError)
_FER_COLUMNS = ["split", "label", "y", "source", "hash", "pixels"]
_GO_COLUMNS = ["split", "text", "label_ids", "go_labels", "label", "y", "id"]
_INT = re.compile(r"\s*-?[0-9]+\s*")   # one label id in a TSV row
_WHERE_FIX = "put it in data/ (see data/README.md), set EMOTION_FUSION_DATA, or pass the path"


# ---- locating the data ----------------------------------------------------------------------------
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
        raise InputError(f"FER2013 not found: looked for fer2013.zip or fer2013/ in {where}; {_WHERE_FIX}")
    if goemotions is not None:
        go = Path(goemotions)
    elif (base / "goemotions").is_dir():
        go = base / "goemotions"
    else:
        raise InputError(f"GoEmotions not found: looked for goemotions/ in {where}; {_WHERE_FIX}")
    return fer, go


# ---- FER2013 --------------------------------------------------------------------------------------
def _is_junk(rel: str) -> bool:
    return any(p.startswith(".") or p in _JUNK for p in rel.split("/"))


def _list_tree(path: Path, zf: zipfile.ZipFile | None) -> tuple[list[str], set[str]]:
    """Relative posix paths of the files and folders in a folder or an open zip (junk left out)."""
    files: list[str] = []
    dirs: set[str] = set()
    if zf is None:
        for d, subdirs, names in os.walk(path):
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


def _decode(raw: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> 48x48 uint8 grayscale (colour converted, other sizes resized)."""
    with Image.open(io.BytesIO(raw)) as im:
        im.load()  # decode now, so a truncated file fails here rather than later
        out = im if im.mode == "L" else im.convert("L")
        if out.size != (IMAGE_SIZE, IMAGE_SIZE):
            out = out.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        return np.array(out, dtype=np.uint8)


def _pixel_hash(pixels: np.ndarray) -> str:
    return hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest()


def load_fer2013(path: str | Path, splits: list[str] | tuple[str, ...] | None = None,
                 skip_bad: bool = False, progress: bool = True) -> pd.DataFrame:
    """Read FER2013 in the Kaggle layout from a folder or straight from its zip.

    One row per image: split, label, y (CLASSES order), source, hash (blake2b of the decoded 48x48
    pixels), pixels (48x48 uint8). Rows are sorted by (split, label, source). `splits` picks which of
    the present splits to read (each must exist). `df.attrs["skipped"]` lists images skipped by
    `skip_bad=True`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"FER2013 path {path} does not exist; {_WHERE_FIX}")
    zf = None
    if not path.is_dir():
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise InputError(f"{path} is neither a folder nor a zip archive; pass the FER2013 folder "
                             f"or fer2013.zip") from None
        except OSError as e:
            raise InputError(f"{path}: cannot be read ({e.strerror}); check it and its permissions") from None
    try:
        return _read_fer(path, zf, splits, skip_bad, progress)
    finally:
        if zf is not None:
            zf.close()


def _read_fer(path: Path, zf: zipfile.ZipFile | None, splits, skip_bad: bool, progress: bool) -> pd.DataFrame:
    files, dirs = _list_tree(path, zf)
    root = _find_root(path, dirs)
    present = [s for s in FER_SPLITS if root + s in dirs]
    wanted = _check_splits(splits, FER_SPLITS, "FER2013") or present
    for s in wanted:
        if s not in present:
            raise InputError(f"{path}: has no {root}{s}/ folder (found: {', '.join(present)}); "
                             f"choose splits that exist")
    items = []  # (split, label, relative name)
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
    for s in wanted:
        if not any(it[0] == s for it in items):
            raise InputError(f"{path}: {root}{s}/ holds no images; add them or leave {s} out of splits")
    items.sort(key=lambda it: (FER_SPLITS.index(it[0]), CLASS_INDEX[it[1]], it[2]))

    is_zip = zf is not None

    def work(item):
        rel = item[2]
        try:  # zipfile reads are thread-safe: members are read under the archive's own lock
            pixels = _decode(zf.read(rel) if is_zip else (path / rel).read_bytes())
        except Image.UnidentifiedImageError:  # its message only names a BytesIO object
            return None, "cannot decode image: not a recognised image format"
        except _DECODE_ERRORS as e:
            return None, f"cannot decode image: {type(e).__name__}: {e}".replace("\n", " ")
        return pixels, None

    rows, skipped = [], []
    with ThreadPool(DECODE_THREADS) as pool:
        results = pool.imap(work, items, chunksize=64)
        for (split, label, rel), (pixels, err) in tqdm(zip(items, results), total=len(items),
                                                      desc="FER2013", disable=not progress):
            source = rel if is_zip else str(path / rel)
            if err is not None:
                if not skip_bad:
                    where = f"{path}:{rel}" if is_zip else source
                    raise InputError(f"{where}: {err}; replace or delete it, or pass skip_bad=True")
                skipped.append({"source": source, "reason": err})
                continue
            rows.append((split, label, CLASS_INDEX[label], source, _pixel_hash(pixels), pixels))
    df = pd.DataFrame(rows, columns=_FER_COLUMNS)
    df["y"] = df["y"].astype(np.int64)
    df.attrs.update(skipped=skipped, path=str(path))
    return df


def stack_pixels(df: pd.DataFrame) -> np.ndarray:
    """The `pixels` column as one (N, 48, 48) uint8 array."""
    if len(df) == 0:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return np.stack(df["pixels"].to_list()).astype(np.uint8, copy=False)


# ---- GoEmotions -----------------------------------------------------------------------------------
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
    try:
        content = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{file}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8")
    # split on "\n" only: str.splitlines would also break texts at \x85 / \u2028 inside comments
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = []
    for n, line in enumerate(lines, start=1):
        parts = line.rstrip("\r").split("\t")
        if len(parts) != 3:
            ids, problem = None, f"expected 3 tab-separated columns (text, label ids, id), got {len(parts)}"
        else:
            ids, problem = _check_row(parts[0], parts[1])
        if problem is not None:
            if not skip_bad:
                raise InputError(f"{file}:{n}: {problem}; fix the line or pass skip_bad=True")
            skipped.append({"source": f"{file.name}:{n}", "reason": problem})
            continue
        rows.append((split, parts[0], ids, parts[2]))
    return rows


def _read_emotions_txt(folder: Path) -> None:
    file = folder / "emotions.txt"
    if not file.is_file():
        raise InputError(f"{folder}: emotions.txt is missing; copy it from the GoEmotions data folder "
                         f"(see data/README.md)")
    try:
        names = [ln.strip() for ln in file.read_text(encoding="utf-8").split("\n") if ln.strip()]
    except UnicodeDecodeError:
        raise InputError(f"{file}: not UTF-8 text; use the dataset's own emotions.txt") from None
    if tuple(names) != GOEMOTIONS_LABELS:
        diff = next((i for i, (a, b) in enumerate(zip(names, GOEMOTIONS_LABELS)) if a != b),
                    min(len(names), len(GOEMOTIONS_LABELS)))
        raise InputError(f"{file}: not the 28 GoEmotions labels in order ({len(names)} names, first "
                         f"difference at line {diff + 1}); use the dataset's own emotions.txt")


def _hub_unreachable(endpoint: str) -> bool:
    """True when the hub does not answer within 3 s: fail fast instead of `datasets`' ~25 s of retries.

    In cache-only mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set) nothing is probed: `datasets`
    reads its cache, or fails at once.
    """
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    from .weights import is_online      # the same bounded probe as the weight lookups (DNS included)
    return not is_online(endpoint)


def _read_hf(name: str) -> list[tuple]:
    """Rows (split, text, ids, id) of the HF dataset's `simplified` config."""
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


def _check_splits(splits, known: tuple[str, ...], dataset: str) -> list[str] | None:
    if splits is None:
        return None
    splits = [splits] if isinstance(splits, str) else list(splits)
    for s in splits:
        if s not in known:
            raise InputError(f"unknown {dataset} split {s!r}; choose from {', '.join(known)}")
    return splits


def _missing_splits(path, wanted: list[str] | None, present: list[str]) -> None:
    for s in wanted or ():
        if s not in present:
            raise InputError(f"{path}: has no {s} split (found: {', '.join(present)}); "
                             f"choose splits that exist")


def _go_from_hf(name: str, wanted: list[str] | None, skip_bad: bool, skipped: list) -> list[tuple]:
    rows, present = [], set()
    for split, text, ids, cid, src in _read_hf(name):
        present.add(split)
        if wanted is not None and split not in wanted:
            continue
        ids, problem = _check_row(text, ids)
        if problem is not None:
            if not skip_bad:
                raise InputError(f"{name} {src}: {problem}; pass skip_bad=True to skip bad rows")
            skipped.append({"source": src, "reason": problem})
            continue
        rows.append((split, text, ids, cid))
    _missing_splits(name, wanted, sorted(present, key=GO_SPLITS.index))
    return rows


def _read_ekman_json(folder: Path) -> dict | None:
    file = folder / "ekman_mapping.json"
    if not file.is_file():
        return None
    try:
        groups = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{file}: not valid JSON ({e}); fix or delete it") from None
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise InputError(f"{file}: expected an object of emotion -> list of GoEmotions labels; "
                         f"fix or delete it")
    return groups


def load_goemotions(path: str | Path, mapping: str = "ekman", multi_label: str = "agree",
                    splits: list[str] | tuple[str, ...] | None = None,
                    skip_bad: bool = False) -> pd.DataFrame:
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
    wanted = _check_splits(splits, GO_SPLITS, "GoEmotions")
    skipped: list[dict] = []
    ekman_json = None
    if str(path) in HF_IDS and not Path(path).exists():
        rows = _go_from_hf(str(path), wanted, skip_bad, skipped)
    else:
        folder = Path(path)
        if not folder.exists():
            raise InputError(f"GoEmotions path {folder} does not exist; {_WHERE_FIX}")
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder; pass the folder holding train.tsv/dev.tsv/test.tsv")
        present = [s for s in GO_SPLITS if (folder / f"{s}.tsv").is_file()]
        if not present:
            raise InputError(f"{folder}: no train.tsv, dev.tsv or test.tsv found; "
                             f"pass the GoEmotions data folder")
        _missing_splits(folder, wanted, present)
        _read_emotions_txt(folder)
        if mapping == "ekman":
            ekman_json = _read_ekman_json(folder)
        rows = [r for s in (wanted or present) for r in _read_tsv(folder / f"{s}.tsv", s, skip_bad, skipped)]
    label_map = goemotions_map(mapping, ekman_json)
    out = []
    for split, text, ids, cid in rows:
        names = tuple(GOEMOTIONS_LABELS[i] for i in ids)
        label = map_labels(names, label_map, multi_label)
        out.append((split, text, ids, names, label, -1 if label is None else CLASS_INDEX[label], cid))
    df = pd.DataFrame(out, columns=_GO_COLUMNS)
    # object dtype keeps a dropped row's label None (pandas' string dtype would turn it into NaN)
    df["label"] = pd.Series([r[4] for r in out], index=df.index, dtype=object)
    df["y"] = df["y"].astype(np.int64)
    df.attrs.update(skipped=skipped, path=str(path), mapping=mapping, multi_label=multi_label)
    return df


# ---- duplicates and summaries ---------------------------------------------------------------------
def _split_order(splits) -> list[str]:
    known = [s for s in (*FER_SPLITS, *GO_SPLITS) if s in set(splits)]
    return list(dict.fromkeys(known)) + sorted(set(splits) - set(known))


def find_duplicates(fer_df: pd.DataFrame) -> dict:
    """Duplicate images by decoded-pixel hash.

    `within[split]`: images that repeat an earlier image of the same split; `across["a-b"]`: images
    of split a whose pixels equal some image of split b, for every pair of splits present.
    """
    splits = _split_order(fer_df["split"].unique())
    hashes = {s: fer_df.loc[fer_df["split"] == s, "hash"] for s in splits}
    within = {s: int(h.duplicated().sum()) for s, h in hashes.items()}
    across = {f"{a}-{b}": int(hashes[a].isin(set(hashes[b])).sum())
              for i, a in enumerate(splits) for b in splits[i + 1:]}
    return {"within": within, "across": across}


def drop_duplicates_of(df: pd.DataFrame, others: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """Rows of `df` whose pixel hash appears in any of `others` removed (index reset), and how many."""
    seen = set().union(*(set(o["hash"]) for o in others)) if others else set()
    hit = df["hash"].isin(seen)
    out = df.loc[~hit].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out, int(hit.sum())


def _counts(df: pd.DataFrame, column: str, names) -> dict[str, dict[str, int]]:
    """{split: {name: count}} in canonical split order, every name listed (zeros included)."""
    return {s: {n: int(c) for n, c in df.loc[df["split"] == s, column].value_counts()
                .reindex(list(names), fill_value=0).items()}
            for s in _split_order(df["split"].unique())}


def summarize(fer_df: pd.DataFrame | None, go_df: pd.DataFrame | None) -> dict:
    """JSON-able counts for both datasets (either may be None): per split and class, duplicates,
    GoEmotions raw label counts, mapped class counts, rows dropped by the multi-label rule, skips."""
    out: dict = {}
    if fer_df is not None:
        out["fer2013"] = {
            "path": fer_df.attrs.get("path"),
            "rows": {s: int(n) for s, n in fer_df["split"].value_counts().reindex(
                _split_order(fer_df["split"].unique())).items()},
            "classes": _counts(fer_df, "label", CLASSES),
            "duplicates": find_duplicates(fer_df),
            "skipped": list(fer_df.attrs.get("skipped", [])),
        }
    if go_df is not None:
        kept = go_df[go_df["y"] >= 0]
        splits = _split_order(go_df["split"].unique())
        out["goemotions"] = {
            "path": go_df.attrs.get("path"),
            "mapping": go_df.attrs.get("mapping"),
            "multi_label": go_df.attrs.get("multi_label"),
            "rows": {s: int((go_df["split"] == s).sum()) for s in splits},
            "go_labels": _counts(go_df.explode("go_labels"), "go_labels", GOEMOTIONS_LABELS),
            "classes": {s: _counts(kept, "label", CLASSES).get(s, dict.fromkeys(CLASSES, 0)) for s in splits},
            "dropped": {s: int(((go_df["split"] == s) & (go_df["y"] < 0)).sum()) for s in splits},
            "skipped": list(go_df.attrs.get("skipped", [])),
        }
    return out


def _table(counts: dict[str, dict[str, int]], index_name: str) -> str:
    table = pd.DataFrame(counts)
    table.loc["total"] = table.sum()
    table.index.name = index_name
    return table.to_string()


def _skipped_lines(skipped: list[dict], limit: int = 5) -> list[str]:
    lines = [f"skipped: {len(skipped)}"]
    lines += [f"  {s['source']}: {s['reason']}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return lines


def format_summary(summary: dict) -> str:
    """Readable aligned tables of a `summarize` result, for a terminal."""
    out: list[str] = []
    if "fer2013" in summary:
        fer = summary["fer2013"]
        out += [f"FER2013 ({fer['path']})", _table(fer["classes"], "class"), "",
                "duplicate images (same decoded pixels):"]
        out += [f"  within {s}: {n}" for s, n in fer["duplicates"]["within"].items()]
        out += [f"  {pair.replace('-', ' images also in ')}: {n}"
                for pair, n in fer["duplicates"]["across"].items()]
        out += _skipped_lines(fer["skipped"]) + [""]
    if "goemotions" in summary:
        go = summary["goemotions"]
        out += [f"GoEmotions ({go['path']}; map {go['mapping']}, multi-label rule {go['multi_label']})",
                _table(go["classes"], "class"),
                "dropped by the multi-label rule: "
                + ", ".join(f"{s} {n}" for s, n in go["dropped"].items()), "",
                "raw GoEmotions label counts (a text with several labels counts once per label):",
                _table(go["go_labels"], "go_label")]
        out += _skipped_lines(go["skipped"])
    return "\n".join(out).rstrip() + "\n"
