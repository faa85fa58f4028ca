"""data/files.py and the decoder's bounds (issue 24): atomic writes that never follow a symlink, image
reads bounded in bytes and pixels, only regular files read, 16-bit PNGs and EXIF rotation decoded right."""
from __future__ import annotations

import errno
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion_fusion.data import files
from emotion_fusion.data.fer2013 import decode_face
from emotion_fusion.errors import InputError, WriteError


def test_atomic_write_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out.json").symlink_to(victim)
    files.write_bytes(tmp_path / "out.json", b"{}\n")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "out.json").is_symlink() and (tmp_path / "out.json").read_bytes() == b"{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.txt"]   # no temp file left


def test_a_failed_write_leaves_the_old_file_and_names_the_target(tmp_path):
    target = tmp_path / "preds.csv"
    target.write_text("old,complete\n")
    with pytest.raises(OSError) as e:
        with files.atomic_write(target, "w") as f:
            f.write("half,a,ro")
            raise OSError(errno.ENOSPC, "No space left on device")     # what a full disk raises, unnamed
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    assert target.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["preds.csv"]


def test_an_unwritable_folder_is_reported_under_the_target_not_a_temp_name(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"

    def denied(prefix, suffix, dir):   # what mkstemp raises in a folder we may not write (we run as root here)
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}vw65bjr2{suffix}"))
    monkeypatch.setattr(files.tempfile, "mkstemp", denied)
    with pytest.raises(WriteError) as e:
        with files.atomic_write(target, "w") as f:
            f.write("x")
    assert e.value.filename == str(target) and e.value.errno == errno.EACCES
    monkeypatch.setattr(Path, "mkdir", lambda *a, **k: denied(".out.csv.", "", str(tmp_path)))
    with pytest.raises(WriteError) as e:
        files.write_bytes(tmp_path / "sub" / "out.csv", b"x")
    assert e.value.filename == str(tmp_path / "sub" / "out.csv")


def test_an_error_about_another_file_inside_the_block_is_not_a_write_error(tmp_path):
    with pytest.raises(OSError) as e:
        with files.atomic_write(tmp_path / "copy.bin") as f:
            f.write((tmp_path / "missing.bin").read_bytes())
    assert not isinstance(e.value, WriteError) and e.value.filename == str(tmp_path / "missing.bin")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_usual_permissions(tmp_path):
    files.write_bytes(tmp_path / "a", b"x")
    with open(tmp_path / "b", "wb") as f:
        f.write(b"x")
    assert (tmp_path / "a").stat().st_mode == (tmp_path / "b").stat().st_mode


def test_image_reads_are_bounded_and_regular_files_only(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(files.MAX_IMAGE_BYTES + 1)       # sparse: no disk used
    with pytest.raises(InputError, match=r"big\.jpg is 20\.0 MiB; images over 20 MiB are refused"):
        files.read_image_file(big)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)                                  # nobody writes: a plain read would block forever
    with pytest.raises(InputError, match=r"pipe\.png is not a regular file"):
        files.read_image_file(fifo)
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(InputError, match=r"zero\.png is not a regular file"):
        files.read_image_file(tmp_path / "zero.png")
    with pytest.raises(InputError, match=r"is a folder"):
        files.read_image_file(tmp_path)
    with pytest.raises(InputError, match=r"nope\.png not found"):
        files.read_image_file(tmp_path / "nope.png")


def test_zip_members_are_bounded_by_their_declared_size(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.png", b"\0" * (files.MAX_IMAGE_BYTES + 1))   # ~20 KB compressed
        z.writestr("ok.png", b"fine")
    with zipfile.ZipFile(tmp_path / "z.zip") as z:
        with pytest.raises(InputError, match=r"z\.zip:bomb\.png is 20\.0 MiB; images over 20 MiB"):
            files.read_zip_member(z, "bomb.png", f"{tmp_path / 'z.zip'}:bomb.png")
        with pytest.raises(InputError, match=r"^the member is 20\.0 MiB"):
            files.read_zip_member(z, "bomb.png")
        assert files.read_zip_member(z, "ok.png", "ok") == b"fine"


def test_out_file_may_not_be_an_input_or_inside_one(tmp_path):
    texts, run = tmp_path / "texts.txt", tmp_path / "run"
    texts.write_text("hi\n")
    (run / "outputs").mkdir(parents=True)
    (tmp_path / "link.csv").symlink_to(texts)
    inputs = {"--texts": texts, "--run-dir": run, "--pairs": None}
    with pytest.raises(InputError, match=r"--out .*texts\.txt is the input --texts"):
        files.check_out_file(texts, inputs)
    with pytest.raises(InputError, match=r"--out .*link\.csv is the input --texts"):     # resolves to it
        files.check_out_file(tmp_path / "link.csv", inputs)
    with pytest.raises(InputError, match=r"lies inside the input --run-dir"):
        files.check_out_file(run / "outputs" / "preds.csv", inputs)
    assert files.check_out_file(tmp_path / "preds.csv", inputs) == tmp_path / "preds.csv"


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_16_bit_png_keeps_its_grey_levels():
    ramp = (np.arange(48 * 48).reshape(48, 48) * 28).astype(np.uint16)     # 0 .. 64,484
    got = decode_face(_png(Image.fromarray(ramp)))
    np.testing.assert_array_equal(got, np.rint(ramp / 257).astype(np.uint8))
    assert len(np.unique(got)) > 200          # PIL's convert("L") alone gives 2 levels: 0 and 255


def test_exif_orientation_is_applied_as_the_demo_does():
    img = np.zeros((48, 48), np.uint8)
    img[:, :8] = 255                           # a bright left edge
    exif = Image.Exif()
    exif[0x0112] = 6                           # "rotate 90 CW to display"
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=100, exif=exif.tobytes())
    got = decode_face(buf.getvalue())
    assert got[:8].mean() > 200 and got[:, :8].mean() < 140    # the edge is now on top


def test_pixel_count_is_checked_before_decoding():
    head = _png(Image.new("L", (8000, 5001)))
    with pytest.raises(InputError, match=r"8000x5001 pixels, over the limit of 40 megapixels"):
        decode_face(head)


def test_out_file_may_not_be_a_hard_link_to_an_input(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("hi\n")
    os.link(texts, tmp_path / "out.csv")
    with pytest.raises(InputError, match=r"--out .*out\.csv is the input --texts"):
        files.check_out_file(tmp_path / "out.csv", {"--texts": texts})


def test_the_umask_is_read_without_setting_it(tmp_path):
    """os.umask(0) at import left the process (every thread) a moment of umask 0; /proc says it."""
    import subprocess
    import sys
    code = ("import os\n"
            "def boom(mask): raise AssertionError('os.umask called')\n"
            "os.umask(0o027); os.umask = boom\n"
            "from emotion_fusion.data import files\n"
            "print(oct(files._UMASK))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0 and r.stdout.strip() == "0o27", r.stderr[-800:]
