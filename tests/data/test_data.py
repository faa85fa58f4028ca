"""Loaders, duplicates and summaries: tiny synthetic datasets in tmp_path, plus the real data (marked)."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, face, jpeg_bytes, make_fer_tree, make_fer_zip, make_goemotions_dir, snapshot
from PIL import Image

from emotion_fusion import data
from emotion_fusion.data import (
    drop_duplicates_of,
    find_duplicates,
    format_summary,
    goemotions,
    load_fer2013,
    load_goemotions,
    resolve_paths,
    stack_pixels,
    summarize,
)
from emotion_fusion.data.labels import CLASSES, GOEMOTIONS_LABELS
from emotion_fusion.errors import InputError


def _zip_tree(src: Path, dest: Path, prefix: str = "", dir_entries: bool = False) -> Path:
    """Zip a folder tree (optionally under one extra top folder, optionally with directory entries)."""
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted(src.rglob("*")):
            rel = prefix + p.relative_to(src).as_posix()
            if p.is_dir() and dir_entries:
                z.writestr(rel + "/", b"")
            elif p.is_file():
                z.writestr(rel, p.read_bytes())
    return dest


# The dataset authors' ekman_mapping.json (GoEmotions repo, data/ekman_mapping.json).
EKMAN_JSON = {
    "anger": ["anger", "annoyance", "disapproval"], "disgust": ["disgust"], "fear": ["fear", "nervousness"],
    "joy": ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief",
            "pride", "admiration", "desire", "caring"],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
}


@pytest.fixture
def fer_dir(tmp_path):
    return make_fer_tree(tmp_path / "fer", per_class=2)


# ---- resolve_paths ---------------------------------------------------------------------------------
def test_resolve_paths_explicit_env_and_repo_default(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    make_fer_zip(root / "fer2013.zip", per_class=1)
    make_goemotions_dir(root / "goemotions", per_class=1)
    monkeypatch.setenv("EMOTION_FUSION_DATA", str(root))
    assert resolve_paths() == (root / "fer2013.zip", root / "goemotions")
    assert resolve_paths("elsewhere.zip", "go") == (Path("elsewhere.zip"), Path("go"))
    monkeypatch.delenv("EMOTION_FUSION_DATA")
    repo_data = tmp_path / "repo_data"
    make_fer_tree(repo_data / "fer2013", per_class=1)
    make_goemotions_dir(repo_data / "goemotions", per_class=1)
    monkeypatch.setattr(data.paths, "REPO_DATA", repo_data)
    assert resolve_paths() == (repo_data / "fer2013", repo_data / "goemotions")


def test_resolve_paths_not_found_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_FUSION_DATA", str(tmp_path))
    with pytest.raises(InputError, match=r"fer2013\.zip or fer2013/ in EMOTION_FUSION_DATA=.*README\.md"):
        resolve_paths()
    with pytest.raises(InputError, match=r"goemotions/ in EMOTION_FUSION_DATA"):
        resolve_paths(fer2013=tmp_path / "x.zip")
    monkeypatch.delenv("EMOTION_FUSION_DATA")
    monkeypatch.setattr(data.paths, "REPO_DATA", tmp_path / "nothing")
    with pytest.raises(InputError, match=r"repo's .*nothing.*set EMOTION_FUSION_DATA"):
        resolve_paths()


# ---- FER2013 ---------------------------------------------------------------------------------------
def test_fer_folder_and_zip_read_in_place(tmp_path, fer_dir):
    zpath = make_fer_zip(tmp_path / "fer.zip", per_class=2)
    before = {**snapshot(fer_dir), **snapshot(zpath)}
    a, b = load_fer2013(fer_dir, progress=False), load_fer2013(zpath, progress=False)
    assert {**snapshot(fer_dir), **snapshot(zpath)} == before
    assert list(a.columns) == ["split", "label", "y", "source", "hash", "pixels"]
    assert len(a) == len(b) == 28 and a.attrs["skipped"] == [] and b.attrs["skipped"] == []
    # same images -> same labels and pixel hashes, whatever the container
    for col in ("split", "label", "y", "hash"):
        assert a[col].tolist() == b[col].tolist()
    assert b["source"].iloc[0] == "train/angry/train_angry_0.jpg"
    assert a["source"].iloc[0] == str(fer_dir / "train/angry/train_angry_0.jpg")
    # sorted by split (train first), then class order, then source
    assert a["split"].tolist() == ["train"] * 14 + ["test"] * 14
    assert a["y"].tolist()[:14] == sorted(a["y"].tolist()[:14])
    assert [CLASSES[y] for y in a["y"]] == a["label"].tolist()
    px = stack_pixels(a)
    assert px.shape == (28, 48, 48) and px.dtype == np.uint8
    assert a["hash"].iloc[3] == hashlib.blake2b(px[3].tobytes(), digest_size=16).hexdigest()
    # the decoded pixels are the JPEG's (lossy, so near the drawn face, never a blank image)
    assert np.abs(px[0].astype(int) - face(1000, 0).astype(int)).mean() < 8


def test_fer_extra_top_folder_and_only_test_split(tmp_path):
    src = make_fer_tree(tmp_path / "src", per_class=1, splits=("test",))
    nested = make_fer_tree(tmp_path / "outer" / "fer2013", per_class=1, splits=("test",)).parent
    zpath = _zip_tree(src, tmp_path / "nested.zip", prefix="fer2013/", dir_entries=True)
    for path in (src, nested, zpath):
        df = load_fer2013(path, progress=False)
        assert df["split"].unique().tolist() == ["test"] and len(df) == 7
    assert load_fer2013(zpath, progress=False)["source"].iloc[0] == "fer2013/test/angry/test_angry_0.jpg"


def test_fer_splits_filter_and_missing_split(fer_dir, tmp_path):
    df = load_fer2013(fer_dir, splits=["test"], progress=False)
    assert set(df["split"]) == {"test"} and len(df) == 14
    assert load_fer2013(fer_dir, splits="test", progress=False)["hash"].tolist() == df["hash"].tolist()
    only_test = make_fer_tree(tmp_path / "t", per_class=1, splits=("test",))
    with pytest.raises(InputError, match=r"has no train/ folder \(found: test\)"):
        load_fer2013(only_test, splits=["train"], progress=False)
    with pytest.raises(InputError, match=r"unknown FER2013 split 'dev'"):
        load_fer2013(fer_dir, splits=["dev"], progress=False)


def test_fer_colour_and_other_sizes_become_48px_gray(tmp_path):
    root = make_fer_tree(tmp_path / "fer", per_class=1, splits=("train",))
    rgb = np.zeros((96, 64, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    (root / "train/happy/colour.png").write_bytes(buf.getvalue())
    df = load_fer2013(root, progress=False)
    row = df[df["source"].str.endswith("colour.png")].iloc[0]
    assert row["pixels"].shape == (48, 48) and row["pixels"].dtype == np.uint8
    # ITU-R 601 luma of pure red 200 is ~60 (grayscale conversion, not a channel pick)
    assert abs(int(row["pixels"].mean()) - 60) <= 1


def test_fer_ignores_os_metadata(fer_dir, tmp_path):
    (fer_dir / "train/angry/.DS_Store").write_bytes(b"\0junk")
    (fer_dir / "__MACOSX").mkdir()
    (fer_dir / "__MACOSX/._x.jpg").write_bytes(b"junk")
    assert len(load_fer2013(fer_dir, progress=False)) == 28


def test_fer_corrupt_image_raises_or_is_skipped(fer_dir, tmp_path):
    bad = fer_dir / "train/sad/broken.jpg"
    bad.write_bytes(jpeg_bytes(face(1, 0))[:200])  # truncated JPEG
    (fer_dir / "test/fear/notes.jpg").write_bytes(b"not an image at all")
    before = snapshot(fer_dir)
    with pytest.raises(InputError, match=r"train/sad/broken\.jpg: cannot decode image.*skip_bad=True"):
        load_fer2013(fer_dir, progress=False)
    df = load_fer2013(fer_dir, skip_bad=True, progress=False)
    assert snapshot(fer_dir) == before
    assert len(df) == 28  # the bad files are gone, never replaced by a blank image
    assert sorted(Path(s["source"]).name for s in df.attrs["skipped"]) == ["broken.jpg", "notes.jpg"]
    reasons = {Path(s["source"]).name: s["reason"] for s in df.attrs["skipped"]}
    assert reasons["notes.jpg"] == "cannot decode image: not a recognised image format"
    assert reasons["broken.jpg"].startswith("cannot decode image: OSError")
    zpath = _zip_tree(fer_dir, tmp_path / "bad.zip")
    with pytest.raises(InputError, match=r"bad\.zip:train/sad/broken\.jpg: cannot decode"):
        load_fer2013(zpath, progress=False)
    skipped = load_fer2013(zpath, skip_bad=True, progress=False).attrs["skipped"]
    assert {s["source"] for s in skipped} == {"train/sad/broken.jpg", "test/fear/notes.jpg"}


@pytest.mark.parametrize("as_zip", [False, True])
def test_fer_structural_problems_raise(tmp_path, as_zip):
    def check(tree: Path, pattern: str):
        target = _zip_tree(tree, tmp_path / f"{tree.name}.zip", dir_entries=True) if as_zip else tree
        before = snapshot(target)
        for skip in (False, True):  # structural problems raise even with skip_bad
            with pytest.raises(InputError, match=pattern):
                load_fer2013(target, skip_bad=skip, progress=False)
        assert snapshot(target) == before

    typo = make_fer_tree(tmp_path / "typo", per_class=1, splits=("train",))
    (typo / "train/happy").rename(typo / "train/happyy")
    check(typo, r"unknown class folder train/happyy/; class folders must be one of angry")
    empty = make_fer_tree(tmp_path / "empty", per_class=1, splits=("test",))
    (empty / "train/angry").mkdir(parents=True)
    check(empty, r"train/ holds no images")
    neither = make_fer_tree(tmp_path / "neither", per_class=1, splits=("training",))
    check(neither, r"neither train/ nor test/")
    loose = make_fer_tree(tmp_path / "loose", per_class=1, splits=("train",))
    (loose / "train/stray.jpg").write_bytes(jpeg_bytes(face(3)))
    check(loose, r"unexpected file train/stray\.jpg")


def test_fer_missing_or_wrong_kind_of_path(tmp_path):
    with pytest.raises(InputError, match=r"FER2013 path .*nope\.zip does not exist"):
        load_fer2013(tmp_path / "nope.zip", progress=False)
    txt = tmp_path / "fer.txt"
    txt.write_text("hello")
    with pytest.raises(InputError, match=r"fer\.txt is neither a folder nor a zip archive"):
        load_fer2013(txt, progress=False)
    assert txt.read_text() == "hello"


def test_stack_pixels_empty():
    assert stack_pixels(pd.DataFrame({"pixels": []})).shape == (0, 48, 48)


def _mark_encrypted(zpath: Path, name: str) -> None:
    """Set the 'encrypted' flag of one member in the zip's central directory (zipfile cannot write one)."""
    raw = bytearray(zpath.read_bytes())
    pos = raw.find(b"PK\x01\x02")
    while pos != -1:
        n, e, c = struct.unpack("<HHH", raw[pos + 28:pos + 34])
        if raw[pos + 46:pos + 46 + n].decode() == name:
            raw[pos + 8] |= 0x1
        pos = raw.find(b"PK\x01\x02", pos + 46 + n + e + c)
    zpath.write_bytes(bytes(raw))


ALLOW = r"--allow-empty-classes \(Python: allow_empty_classes=True\)"


@pytest.mark.parametrize("form", ["folder", "zip", "zip without folder entries"])
def test_fer_empty_class_folder_raises_unless_allowed(tmp_path, form):
    tree = make_fer_tree(tmp_path / "fer", per_class=1)
    for f in (tree / "train/disgust").iterdir():
        f.unlink()
    target = tree if form == "folder" else _zip_tree(tree, tmp_path / "fer.zip", dir_entries=form == "zip")
    state = "is missing" if form == "zip without folder entries" else "is empty"
    with pytest.raises(InputError, match=rf"fer(\.zip)?: class folder train/disgust/ {state}; "
                                         rf"every class needs images: add them, or allow .*{ALLOW}$"):
        load_fer2013(target, progress=False)
    df = load_fer2013(target, progress=False, allow_empty_classes=True)
    assert df.attrs["empty_classes"] == ["train/disgust/"]
    assert len(df) == 13 and "disgust" not in set(df.loc[df["split"] == "train", "label"])
    assert load_fer2013(target, splits=["test"], progress=False).attrs["empty_classes"] == []


def test_fer_missing_class_folders_are_all_counted(tmp_path):
    tree = make_fer_tree(tmp_path / "fer", per_class=1)
    for d in ("train/fear", "test/fear", "test/sad"):
        for f in (tree / d).iterdir():
            f.unlink()
        (tree / d).rmdir()
    with pytest.raises(InputError, match=r"class folder train/fear/ is missing \(and 2 more: test/fear/, "
                                         r"test/sad/\); every class needs images"):
        load_fer2013(tree, progress=False)
    df = load_fer2013(tree, progress=False, allow_empty_classes=True)
    assert df.attrs["empty_classes"] == ["train/fear/", "test/fear/", "test/sad/"] and len(df) == 11


def test_fer_class_emptied_by_skip_bad_raises_unless_allowed(tmp_path):
    tree = make_fer_tree(tmp_path / "fer", per_class=1)
    (tree / "train/disgust/train_disgust_0.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"train/disgust/ has no readable images \(all were skipped as bad\); "
                                         r"every class needs images.*" + ALLOW):
        load_fer2013(tree, skip_bad=True, progress=False)
    df = load_fer2013(tree, skip_bad=True, allow_empty_classes=True, progress=False)
    assert df.attrs["empty_classes"] == ["train/disgust/"] and len(df.attrs["skipped"]) == 1


@pytest.mark.parametrize("as_zip", [False, True])
def test_fer_bad_image_message_names_cli_flag_and_keyword(tmp_path, fer_dir, as_zip):
    (fer_dir / "test/fear/notes.jpg").write_bytes(b"not an image at all")
    target = _zip_tree(fer_dir, tmp_path / "bad.zip") if as_zip else fer_dir
    with pytest.raises(InputError) as err:
        load_fer2013(target, progress=False)
    msg = str(err.value)
    assert msg.endswith("test/fear/notes.jpg: cannot decode image: not a recognised image format; fix or "
                        "remove the file, or skip bad items with --skip-bad (Python: skip_bad=True)")
    assert "\n" not in msg


def test_fer_encrypted_zip_member_is_a_bad_item_not_a_crash(tmp_path):
    zpath = make_fer_zip(tmp_path / "fer.zip", per_class=2)
    _mark_encrypted(zpath, "test/sad/test_sad_1.jpg")
    with pytest.raises(InputError, match=r"fer\.zip:test/sad/test_sad_1\.jpg: the member is encrypted; give an "
                                         r"unencrypted zip.*--skip-bad"):
        load_fer2013(zpath, progress=False)
    df = load_fer2013(zpath, skip_bad=True, progress=False)
    assert len(df) == 27 and [s["source"] for s in df.attrs["skipped"]] == ["test/sad/test_sad_1.jpg"]


def test_decode_face_is_the_loaders_decoder(fer_dir):
    df = load_fer2013(fer_dir, progress=False)
    for i in (0, 17):
        px = data.decode_face(Path(df["source"].iloc[i]).read_bytes())
        assert px.dtype == np.uint8 and px.shape == (48, 48)
        assert np.array_equal(px, df["pixels"].iloc[i])
        assert data.pixel_hash(px) == df["hash"].iloc[i]
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 1] = 100
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    green = data.decode_face(buf.getvalue())
    assert green.shape == (48, 48) and abs(int(green.mean()) - 59) <= 1  # luma of green 100 is ~59


@pytest.mark.parametrize("raw, why", [
    (b"plain text, not a face", r"not a recognised image format"),
    (b"", r"not a recognised image format"),
    (jpeg_bytes(face(5))[:150], r"OSError: (?i:truncated)"),
])
def test_decode_face_errors_are_one_clean_line(raw, why):
    with pytest.raises(data.ImageDecodeError, match=r"^cannot decode image: " + why) as err:
        data.decode_face(raw)
    assert isinstance(err.value, InputError)  # the CLI prints it as one line even if nobody wraps it
    assert "BytesIO" not in str(err.value) and "\n" not in str(err.value)


# ---- duplicates ----------------------------------------------------------------------------------
def _frame(split_hashes: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(s, h) for s, hs in split_hashes.items() for h in hs]
    return pd.DataFrame(rows, columns=["split", "hash"])


def test_find_duplicates_within_and_across():
    df = _frame({"test": ["a", "x", "x"], "train": ["a", "a", "b", "c", "c", "c"], "val": ["b", "z"]})
    assert find_duplicates(df) == {
        "within": {"train": 3, "val": 0, "test": 1},
        "across": {"train-val": 1, "train-test": 2, "val-test": 0},
    }
    assert json.loads(json.dumps(find_duplicates(df))) == find_duplicates(df)


def test_find_duplicates_on_loaded_images(tmp_path):
    root = make_fer_tree(tmp_path / "fer", per_class=1)
    (root / "test/sad/copy.jpg").write_bytes((root / "train/sad/train_sad_0.jpg").read_bytes())
    dup = find_duplicates(load_fer2013(root, progress=False))
    assert dup == {"within": {"train": 0, "test": 0}, "across": {"train-test": 1}}


def test_drop_duplicates_of():
    df = _frame({"train": ["a", "b", "c", "a"]})
    out, n = drop_duplicates_of(df, [_frame({"val": ["a"]}), _frame({"test": ["c", "q"]})])
    assert n == 3 and out["hash"].tolist() == ["b"] and out.index.tolist() == [0]
    assert drop_duplicates_of(df, [])[1] == 0


# ---- GoEmotions ----------------------------------------------------------------------------------
def test_goemotions_folder(tmp_path):
    go = make_goemotions_dir(tmp_path / "go", per_class=2)
    before = snapshot(go)
    df = load_goemotions(go)
    assert snapshot(go) == before
    assert list(df.columns) == ["split", "text", "label_ids", "go_labels", "label", "y", "id"]
    assert df["split"].value_counts().to_dict() == {"train": 14, "dev": 14, "test": 14}
    row = df.iloc[0]
    assert row["label_ids"] == (2,) and row["go_labels"] == ("anger",) and row["label"] == "angry"
    assert row["y"] == 0 and row["id"] == "id0" and row["text"] == "This makes me so angry (train 0)"
    assert df.attrs["skipped"] == [] and df.attrs["mapping"] == "ekman"
    assert set(load_goemotions(go, splits=["dev"])["split"]) == {"dev"}


def _go_with_lines(tmp_path: Path, lines: list[str], name: str = "train.tsv", newline: str = "\n") -> Path:
    go = make_goemotions_dir(tmp_path / "go", per_class=1, splits=())
    (go / name).write_bytes((newline.join(lines) + newline).encode("utf-8"))
    return go


def test_goemotions_multilabel_rules_quotes_and_line_endings(tmp_path):
    lines = ['He said "wow" and \'no\'\t17,1\ta',      # joy + amusement: both happy
             "mixed feelings\u2028here\t17,25\tb",     # joy + sadness: classes disagree
             "just a fact\t27\tc"]
    go = _go_with_lines(tmp_path, lines, newline="\r\n")
    agree = load_goemotions(go)
    assert agree["text"].tolist() == ['He said "wow" and \'no\'', "mixed feelings\u2028here", "just a fact"]
    assert agree["label"].tolist() == ["happy", None, "neutral"]
    assert agree["y"].tolist() == [3, -1, 4] and agree["label_ids"].iloc[1] == (17, 25)
    first = load_goemotions(go, multi_label="first")
    assert first["label"].tolist() == ["happy", "happy", "neutral"]
    # the seed map sends embarrassment to disgust, ekman to sad
    (go / "train.tsv").write_text("so awkward\t12\tz\n")
    assert load_goemotions(go, mapping="seed")["label"].tolist() == ["disgust"]
    assert load_goemotions(go)["label"].tolist() == ["sad"]


def test_goemotions_uses_folder_ekman_json(tmp_path):
    go = _go_with_lines(tmp_path, ["I care\t5\ta"])
    assert load_goemotions(go)["label"].tolist() == ["happy"]
    ekman = {k: list(v) for k, v in EKMAN_JSON.items()}
    ekman["joy"].remove("caring")
    ekman["sadness"].append("caring")
    (go / "ekman_mapping.json").write_text(json.dumps(ekman))
    assert load_goemotions(go)["label"].tolist() == ["sad"]
    (go / "ekman_mapping.json").write_text("{not json")
    with pytest.raises(InputError, match=r"ekman_mapping\.json: not valid JSON"):
        load_goemotions(go)


@pytest.mark.parametrize("line, problem", [
    ("only text\t3", r"expected 3 tab-separated columns .* got 2"),
    ("too\tmany\t3\tx", r"expected 3 tab-separated columns .* got 4"),
    ("text\t28\tx", r"label id 28 is outside 0-27"),
    ("text\t-1\tx", r"label id -1 is outside"),
    ("text\t3,x\tx", r"label ids '3,x' are not comma-separated integers"),
    ("text\t--3\tx", r"label ids '--3' are not comma-separated integers"),
    ("text\t3_0\tx", r"label ids '3_0' are not"),
    ("text\t\tx", r"label ids '' are not"),
    ("   \t3\tx", r"empty text"),
])
def test_goemotions_bad_rows(tmp_path, line, problem):
    go = _go_with_lines(tmp_path, ["fine text\t3\ta", line, "also fine\t4\tb"])
    before = snapshot(go)
    with pytest.raises(InputError, match=r"train\.tsv:2: " + problem + r".*skip_bad=True"):
        load_goemotions(go)
    df = load_goemotions(go, skip_bad=True)
    assert snapshot(go) == before
    assert df["text"].tolist() == ["fine text", "also fine"]
    assert df.attrs["skipped"][0]["source"] == "train.tsv:2"
    assert len(df.attrs["skipped"]) == 1


def test_goemotions_bad_folders(tmp_path):
    go = make_goemotions_dir(tmp_path / "go", per_class=1, splits=("dev",))
    (go / "emotions.txt").unlink()
    with pytest.raises(InputError, match=r"emotions\.txt is missing"):
        load_goemotions(go)
    (go / "emotions.txt").write_text("\n".join(GOEMOTIONS_LABELS[:27]) + "\nneutrality\n")
    with pytest.raises(InputError, match=r"emotions\.txt: not the 28 GoEmotions labels .* line 28"):
        load_goemotions(go)
    (go / "emotions.txt").write_text("\n".join(GOEMOTIONS_LABELS) + "\n")
    with pytest.raises(InputError, match=r"has no test split \(found: dev\)"):
        load_goemotions(go, splits=["test"])
    with pytest.raises(InputError, match=r"unknown GoEmotions split 'validation'"):
        load_goemotions(go, splits=["validation"])
    with pytest.raises(InputError, match=r"unknown label map 'plutchik'"):
        load_goemotions(go, mapping="plutchik")
    with pytest.raises(InputError, match=r"unknown multi-label rule 'any'"):
        load_goemotions(go, multi_label="any")
    (go / "dev.tsv").unlink()
    with pytest.raises(InputError, match=r"go: no train\.tsv, dev\.tsv or test\.tsv found"):
        load_goemotions(go)
    with pytest.raises(InputError, match=r"GoEmotions path .*missing does not exist"):
        load_goemotions(tmp_path / "missing")
    with pytest.raises(InputError, match=r"emotions\.txt is not a folder"):
        load_goemotions(go / "emotions.txt")


def test_goemotions_hf_id_without_library_or_network(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(InputError, match=r"'datasets' library, which is not installed.*GoEmotions TSVs"):
        load_goemotions("google-research-datasets/go_emotions")
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, **k: (_ for _ in ()).throw(ConnectionError("no route"))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setattr(goemotions, "_hub_unreachable", lambda endpoint: True)
    with pytest.raises(InputError, match=r"'go_emotions': the Hugging Face hub is unreachable"):
        load_goemotions("go_emotions")
    monkeypatch.setattr(goemotions, "_hub_unreachable", lambda endpoint: False)
    with pytest.raises(InputError, match=r"loaded \(ConnectionError: no route\); go online, or pass a folder"):
        load_goemotions("go_emotions")


def test_goemotions_hf_rows(monkeypatch):
    calls = []

    def load_dataset(name, config):
        calls.append((name, config))
        return {"train": [{"text": "yay", "labels": [17], "id": "a"}],
                "validation": [{"text": "hmm", "labels": [6, 7], "id": "b"},
                               {"text": " ", "labels": [27], "id": "c"}]}
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(goemotions, "_hub_unreachable", lambda endpoint: False)
    df = load_goemotions("google-research-datasets/go_emotions", skip_bad=True)
    assert calls == [("google-research-datasets/go_emotions", "simplified")]
    assert df["split"].tolist() == ["train", "dev"] and df["label"].tolist() == ["happy", "surprise"]
    assert df.attrs["skipped"] == [{"source": "validation:1", "reason": "empty text"}]
    assert load_goemotions("go_emotions", splits=["train"])["text"].tolist() == ["yay"]
    with pytest.raises(InputError, match=r"go_emotions: has no test split \(found: train, dev\)"):
        load_goemotions("go_emotions", splits=["test"])
    with pytest.raises(InputError, match=r"go_emotions validation:1: empty text"):
        load_goemotions("go_emotions")


def test_hub_unreachable_probes_unless_cache_only(monkeypatch):
    """A listening port is reachable, a closed one is not; cache-only mode never probes."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "EMOTION_FUSION_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        open_url = "http://127.0.0.1:%d" % server.getsockname()[1]
        assert goemotions._hub_unreachable(open_url) is False
    # the socket is closed now: nothing listens on that port, the connection is refused
    assert goemotions._hub_unreachable(open_url) is True
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "true")  # `datasets` then reads its cache: no probe
    monkeypatch.setattr("emotion_fusion.branches.weights.is_online", lambda url: pytest.fail("probed"))
    assert goemotions._hub_unreachable(open_url) is False


def test_goemotions_byte_order_marks(tmp_path):
    go = _go_with_lines(tmp_path, ["yay\t17\ta", "meh\t27\tb"])
    bom = b"\xef\xbb\xbf"
    (go / "emotions.txt").write_bytes(bom + (go / "emotions.txt").read_bytes())
    (go / "train.tsv").write_bytes(bom + (go / "train.tsv").read_bytes())
    (go / "ekman_mapping.json").write_bytes(bom + json.dumps(EKMAN_JSON).encode())
    df = load_goemotions(go)
    assert df["text"].tolist() == ["yay", "meh"] and df["label"].tolist() == ["happy", "neutral"]
    (go / "emotions.txt").write_text("\n".join(GOEMOTIONS_LABELS) + "\n", encoding="utf-16")
    with pytest.raises(InputError, match=r"emotions\.txt: is UTF-16 text \(it starts with a UTF-16 "
                                         r"byte-order mark\); use the dataset's own emotions\.txt"):
        load_goemotions(go)


def test_goemotions_bad_row_messages_name_cli_flag_and_keyword(tmp_path, monkeypatch):
    go = _go_with_lines(tmp_path, ["fine\t3\ta", "bad\t99\tb"])
    with pytest.raises(InputError) as err:
        load_goemotions(go)
    assert str(err.value) == (f"{go / 'train.tsv'}:2: label id 99 is outside 0-27; fix the line, or skip "
                              f"bad rows with --skip-bad (Python: skip_bad=True)")
    rows = {"train": [{"text": "", "labels": [1], "id": "a"}]}
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a: rows))
    monkeypatch.setattr(goemotions, "_hub_unreachable", lambda endpoint: False)
    with pytest.raises(InputError) as err:
        load_goemotions("go_emotions")
    assert str(err.value) == ("go_emotions train:0: empty text; skip bad rows with --skip-bad "
                              "(Python: skip_bad=True)")


def test_goemotions_empty_tsv_and_bad_ekman_json_name_the_file(tmp_path):
    go = _go_with_lines(tmp_path, ["yay\t17\ta"])
    (go / "dev.tsv").write_bytes(b"")
    with pytest.raises(InputError, match=r"dev\.tsv: is empty; restore it .* or leave dev out of splits"):
        load_goemotions(go)
    assert load_goemotions(go, splits=["train"])["text"].tolist() == ["yay"]
    (go / "dev.tsv").unlink()
    ekman = {k: list(v) for k, v in EKMAN_JSON.items()}
    ekman["joy"][0] = "joyy"
    (go / "ekman_mapping.json").write_text(json.dumps(ekman))
    with pytest.raises(InputError, match=r"go/ekman_mapping\.json: label map 'ekman' names unknown "
                                         r"GoEmotions labels \['joyy'\]; fix or delete it$"):
        load_goemotions(go)
    assert load_goemotions(go, mapping="seed")["label"].tolist() == ["happy"]  # the file is ekman's only
    ekman["joy"][0] = 17
    (go / "ekman_mapping.json").write_text(json.dumps(ekman))
    with pytest.raises(InputError, match=r"ekman_mapping\.json: expected an object of emotion -> list"):
        load_goemotions(go)
    (go / "ekman_mapping.json").write_text(json.dumps({"joyful": ["joy"]}))
    with pytest.raises(InputError, match=r"go/ekman_mapping\.json: group 'joyful' is not one of the 7 "
                                         r"emotions .*; fix the file or use the built-in map$"):
        load_goemotions(go)


# ---- summaries -------------------------------------------------------------------------------------
def test_summarize_and_format(tmp_path):
    fer = load_fer2013(make_fer_tree(tmp_path / "fer", per_class=2), progress=False)
    go = load_goemotions(_go_with_lines(tmp_path, ["yay\t17\ta", "mixed\t17,25\tb", "meh\t27\tc"]))
    s = summarize(fer, go)
    assert json.loads(json.dumps(s)) == s
    assert s["fer2013"]["rows"] == {"train": 14, "test": 14}
    assert s["fer2013"]["classes"]["test"]["disgust"] == 2
    assert s["fer2013"]["duplicates"] == {"within": {"train": 0, "test": 0}, "across": {"train-test": 0}}
    g = s["goemotions"]
    assert g["rows"] == {"train": 3} and g["dropped"] == {"train": 1}
    assert g["classes"]["train"]["happy"] == 1 and g["classes"]["train"]["neutral"] == 1
    assert g["go_labels"]["train"]["joy"] == 2 and g["go_labels"]["train"]["sadness"] == 1
    text = format_summary(s)
    assert "FER2013" in text and "GoEmotions" in text and "dropped by the multi-label rule: train 1" in text
    assert any(line.split() == ["disgust", "2", "2"] for line in text.splitlines())
    assert set(summarize(None, go)) == {"goemotions"}


def test_data_module_re_exports_the_loaders():
    """`data.X` keeps working for callers written before the split into fer2013/goemotions/summary."""
    from emotion_fusion.data import fer2013, summary
    assert data.load_fer2013 is fer2013.load_fer2013 and data.decode_face is fer2013.decode_face
    assert data.load_goemotions is goemotions.load_goemotions
    assert (data.summarize, data.format_summary, data.find_duplicates) == (
        summary.summarize, summary.format_summary, summary.find_duplicates)
    assert (data.ENV_VAR, data.IMAGE_SIZE) == ("EMOTION_FUSION_DATA", 48)
    assert all(callable(getattr(data, n)) for n in ("drop_duplicates_of", "stack_pixels", "resolve_paths"))
    assert all(hasattr(data, n) for n in data.__all__)


def test_data_module_does_not_import_torch():
    code = "import sys, emotion_fusion.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- the real datasets -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(fer_path, go_path):
    return load_fer2013(fer_path, progress=False), load_goemotions(go_path)


@pytest.mark.data
def test_real_fer2013_counts(real):
    fer, _ = real
    counts = fer.groupby(["split", "label"]).size()
    assert counts["train"].to_dict() == {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215,
                                         "neutral": 4965, "sad": 4830, "surprise": 3171}
    assert counts["test"].to_dict() == {"angry": 467, "disgust": 56, "fear": 496, "happy": 895,
                                        "neutral": 607, "sad": 653, "surprise": 415}
    assert (fer["split"] == "train").sum() == 28709 and (fer["split"] == "test").sum() == 3589
    assert fer.attrs["skipped"] == []


@pytest.mark.data
def test_real_goemotions_counts(real):
    _, go = real
    assert go["split"].value_counts().to_dict() == {"train": 43410, "dev": 5426}
    assert go["text"].str.strip().ne("").all() and go.attrs["skipped"] == []


@pytest.mark.data
def test_real_duplicates_and_summary(real):
    fer, go = real
    dup = find_duplicates(fer)
    # measured on the Kaggle archive: FER2013 repeats some faces, also across train and test
    assert dup == {"within": {"train": 1236, "test": 26}, "across": {"train-test": 351}}
    s = summarize(fer, go)
    assert json.loads(json.dumps(s)) == s
    assert s["goemotions"]["rows"] == {"train": 43410, "dev": 5426}
    text = format_summary(s)
    assert "28,709" in text and "28709" not in text and ".0 " not in text    # integer counts, thousands separated
