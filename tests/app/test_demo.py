"""The demo page, three ways: the handler functions, gradio_client against the launched app, and
Debian's headless chromium driving the page through Selenium.

Fast tests use a small stand-in for the model adapter (the handlers' logic does not depend on which
network produced the probabilities); the `slow`/`data` tests use a real smoke run made once per module.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion_fusion.app import demo as demo_mod
from emotion_fusion.app import faces, notes
from emotion_fusion.app.demo import MAX_TEXT_CHARS, Demo, check_text
from emotion_fusion.config import Config
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.scoring.fusion import fuse

REPO = Path(__file__).resolve().parents[2]
BAD_TEXTS = ["", "   \n\t ", None, "x" * 10_000]


# --- helpers -------------------------------------------------------------------------------------------
class FakeModels:
    """Stands in for demo._Models: fixed probability vectors, counts model calls."""

    def __init__(self, p_visual, p_text, title="offline profile", rule="linear", weight=0.6):
        self.cfg = Config.from_profile("offline", fusion_rule=rule, fusion_weight=weight)
        self.p_visual, self.p_text, self.title = np.asarray(p_visual), np.asarray(p_text), title
        self.random_init = demo_mod.RANDOM_INIT in title
        self.calls = 0

    def face_probs(self, pixels):
        assert pixels.shape == (48, 48) and pixels.dtype == np.uint8
        self.calls += 1
        return self.p_visual

    def text_probs(self, text):
        self.calls += 1
        return self.p_text


def one_hot_ish(label: str, peak: float = 0.7) -> np.ndarray:
    p = np.full(len(CLASSES), (1 - peak) / (len(CLASSES) - 1))
    p[CLASSES.index(label)] = peak
    return p


def fer_faces(fer: Path, label: str = "happy", n: int = 60) -> list[Image.Image]:
    """The first `n` FER2013 test faces of `label` (sorted by name), from the zip or the folder."""
    if fer.is_dir():
        return [Image.open(p).convert("L") for p in sorted((fer / "test" / label).glob("*.jpg"))[:n]]
    with zipfile.ZipFile(fer) as z:
        names = sorted(m for m in z.namelist() if m.startswith(f"test/{label}/"))[:n]
        return [Image.open(io.BytesIO(z.read(m))).convert("L") for m in names]


def on_canvas(face: Image.Image, path: Path) -> Path:
    """A FER face enlarged and pasted into a larger colour photo, so the detector has to find it."""
    canvas = Image.new("RGB", (400, 300), (120, 140, 160))
    canvas.paste(face.resize((144, 144), Image.Resampling.BILINEAR), (120, 60))
    canvas.save(path)
    return path


@pytest.fixture(scope="module")
def face_photo(fer_path, tmp_path_factory) -> Path:
    """The first FER2013 test face (sorted, 'happy') that the cascade finds on a canvas."""
    out = tmp_path_factory.mktemp("face") / "photo.png"
    for face in fer_faces(fer_path):
        on_canvas(face, out)
        if faces.detect_faces(faces.open_image(out)):
            return out
    pytest.fail("the Haar cascade found none of 60 FER2013 test faces pasted on a canvas")


@pytest.fixture
def blank(tmp_path) -> Path:
    p = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (90, 90, 90)).save(p)
    return p


# --- fast: text, notes, faces, handlers with a stand-in adapter --------------------------------------------
@pytest.mark.parametrize("text", BAD_TEXTS)
def test_bad_texts_are_one_line_errors(text):
    with pytest.raises(InputError) as e:
        check_text(text)
    assert "\n" not in str(e.value) and "text" in str(e.value)


def test_good_text_is_kept_as_typed():
    assert check_text("  I feel fine  ") == "  I feel fine  "
    assert check_text("a" * MAX_TEXT_CHARS) == "a" * MAX_TEXT_CHARS


def test_every_emotion_and_pair_has_a_note():
    assert set(notes.EMOTION_NOTES) == set(CLASSES)
    pairs = {(a, b) for i, a in enumerate(CLASSES) for b in CLASSES[i + 1:]}
    assert set(notes.PAIR_NOTES) == pairs
    assert notes.pair_note("sad", "happy") == notes.pair_note("happy", "sad") == notes.PAIR_NOTES[("happy", "sad")]
    assert "not a diagnostic tool" in notes.DISCLAIMER


def test_cascade_ships_in_the_wheel_and_loads_offline():
    import cv2
    assert (Path(cv2.data.haarcascades) / faces.CASCADE).is_file()
    assert not faces._cascade().empty()


def test_square_box_adds_margin_and_stays_inside():
    assert faces._square_box((100, 100, 50, 50), 400, 300, 0.1) == (95, 95, 60, 60)
    # too big for the image: as large as it fits, centred on the face where possible, shifted inside
    assert faces._square_box((0, 0, 100, 80), 120, 90, 0.5) == (5, 0, 90, 90)
    assert faces._square_box((300, 200, 100, 100), 400, 300, 0.1) == (280, 180, 120, 120)


def test_crop_is_decoded_like_training(tmp_path):
    from emotion_fusion.data import decode_face as _decode
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.png")
    pixels = faces.to_training_pixels(faces.open_image(tmp_path / "p.png"))
    assert pixels.shape == (48, 48) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, _decode((tmp_path / "p.png").read_bytes()))


def test_no_face_is_an_error_unless_whole_image_is_ticked(blank):
    with pytest.raises(InputError, match="no face found in blank.png"):
        faces.extract_face(blank)
    face = faces.extract_face(blank, whole_image_if_none=True)
    assert face.box is None and face.pixels.shape == (48, 48)


@pytest.mark.parametrize("content,msg", [(b"hello, not a picture", "is not an image"),
                                         (b"\x89PNG\r\n\x1a\nbroken", "upload a JPEG or PNG")])
def test_non_image_upload_is_named(tmp_path, content, msg):
    bad = tmp_path / "upload.png"
    bad.write_bytes(content)
    d = Demo(tmp_path, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    status, *rest, state = d.analyze(str(bad), "I am fine", 0.5)
    assert "upload.png" in status and msg in status and state is None and rest[0] is None


def test_uploads_in_gradio_cache_are_deleted_after_scoring(tmp_path, blank, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    upload = tmp_path / "cache" / "abc123" / "me.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(blank.read_bytes())
    d = Demo(tmp_path, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    assert "whole image" in d.analyze(str(upload), "fine", 0.5, True)[0]
    assert not upload.exists()                        # scored, then deleted
    upload.write_bytes(b"not an image")
    assert d.analyze(str(upload), "fine", 0.5, True)[0].startswith("⚠️") and not upload.exists()
    d.analyze(str(blank), "fine", 0.5, True)
    assert blank.exists()                             # a file outside gradio's cache is never deleted


def test_the_same_upload_submitted_twice_is_scored_twice(tmp_path, blank, monkeypatch):
    """The page keeps sending the upload's path after its file is deleted: the session's copy scores it."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    upload = tmp_path / "cache" / "abc123" / "f.png"
    upload.parent.mkdir(parents=True)
    shutil.copy(blank, upload)
    d = Demo(tmp_path, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    no_face = d.submit(str(upload), "fine", 0.5, False, None)        # the page's advice: tick 'whole image'
    assert "tick 'use the whole image'" in no_face[0] and not upload.exists()
    kept = no_face[8]
    first = d.submit(str(upload), "fine", 0.5, True, kept)
    second = d.submit(str(upload), "fine", 0.6, True, first[8])
    assert "whole image" in first[0] and "whole image" in second[0], (first[0], second[0])
    # without the session's copy the message names only the file and says what to do
    gone = d.submit(str(upload), "fine", 0.5, True, None)[0]
    assert gone == "⚠️ image f.png is no longer on the server; upload it again"


def test_an_old_upload_kept_on_arrival_is_scored_after_the_cache_deleted_it(tmp_path, blank, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    upload = tmp_path / "cache" / "abc123" / "me.png"
    upload.parent.mkdir(parents=True)
    shutil.copy(blank, upload)
    kept, status = demo_mod._keep_on_page(str(upload), None)          # image.change, when it arrives
    assert kept["path"] == str(upload) and kept["bytes"] == blank.read_bytes() and status == ""
    upload.unlink()                                                   # gradio's cache: older than CACHE_AGE
    d = Demo(tmp_path, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    assert "whole image" in d.analyze(str(upload), "fine", 0.5, True, kept)[0]
    assert demo_mod._keep_on_page(None, kept) == (None, "")           # cleared: the bytes go too
    demo_mod._forget_kept(kept)                                       # session end: nothing left to delete


def test_gradio_client_submits_the_same_upload_twice(tmp_path, blank, monkeypatch):
    """A launched page (stand-in models): two Submits of one upload's path, as the browser sends them,
    and one whose file the cache deleted after it arrived; the file is gone after the first."""
    from gradio.utils import get_upload_folder
    from gradio_client import Client
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    app = demo_mod.create_app(tmp_path, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    app.launch(server_name="127.0.0.1", share=False, prevent_thread_lock=True, quiet=True, inline=False)
    try:
        c = Client(app.local_url, verbose=False)
        for k, age in enumerate(("fresh", "old")):
            upload = Path(get_upload_folder()) / f"up{k}" / "photo.png"
            upload.parent.mkdir(parents=True)
            shutil.copy(blank, upload)
            sent = {"path": str(upload), "orig_name": "photo.png"}      # already uploaded: no re-upload
            c.predict(sent, api_name="/keep_upload")                    # image.change, as the page does
            if age == "old":
                upload.unlink()
            outs = [c.predict(sent, "fine", 0.6, True, api_name="/analyze")[0] for _ in range(2)]
            assert all("whole image" in s for s in outs), (age, outs)
            assert not upload.exists()
    finally:
        app.close()


@pytest.mark.data
def test_a_fer2013_face_crop_is_scored_without_ticking_whole_image(fer_path, tmp_path):
    d = Demo(tmp_path, FakeModels(one_hot_ish("happy"), one_hot_ish("happy")))
    statuses = []
    for k, face in enumerate(fer_faces(fer_path, n=8)):
        face.save(tmp_path / f"fer{k}.png")              # 48x48, as in the dataset
        statuses.append(d.analyze(str(tmp_path / f"fer{k}.png"), "so happy", 0.6, False)[0])
    assert not [s for s in statuses if s.startswith("⚠️")], statuses
    assert any("scored whole, as a face crop" in s for s in statuses)


def test_sigterm_stops_the_server_like_ctrl_c():
    import signal
    import time
    previous = demo_mod._stop_on_sigterm()
    try:
        with pytest.raises(KeyboardInterrupt):      # what app.block_thread() stops on
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_one_text_limit_for_the_cli_and_the_demo():
    from emotion_fusion.app import inference, inputs
    assert MAX_TEXT_CHARS == inputs.MAX_TEXT_CHARS == inference.MAX_TEXT_CHARS
    with pytest.raises(InputError, match=f"keep it under {MAX_TEXT_CHARS:,}"):
        inference.check_text("x" * (MAX_TEXT_CHARS + 1))


def test_an_unassignable_host_is_one_line_before_anything_loads(tmp_path):
    r = subprocess.run([sys.executable, "-m", "emotion_fusion", "demo", "--run-dir", str(tmp_path / "nope"),
                        "--host", "192.0.2.1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: --host 192.0.2.1 is not an address of this machine") and "127.0.0.1" in r.stderr


def test_whole_image_analyze_then_refuse_calls_no_model(blank):
    m = FakeModels(one_hot_ish("sad"), one_hot_ish("happy"))
    d = Demo(blank.parent, m)
    status, crop, vis, txt, fused, summary, note, state = d.analyze(str(blank), "What a day!", 0.6, True)
    assert "whole image" in status and crop.shape == (48, 48)
    assert max(vis, key=vis.get) == "sad" and max(txt, key=txt.get) == "happy"
    expected = fuse(m.p_visual[None], m.p_text[None], 0.6)[0]
    assert fused == pytest.approx(dict(zip(CLASSES, expected)))
    assert "Fused: sad" in summary and "disagree" in summary
    assert notes.pair_note("sad", "happy") in note and "not a diagnostic tool" in note
    calls = m.calls
    for w, label in ((0.0, "happy"), (1.0, "sad"), (0.3, "happy")):
        kept, fused, summary, note = d.refuse(w, state)
        assert kept == status
        assert max(fused, key=fused.get) == label and f"Fused: {label}" in summary and f"w = {w:.2f}" in summary
        assert notes.emotion_note(label) in note
    assert m.calls == calls        # the slider never calls a model


def test_agreeing_branches_say_so_and_loglinear_rule_is_used(blank):
    m = FakeModels(one_hot_ish("fear", 0.5), one_hot_ish("fear", 0.9), rule="loglinear")
    d = Demo(blank.parent, m)
    *_, fused, summary, note, state = d.analyze(str(blank), "I am scared", 0.6, True)
    assert "agree" in summary and "disagree" not in summary and "loglinear" in summary
    assert fused == pytest.approx(dict(zip(CLASSES, fuse(m.p_visual[None], m.p_text[None], 0.6, "loglinear")[0])))
    assert "and fear." not in note        # no pair note when they agree


@pytest.mark.parametrize("image,text", [(None, "fine"), ("BLANK", ""), ("BLANK", "  "), ("BLANK", "x" * 10_000),
                                        ("BLANK", None)])
def test_bad_input_clears_outputs_with_a_message(blank, image, text):
    d = Demo(blank.parent, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    out = d.analyze(str(blank) if image == "BLANK" else image, text, 0.5, True)
    assert out[0].startswith("⚠️") and "\n" not in out[0]
    assert out[1:5] == (None, None, None, None) and out[-1] is None


def test_slider_outside_0_1_is_a_message(blank):
    d = Demo(blank.parent, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    state = d.analyze(str(blank), "hello", 0.5, True)[-1]
    status, fused, summary, _ = d.refuse(1.5, state)
    assert "outside [0, 1]" in status and fused is None and summary == ""


def test_slider_before_submit_asks_for_input(blank):
    d = Demo(blank.parent, FakeModels(one_hot_ish("sad"), one_hot_ish("happy")))
    status, fused, summary, _ = d.refuse(0.4, None)
    assert "Submit a face and a text first" in status and fused is None and summary == ""


def test_unexpected_error_is_a_message_not_a_traceback(blank):
    class Broken(FakeModels):
        def text_probs(self, text):
            raise RuntimeError("boom")
    d = Demo(blank.parent, Broken(one_hot_ish("sad"), one_hot_ish("happy")))
    status = d.analyze(str(blank), "hello", 0.5, True)[0]
    assert "RuntimeError: boom" in status and "still running" in status and "Traceback" not in status


def test_random_init_warning_follows_the_title(blank):
    plain = Demo(blank.parent, FakeModels(one_hot_ish("sad"), one_hot_ish("happy"), title="offline profile"))
    rand = Demo(blank.parent, FakeModels(one_hot_ish("sad"), one_hot_ish("happy"),
                                         title="smoke profile — RANDOM-INIT WEIGHTS: ResNet-50"))
    assert plain.warning() == "" and "Random-init weights" in rand.warning()
    assert "profile:** `offline`" in plain.header()


@pytest.mark.parametrize("case", ["absent", "no manifest", "edited"])
def test_unfinished_run_dir_is_a_page_message(tmp_path, blank, case):
    from emotion_fusion import runs
    run = tmp_path / "run"
    if case != "absent":   # every file of a run dir, but no (valid) manifest
        for f in ("config.json", "run_info.json", "models/image.pth", "models/text_head.npz"):
            (run / f).parent.mkdir(parents=True, exist_ok=True)
            (run / f).write_text("{}")
        if case == "edited":   # complete once, then a model file replaced: the manifest no longer matches
            runs.write_manifest(run, "k")
            (run / "models/image.pth").write_text("another run's model")
    d = Demo(run)
    want = {"absent": "does not exist", "no manifest": "is incomplete", "edited": "changed after the run"}[case]
    assert d.models is None and want in d.error and "python -m emotion_fusion run" in d.error
    assert "This run cannot be used" in d.warning() and want in d.warning()
    status = d.analyze(str(blank), "I am fine", 0.5, True)[0]
    assert want in status


def test_cli_demo_on_unfinished_run_dir_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "emotion_fusion", "demo", "--run-dir", str(tmp_path / "nope")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: run directory") and "does not exist" in r.stderr


def test_ef_demo_is_callable_before_and_after_the_module_import():
    code = ("import emotion_fusion as ef; f = ef.demo; import emotion_fusion.app.demo; "
            "assert callable(f) and callable(ef.demo) and f.__name__ == 'demo'; "
            "import inspect; assert list(inspect.signature(f).parameters)[:3] == ['run_dir', 'host', 'port']")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_ef_demo_launches_without_blocking_and_says_why_the_run_is_unusable(tmp_path):
    import urllib.request

    import emotion_fusion as ef
    app = ef.demo(tmp_path / "missing", block=False)
    try:
        assert app.local_url.startswith("http://127.0.0.1:") and not app.share
        page = urllib.request.urlopen(app.local_url, timeout=30).read().decode()
        assert "<html" in page.lower()
        config = urllib.request.urlopen(app.local_url + "config", timeout=30).read().decode()
        assert "This run cannot be used" in config and "does not exist" in config
    finally:
        app.close()


def test_page_builds_for_an_unfinished_run(tmp_path):
    app = demo_mod.create_app(tmp_path / "missing")
    cfg = app.get_config_file()
    texts = [str(c.get("props", {}).get("value", "")) for c in cfg["components"]]
    assert any("This run cannot be used" in t for t in texts)
    assert any("not a diagnostic tool" in t for t in texts)
    assert not app.analytics_enabled
    assert not list((REPO / "emotion_fusion").glob("*.pyi"))   # gradio writes stubs for Component subclasses


# --- slow: a real smoke run, the launched app, a real browser -------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(data_root, tmp_path_factory) -> Path:
    """A finished smoke run (random-init ResNet-50 + CLIP, ~1-2 min on CPU), made once per module."""
    out = tmp_path_factory.mktemp("demo_run") / "smoke"
    env = {**os.environ, "EMOTION_FUSION_DATA": str(data_root)}
    r = subprocess.run([sys.executable, "-m", "emotion_fusion", "run", "--profile", "smoke", "--out", str(out),
                        "--set", "progress=false"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def smoke_models(smoke_run):
    """The smoke run's trained branches, loaded once for the module."""
    return demo_mod._Models.load(smoke_run)


@pytest.fixture(scope="module")
def served(smoke_run, smoke_models):
    """The page for the smoke run, launched on 127.0.0.1 (a free port) in this process."""
    app = demo_mod.create_app(smoke_run, smoke_models)
    app.launch(server_name="127.0.0.1", server_port=None, share=False, prevent_thread_lock=True, quiet=True,
               inline=False)
    yield app
    app.close()


@pytest.mark.slow
@pytest.mark.data
def test_real_run_matches_predict_and_re_fuses(smoke_run, smoke_models, face_photo, tmp_path):
    from emotion_fusion.app.inference import predict
    d = Demo(smoke_run, smoke_models)
    assert d.error is None and "Random-init weights" in d.warning() and "`smoke`" in d.header()
    status, crop, vis, txt, fused, summary, note, state = d.analyze(str(face_photo), "I am so happy today", 0.6)
    assert status == "Face found and scored." and crop.shape == (48, 48)
    for probs in (vis, txt, fused):
        assert sum(probs.values()) == pytest.approx(1.0)
    # the crop, scored by the CLI's `predict`, gives the same per-branch probabilities
    Image.fromarray(crop).save(tmp_path / "crop.png")
    ref = predict(smoke_run, image=tmp_path / "crop.png", text="I am so happy today", weight=0.6)
    assert vis == pytest.approx(ref["visual"]["probs"], abs=1e-5)
    assert txt == pytest.approx(ref["text"]["probs"], abs=1e-5)
    assert fused == pytest.approx(ref["fusion"]["probs"], abs=1e-5)
    _, f0, s0, _ = d.refuse(0.0, state)
    assert f0 == pytest.approx(txt) and f"Fused: {max(txt, key=txt.get)}" in s0


@pytest.mark.slow
@pytest.mark.data
def test_gradio_client_against_the_launched_app(served, face_photo, tmp_path):
    from gradio_client import Client, handle_file
    assert served.local_url.startswith("http://127.0.0.1:")
    c = Client(served.local_url, verbose=False)
    status, crop, vis, txt, fused, summary, note = c.predict(handle_file(str(face_photo)), "What a lovely surprise",
                                                              0.6, False, api_name="/analyze")
    assert status == "Face found and scored." and Path(crop).is_file()
    assert Image.open(crop).size == (48, 48)
    assert {x["label"] for x in fused["confidences"]} == set(CLASSES)
    assert f"Fused: {fused['label']}" in summary and "not a diagnostic tool" in note
    # the slider re-fuses this session's cached probabilities: w = 0 is the text branch, w = 1 the face
    _, f0, s0, _ = c.predict(0.0, api_name="/refuse")
    _, f1, s1, _ = c.predict(1.0, api_name="/refuse")
    assert f0["label"] == txt["label"] and "w = 0.00" in s0
    assert f1["label"] == vis["label"] and "w = 1.00" in s1
    # bad inputs: a message each, and the server keeps serving
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (90, 90, 90)).save(blank)
    cases = [(handle_file(str(bad)), "hi", "notes.txt is not an image"),
             (handle_file(str(blank)), "hi", "no face found"),
             (None, "hi", "no image"),
             (handle_file(str(face_photo)), "   ", "the text is empty"),
             (handle_file(str(face_photo)), "x" * 10_000, "10,000 characters")]
    for image, text, msg in cases:
        out = c.predict(image, text, 0.6, False, api_name="/analyze")
        assert msg in out[0] and out[0].startswith("⚠️"), out[0]
    again = c.predict(handle_file(str(face_photo)), "What a lovely surprise", 0.6, False, api_name="/analyze")
    assert again[4]["label"] == fused["label"]


@pytest.fixture
def browser(chromium_paths):
    chromium, driver = chromium_paths
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,1300"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.data
def test_real_browser_upload_submit_and_slider(served, smoke_run, smoke_models, browser, face_photo, tmp_path):
    import re

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def summary() -> str:
        return browser.find_element(By.ID, "fused-summary").text

    def parsed(text: str) -> tuple[str, str, str, str]:
        m = re.search(r"Fused: (\w+) \(\d+%\) at w = ([\d.]+).*Face: (\w+) · words: (\w+)", text, re.S)
        assert m, text
        return m.groups()

    wait = WebDriverWait(browser, 90)
    browser.get(served.local_url)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#face-input input[type=file]"))
    assert "Random-init weights" in browser.find_element(By.ID, "run-warning").text
    browser.find_element(By.CSS_SELECTOR, "#face-input input[type=file]").send_keys(str(face_photo))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#face-input img"))
    browser.find_element(By.CSS_SELECTOR, "#text-input textarea").send_keys("I can't believe how happy I am")
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda b: "Fused:" in summary())
    label, w, face_label, text_label = parsed(summary())
    # the page shows what the handler computes for the same inputs
    ref = Demo(smoke_run, smoke_models).analyze(str(face_photo), "I can't believe how happy I am", 0.6)
    assert w == "0.60" and f"Fused: {label}" in ref[5] and max(ref[4], key=ref[4].get) == label
    assert "not a diagnostic tool" in browser.find_element(By.ID, "note").text
    assert browser.find_elements(By.CSS_SELECTOR, "#crop img")
    slider = browser.find_element(By.CSS_SELECTOR, "#weight input[type=range]")
    slider.send_keys(Keys.HOME)            # w = 0: words only
    wait.until(lambda b: "w = 0.00" in summary())
    assert parsed(summary())[0] == text_label
    slider.send_keys(Keys.END)             # w = 1: face only
    wait.until(lambda b: "w = 1.00" in summary())
    assert parsed(summary())[0] == face_label
    shot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(shot)) and Image.open(shot).size[0] >= 1000



@pytest.mark.slow
@pytest.mark.data
def test_cli_demo_serves_deletes_uploads_and_stops_on_sigterm(smoke_run, face_photo, tmp_path):
    """The real command: gradio picks the port itself (no bind-then-release here), SIGTERM stops the server
    and leaves no file in the upload cache (the scored file's own deletion is tested on the handler); the
    server dies with the test."""
    import queue
    import signal
    import threading

    from gradio_client import Client, handle_file
    cache = tmp_path / "gradio"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "emotion_fusion", "demo", "--run-dir", str(smoke_run)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
        line = lines.get(timeout=240)          # "serving on http://127.0.0.1:PORT/ ..." (queue.Empty: no start)
        assert line.startswith("serving on http://127.0.0.1:") and "share=True" not in line, line
        url = line.split()[2]
        c = Client(url, verbose=False)
        status = c.predict(handle_file(str(face_photo)), "What a lovely surprise", 0.6, False, api_name="/analyze")[0]
        assert status == "Face found and scored."
        assert [p for p in cache.rglob("*") if p.is_file()]           # the upload's original, the crop shown
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        assert not [p for p in cache.rglob("*") if p.is_file()]      # every cached file deleted on exit
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
