"""Batch predict (issue 13): inputs, pairing rules, bad rows, the CLI batch form next to the single pair."""
from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import face, jpeg_bytes

from emotion_fusion import cli, pipeline
from emotion_fusion.app import batch, inference
from emotion_fusion.config import Config
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.scoring import fusion


class FakePredictor:
    """Deterministic stand-in for a run's Predictor (the real one is checked end to end below):
    a face's probabilities follow its mean pixel, a text's its length."""

    def __init__(self):
        self.config = Config.from_profile("smoke")
        self.image, self.text = SimpleNamespace(cfg=self.config), SimpleNamespace(cfg=self.config)
        self.face_batches = []

    @staticmethod
    def _probs(v: np.ndarray) -> np.ndarray:
        z = np.outer(v, np.arange(1, 8)) % 5.0
        return (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)

    def image_probs(self, faces):
        self.face_batches.append(len(faces))
        return self._probs(np.asarray(faces).reshape(len(faces), -1).mean(1) / 50)

    def text_probs(self, texts):
        return self._probs(np.array([len(t) for t in texts], float) / 7)

    def fuse(self, pv, pt, w=None):
        return fusion.fuse(pv, pt, 0.6 if w is None else w, rule="linear")


@pytest.fixture
def fake(monkeypatch):
    p = FakePredictor()
    monkeypatch.setattr(inference, "load_predictor", lambda run_dir: p)
    return p


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "faces"
    for k in range(5):
        (folder / ("sub" if k % 2 else "")).mkdir(parents=True, exist_ok=True)
        (folder / ("sub" if k % 2 else "") / f"f{k}.jpg").write_bytes(jpeg_bytes(face(k, k)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*.jpg")):
            z.write(p, p.relative_to(folder).as_posix())
    (tmp_path / "faces.zip").write_bytes(buf.getvalue())
    (tmp_path / "texts.txt").write_text("so happy\nthis is awful\nwow!\nI am scared\nmeh\n")
    pd.DataFrame({"id": list("abcde"), "text": ["so happy", "this is awful", "wow!", "I am scared", "meh"]}) \
        .to_csv(tmp_path / "texts.tsv", sep="\t", index=False)
    return tmp_path


def test_row_aligned_pairs_from_folder_and_zip_agree(fake, inputs):
    r1 = batch.predict_batch("R", images=inputs / "faces", texts=inputs / "texts.txt", out=inputs / "a.csv",
                             workers=2, batch_size=2, progress=False)
    r2 = batch.predict_batch("R", images=inputs / "faces.zip", texts=inputs / "texts.tsv", out=inputs / "b.csv",
                             workers=0, progress=False)
    a, b = pd.read_csv(inputs / "a.csv"), pd.read_csv(inputs / "b.csv")
    assert r1["rows"] == r2["rows"] == 5 and r1["mode"] == "pairs (row-aligned)"
    assert fake.face_batches[:3] == [2, 2, 1]                     # the DataLoader's batches
    assert a.image.tolist() == ["f0.jpg", "f2.jpg", "f4.jpg", "sub/f1.jpg", "sub/f3.jpg"]   # path order
    assert a.text.tolist() == [1, 2, 3, 4, 5] and b.text.tolist() == list("abcde")      # line number / id
    cols = [f"fusion_{c}" for c in CLASSES]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), atol=1e-6)
    pv = a[[f"visual_{c}" for c in CLASSES]].to_numpy()
    pt = a[[f"text_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(a[cols].to_numpy(), 0.6 * pv + 0.4 * pt, atol=2e-6)
    assert (a.fusion_label == [CLASSES[k] for k in a[cols].to_numpy().argmax(1)]).all()


def test_one_branch_alone(fake, inputs):
    r = batch.predict_batch("R", images=inputs / "faces.zip", out=inputs / "i.csv", progress=False)
    assert r["mode"] == "images" and not any(c.startswith(("text", "fusion")) for c in pd.read_csv(inputs / "i.csv"))
    r = batch.predict_batch("R", texts=inputs / "texts.tsv", out=inputs / "t.csv", progress=False)
    df = pd.read_csv(inputs / "t.csv")
    assert r["rows"] == 5 and list(df.columns[:2]) == ["text", "text_label"] and "image" not in df


def test_pairs_file_and_bad_rows(fake, inputs, capsys):
    (inputs / "faces" / "broken.jpg").write_bytes(b"not an image")
    (inputs / "texts.txt").write_text("so happy\n   \nwow!\n")
    pd.DataFrame({"image": ["f0.jpg", "sub/f3.jpg", "broken.jpg", "f2.jpg"], "text": ["1", "3", "1", "2"]}) \
        .to_csv(inputs / "pairs.csv", index=False)
    kw = dict(images=inputs / "faces", texts=inputs / "texts.txt", pairs=inputs / "pairs.csv", progress=False)
    # the texts are read before any face is scored (and before the models load), so their error comes first
    with pytest.raises(InputError, match=r"texts\.txt line 2: the text is empty.*--skip-bad"):
        batch.predict_batch("R", out=inputs / "p.csv", **kw)
    pd.DataFrame({"image": ["f0.jpg", "broken.jpg"], "text": ["a", "b"]}).to_csv(inputs / "ab.csv", index=False)
    with pytest.raises(InputError, match=r"broken\.jpg: cannot decode image.*--skip-bad"):
        batch.predict_batch("R", out=inputs / "p.csv",
                            **{**kw, "texts": inputs / "texts.tsv", "pairs": inputs / "ab.csv"})
    assert not (inputs / "p.csv").exists()
    r = batch.predict_batch("R", out=inputs / "p.csv", skip_bad=True, **kw)
    df = pd.read_csv(inputs / "p.csv")
    assert list(zip(df.image, df.text)) == [("f0.jpg", 1), ("sub/f3.jpg", 3)]
    assert len(r["skipped"]) == 4       # the face, the blank line, and the two pairs naming them
    err = capsys.readouterr().err
    assert "texts.txt line 2: the text is empty" in err and "pairs.csv line 4: image 'broken.jpg'" in err
    assert "pairs.csv line 5: text '2'" in err


def test_input_errors(fake, inputs):
    (inputs / "short.txt").write_text("one\ntwo\n")
    with pytest.raises(InputError, match="5 faces .* but 2 texts .*--pairs"):
        batch.predict_batch("R", images=inputs / "faces", texts=inputs / "short.txt", out=inputs / "x.csv")
    (inputs / "t.csv").write_text("id,body\n1,hi\n")
    with pytest.raises(InputError, match="no `text` column"):
        batch.predict_batch("R", texts=inputs / "t.csv", out=inputs / "x.csv")
    with pytest.raises(InputError, match="neither a folder nor a zip"):
        batch.predict_batch("R", images=inputs / "texts.txt", out=inputs / "x.csv")
    with pytest.raises(InputError, match="--pairs needs both"):
        batch.predict_batch("R", images=inputs / "faces", pairs=inputs / "p.csv", out=inputs / "x.csv")
    assert cli.main(["predict", "--run-dir", "R", "--images", str(inputs / "faces"), "--text", "hi",
                     "--out", str(inputs / "x.csv")]) == 2
    assert cli.main(["predict", "--run-dir", "R", "--image", str(inputs / "faces" / "f0.jpg")]) == 2


@pytest.mark.data
@pytest.mark.slow
def test_batch_rows_equal_single_predictions(tmp_path_factory, fer_path, go_path, inputs, capsys):
    run = pipeline.run(Config.from_profile("smoke", progress=False), fer2013=fer_path, goemotions=go_path,
                       out=tmp_path_factory.mktemp("smoke") / "run")
    out = inputs / "pred.csv"
    assert cli.main(["predict", "--run-dir", str(run.dir), "--images", str(inputs / "faces.zip"), "--texts",
                     str(inputs / "texts.txt"), "--out", str(out), "--weight", "0.3", "--json"]) == 0
    df = pd.read_csv(out)
    for k in (0, 4):
        face_file = inputs / "faces" / df.image[k]
        text = (inputs / "texts.txt").read_text().splitlines()[k]
        one = inference.predict(run.dir, image=face_file, text=text, weight=0.3)
        for name in ("visual", "text", "fusion"):
            np.testing.assert_allclose(df.loc[k, [f"{name}_{c}" for c in CLASSES]].to_numpy(float),
                                       list(one[name]["probs"].values()), atol=2e-5)
            assert df.loc[k, f"{name}_label"] == one[name]["label"]


# ---------------------------------------------------------------- hostile inputs (issue 24)
@pytest.fixture
def no_model(monkeypatch):
    """load_predictor must not be reached: the inputs are refused first."""
    monkeypatch.setattr(inference, "load_predictor", lambda run_dir: pytest.fail("a model was loaded"))


def test_out_may_not_be_an_input_or_inside_the_run_dir(no_model, inputs, run_dir):
    texts = inputs / "texts.txt"
    before = texts.read_bytes()
    with pytest.raises(InputError, match=r"--out .*texts\.txt is the input --texts"):
        batch.predict_batch(run_dir, texts=texts, out=texts)
    with pytest.raises(InputError, match=r"lies inside the input --images"):
        batch.predict_batch(run_dir, images=inputs / "faces", out=inputs / "faces" / "p.csv")
    with pytest.raises(InputError, match=r"lies inside the input --run-dir"):
        batch.predict_batch(run_dir, texts=texts, out=run_dir / "outputs" / "preds.csv")
    assert texts.read_bytes() == before and not (run_dir / "outputs" / "preds.csv").exists()
    assert cli.main(["predict", "--run-dir", str(run_dir), "--texts", str(texts), "--out", str(texts)]) == 2
    assert texts.read_bytes() == before


def test_full_disk_leaves_no_partial_csv_and_names_the_file(fake, inputs, monkeypatch, capsys):
    import errno

    def full(self, f, **kw):
        f.write("image,visual_label\nf0.jpg,hap")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = inputs / "p.csv"
    assert cli.main(["predict", "--run-dir", "R", "--images", str(inputs / "faces"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {out}: No space left on device; check the folder")
    assert not out.exists() and not list(inputs.glob(".p.csv*"))


def test_only_write_errors_mention_disk_space_and_half_written_files(fake, inputs, monkeypatch, capsys):
    import errno

    def unreadable(*a, **k):
        raise OSError(errno.EIO, "Input/output error", str(inputs / "faces" / "f0.jpg"))
    monkeypatch.setattr(batch, "predict_batch", unreadable)
    assert cli.main(["predict", "--run-dir", "R", "--images", str(inputs / "faces"), "--out", str(inputs / "o.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {inputs / 'faces' / 'f0.jpg'}: Input/output error; check the path and its permissions"


def test_row_aligned_pairs_keep_their_positions_when_rows_are_skipped(fake, inputs):
    (inputs / "faces" / "f2.jpg").write_bytes(b"not an image")    # the 2nd face in path order
    (inputs / "texts.txt").write_text("so happy\nthis is awful\nwow!\n\nmeh\n")   # the 4th text is empty
    r = batch.predict_batch("R", images=inputs / "faces", texts=inputs / "texts.txt", out=inputs / "a.csv",
                            skip_bad=True, workers=0, progress=False)
    df = pd.read_csv(inputs / "a.csv")
    # faces in path order: f0, f2 (bad), f4, sub/f1, sub/f3; texts 1..5: the 4th blank
    assert list(zip(df.image, df.text)) == [("f0.jpg", 1), ("f4.jpg", 3), ("sub/f3.jpg", 5)]
    assert sum("row-aligned pair" in m for m in r["skipped"]) == 2


def test_txt_lines_split_only_at_newlines(fake, inputs):
    (inputs / "u.txt").write_text("one\u2028still one\ntwo\x0cstill two\nthree\x85\r\nfour\n", encoding="utf-8")
    batch.predict_batch("R", texts=inputs / "u.txt", out=inputs / "u.csv", progress=False)
    assert pd.read_csv(inputs / "u.csv").text.tolist() == [1, 2, 3, 4]


def test_quotes_in_tsv_are_text_and_broken_csv_quoting_is_reported(fake, inputs):
    (inputs / "q.tsv").write_text('id\ttext\na\t"Really?" she said\nb\tfine\nc\t"oh\nd\tok\n')
    batch.predict_batch("R", texts=inputs / "q.tsv", out=inputs / "q.csv", progress=False)
    assert pd.read_csv(inputs / "q.csv").text.tolist() == list("abcd")
    (inputs / "q.csv").write_text('id,text\na,"unclosed start\nb,fine\nc,closed"\nd,ok\n')
    with pytest.raises(InputError, match=r"q\.csv lines 2-4: a field spans several lines \(an unclosed"):
        batch.predict_batch("R", texts=inputs / "q.csv", out=inputs / "o.csv", progress=False)
    (inputs / "q.csv").write_text('id,text\na,"unclosed to the end\nb,fine\n')
    with pytest.raises(InputError, match=r"q\.csv lines 2-3: malformed CSV \(unexpected end of data\)"):
        batch.predict_batch("R", texts=inputs / "q.csv", out=inputs / "o.csv", progress=False)


def test_duplicate_ids_are_refused(no_model, inputs):
    (inputs / "d.csv").write_text("id,text\na,hi\nb,yo\na,again\n")
    with pytest.raises(InputError, match=r"id 'a' on line 2 and line 4; ids must be unique"):
        batch.predict_batch("R", texts=inputs / "d.csv", out=inputs / "o.csv")
    with zipfile.ZipFile(inputs / "dup.zip", "w") as z:
        z.writestr("same.jpg", jpeg_bytes(face(0, 0)))
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr("same.jpg", jpeg_bytes(face(1, 1)))
    with pytest.raises(InputError, match=r"dup\.zip holds the member same\.jpg more than once"):
        batch.predict_batch("R", images=inputs / "dup.zip", out=inputs / "o.csv")


def _encrypt_flag(raw: bytes) -> bytes:
    """The zip with its members flagged as encrypted (zipfile cannot write encrypted archives)."""
    b = bytearray(raw)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = b.find(sig)
        while i >= 0:
            b[i + off] |= 1
            i = b.find(sig, i + 1)
    return bytes(b)


def test_encrypted_members_are_bad_rows_and_malformed_pairs_one_line(fake, inputs, capsys):
    (inputs / "enc.zip").write_bytes(_encrypt_flag((inputs / "faces.zip").read_bytes()))
    with pytest.raises(InputError, match=r"enc\.zip/f0\.jpg: the member is encrypted; give an unencrypted"):
        batch.predict_batch("R", images=inputs / "enc.zip", out=inputs / "o.csv", workers=2, progress=False)
    with pytest.raises(InputError, match=r"every face in .*enc\.zip was bad"):
        batch.predict_batch("R", images=inputs / "enc.zip", out=inputs / "o.csv", skip_bad=True, progress=False)
    (inputs / "p.csv").write_text('image,text\n"f0.jpg,1\n')
    kw = dict(images=inputs / "faces", texts=inputs / "texts.txt", out=inputs / "o.csv")
    with pytest.raises(InputError, match=r"--pairs .*p\.csv line 2: malformed CSV"):
        batch.predict_batch("R", pairs=inputs / "p.csv", **kw)
    (inputs / "p16.csv").write_bytes("image,text\nf0.jpg,1\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"--pairs .*p16\.csv is not UTF-8 text .*save it as UTF-8"):
        batch.predict_batch("R", pairs=inputs / "p16.csv", **kw)


def test_oversized_members_and_special_files_are_bad_rows(fake, inputs):
    import os

    from emotion_fusion.data.files import MAX_IMAGE_BYTES
    with zipfile.ZipFile(inputs / "big.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", b"\0" * (MAX_IMAGE_BYTES + 1))
    with pytest.raises(InputError, match=r"big\.zip/big\.png: the member is 20\.0 MiB; images over 20 MiB are refused"):
        batch.predict_batch("R", images=inputs / "big.zip", out=inputs / "o.csv", workers=0, progress=False)
    os.mkfifo(inputs / "faces" / "fifo.png")
    with pytest.raises(InputError, match=r"faces/fifo\.png: the file is not a regular file"):
        batch.predict_batch("R", images=inputs / "faces", out=inputs / "o.csv", workers=0, progress=False)


def test_an_empty_texts_file_is_refused(no_model, inputs):
    (inputs / "e.txt").write_text("")
    with pytest.raises(InputError, match=r"e\.txt holds no texts"):
        batch.predict_batch("R", texts=inputs / "e.txt", out=inputs / "o.csv")


def test_ids_a_spreadsheet_would_run_are_quoted(fake, inputs):
    (inputs / "f.csv").write_text('id,text\n=HYPERLINK("x"),hi\n+1,yo\n@SUM(A1),hey\nplain,ok\n')
    batch.predict_batch("R", texts=inputs / "f.csv", out=inputs / "o.csv", progress=False)
    assert pd.read_csv(inputs / "o.csv", dtype=str).text.tolist() == ["'=HYPERLINK(\"x\")", "'+1", "'@SUM(A1)",
                                                                       "plain"]


def test_pairs_naming_unknown_ids_stop_before_any_model(no_model, inputs):
    pd.DataFrame({"image": ["f0.jpg", "nope.jpg"], "text": ["1", "2"]}).to_csv(inputs / "pairs.csv", index=False)
    with pytest.raises(InputError, match=r"pairs\.csv line 3: image 'nope\.jpg' is not among the readable inputs"):
        batch.predict_batch("R", images=inputs / "faces", texts=inputs / "texts.txt", pairs=inputs / "pairs.csv",
                            out=inputs / "o.csv")


def test_pairs_that_are_all_bad_stop_with_no_empty_csv(no_model, inputs):
    """--skip-bad used to write a header-only CSV and exit 0 once every --pairs row was dropped."""
    pd.DataFrame({"image": ["nope.jpg", "f0.jpg"], "text": ["1", "99"]}).to_csv(inputs / "pairs.csv", index=False)
    kw = dict(images=inputs / "faces", texts=inputs / "texts.txt", pairs=inputs / "pairs.csv", out=inputs / "o.csv")
    with pytest.raises(InputError, match=r"^no pair is left to score: every row of .*pairs\.csv was bad"):
        batch.predict_batch("R", skip_bad=True, **kw)                  # before any model (no_model)
    assert not (inputs / "o.csv").exists()


def test_pairs_left_empty_by_undecodable_faces_stop_after_scoring(fake, inputs, capsys):
    (inputs / "faces" / "f0.jpg").write_bytes(b"not an image")      # found only when decoded
    pd.DataFrame({"image": ["f0.jpg"], "text": ["1"]}).to_csv(inputs / "pairs.csv", index=False)
    with pytest.raises(InputError, match=r"^no pair is left to score: every row of .*pairs\.csv was bad"):
        batch.predict_batch("R", images=inputs / "faces", texts=inputs / "texts.txt", pairs=inputs / "pairs.csv",
                            out=inputs / "o.csv", skip_bad=True, workers=0, progress=False)
    assert not (inputs / "o.csv").exists() and "f0.jpg" in capsys.readouterr().err
    (inputs / "texts.txt").write_text("\n\n\n\n\n")                     # row-aligned: every text blank
    with pytest.raises(InputError, match=r"every text in .*texts\.txt was bad"):
        batch.predict_batch("R", images=inputs / "faces", texts=inputs / "texts.txt", out=inputs / "o.csv",
                            skip_bad=True, workers=0, progress=False)


def test_faces_bad_without_decoding_are_found_before_the_model_loads(no_model, inputs):
    import os

    from emotion_fusion.data.files import MAX_IMAGE_BYTES
    (inputs / "enc.zip").write_bytes(_encrypt_flag((inputs / "faces.zip").read_bytes()))
    with pytest.raises(InputError, match=r"enc\.zip/f0\.jpg: the member is encrypted;.*or pass --skip-bad"):
        batch.predict_batch("R", images=inputs / "enc.zip", out=inputs / "o.csv", progress=False)
    with pytest.raises(InputError, match=r"every face in .*enc\.zip was bad"):
        batch.predict_batch("R", images=inputs / "enc.zip", out=inputs / "o.csv", skip_bad=True, progress=False)
    with zipfile.ZipFile(inputs / "big.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", b"\0" * (MAX_IMAGE_BYTES + 1))
    with pytest.raises(InputError, match=r"big\.zip/big\.png: the member is 20\.0 MiB"):
        batch.predict_batch("R", images=inputs / "big.zip", out=inputs / "o.csv", progress=False)
    with open(inputs / "faces" / "big.png", "wb") as f:             # sparse: no 20 MiB written
        f.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(InputError, match=r"faces/big\.png: the file is 20\.0 MiB"):
        batch.predict_batch("R", images=inputs / "faces", out=inputs / "o.csv", progress=False)
    (inputs / "faces" / "big.png").unlink()
    os.mkfifo(inputs / "faces" / "fifo.png")
    with pytest.raises(InputError, match=r"faces/fifo\.png: the file is not a regular file"):
        batch.predict_batch("R", images=inputs / "faces", out=inputs / "o.csv", progress=False)


def test_prechecked_bad_faces_are_skipped_once_and_drop_their_pairs(fake, inputs):
    import os
    os.mkfifo(inputs / "faces" / "f2.jpg.png")
    (inputs / "faces" / "f2.jpg").unlink()
    os.rename(inputs / "faces" / "f2.jpg.png", inputs / "faces" / "f2.jpg")   # a FIFO where the 2nd face was
    r = batch.predict_batch("R", images=inputs / "faces", texts=inputs / "texts.txt", out=inputs / "a.csv",
                            skip_bad=True, workers=0, progress=False)
    df = pd.read_csv(inputs / "a.csv")
    assert df.image.tolist() == ["f0.jpg", "f4.jpg", "sub/f1.jpg", "sub/f3.jpg"] and df.text.tolist() == [1, 3, 4, 5]
    assert sum("f2.jpg: the file is not a regular file" in m for m in r["skipped"]) == 1


def test_input_messages_fit_their_input(no_model, inputs):
    """Review of issue 24: each message names what this input is and what fits it."""
    import os
    kw = dict(images=inputs / "faces", texts=inputs / "texts.txt", out=inputs / "o.csv")
    (inputs / "p.csv").write_text('image,text\n"f0.jpg,1\n')
    with pytest.raises(InputError, match=r"--pairs .*p\.csv line 2: malformed CSV") as e:
        batch.predict_batch("R", pairs=inputs / "p.csv", **kw)
    assert ".tsv" not in str(e.value)                                   # --pairs takes CSV only
    (inputs / "t.txt").write_text("fine\n   \n")
    with pytest.raises(InputError, match=r"t\.txt line 2: the text is empty; write a sentence;") as e:
        batch.predict_batch("R", texts=inputs / "t.txt", out=inputs / "o.csv")
    assert "--text " not in str(e.value)                                # no advice about another flag
    os.mkfifo(inputs / "fifo.txt")
    with pytest.raises(InputError, match=r"--texts .*fifo\.txt is not a regular file \(a pipe"):
        batch.predict_batch("R", texts=inputs / "fifo.txt", out=inputs / "o.csv")
    with pytest.raises(InputError, match=r"--pairs .*faces is a folder; give a CSV"):
        batch.predict_batch("R", pairs=inputs / "faces", **kw)
    (inputs / "twice.csv").write_text("text,id,text\nfirst,a,second\n")
    with pytest.raises(InputError, match=r"twice\.csv names the column `text` twice \(columns: text, id, text\)"):
        batch.predict_batch("R", texts=inputs / "twice.csv", out=inputs / "o.csv")
