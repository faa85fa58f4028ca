"""Issue 12: a run directory that cannot lie, one writer at a time, no traceback for a mixed-up dir.

Each test starts from a private copy of a finished smoke run on small synthetic datasets (random-init
ResNet-50 + the conftest toy text encoder), and each would fail on the code before the whole-run manifest
and the writer lock (27c14af): the old manifest hashed only the npz files, only checked that models/*
existed, and there was no lock.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal

import numpy as np
import pytest

from emotion_fusion import pipeline, runs
from emotion_fusion.app import inference
from emotion_fusion.cli import main
from emotion_fusion.config import Config
from emotion_fusion.errors import InputError

pytestmark = pytest.mark.slow      # every test here trains (or loads) a ResNet-50


def _cfg(**kw) -> Config:
    # weights declared random: the toy encoder is not random and the ResNet-50 trains, so without the
    # declaration no branch would be RANDOM-INIT, and the tests below check that flag survives
    return Config.from_profile("smoke", text_model="toy", text_weights=None, progress=False, n_boot=50,
                               weights_declared_random=True, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory, fer_zip, goemotions_dir):
    """Tiny FER2013 zip (10 faces per class and split) and GoEmotions folder (train + dev)."""
    root = tmp_path_factory.mktemp("data")
    return (fer_zip(root / "fer2013.zip", per_class=10),
            goemotions_dir(root / "goemotions", per_class=10, splits=("train", "dev")))


@pytest.fixture(scope="module")
def base(toy_encoder_module, data, tmp_path_factory):
    """Two finished runs that differ only in their seed: {0: RunResult, 1: RunResult}."""
    fer, go = data
    return {seed: pipeline.run(_cfg(seed=seed), fer2013=fer, goemotions=go,
                               out=tmp_path_factory.mktemp(f"seed{seed}") / "run") for seed in (0, 1)}


@pytest.fixture
def run_copy(base, tmp_path):
    """A private copy of the seed-0 run."""
    return shutil.copytree(base[0].dir, tmp_path / "run")


@pytest.fixture
def cli(capsys):
    """`cli(*args)` -> (exit status, stdout, stderr) of emotion_fusion.cli.main in this process."""
    def call(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        cap = capsys.readouterr()
        return rc, cap.out, cap.err
    return call


def _error(result, pattern: str) -> str:
    rc, out, err = result
    lines = err.strip().splitlines()
    assert rc == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: "), result
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def face(tmp_path, make_face, make_jpeg):
    f = tmp_path / "face.jpg"
    f.write_bytes(make_jpeg(make_face(3, 3)))
    return f


def _same_outputs(a, b) -> None:
    for split in ("val", "test"):
        x, y = runs.load_outputs(a, split), runs.load_outputs(b, split)
        for k in (*runs.ITEM_ARRAYS, *runs.PAIR_ARRAYS):
            np.testing.assert_array_equal(x[k], y[k])


def test_the_two_base_runs_differ(base):
    """The seed matters (else the swaps below would prove nothing)."""
    a, b = (runs.sha256(base[s].dir / "models" / "image.pth") for s in (0, 1))
    assert a != b
    assert not np.array_equal(runs.load_outputs(base[0].dir, "test")["p_image"],
                              runs.load_outputs(base[1].dir, "test")["p_image"])


def _another_runs_image_model(d, base):
    shutil.copy2(base[1].dir / "models" / "image.pth", d / "models" / "image.pth")


def _random_bytes_text_head(d, base):
    (d / "models" / "text_head.npz").write_bytes(np.random.default_rng(0).bytes(4096))


def _another_runs_outputs(d, base):
    shutil.rmtree(d / "outputs")
    shutil.copytree(base[1].dir / "outputs", d / "outputs")


@pytest.mark.parametrize("corrupt, culprit", [
    (_another_runs_image_model, r"models/image\.pth changed after the run"),
    (_random_bytes_text_head, r"models/text_head\.npz changed after the run"),
    (_another_runs_outputs, r"outputs/\w+\.npz changed after the run"),
])
def test_a_dir_mixing_two_runs_is_incomplete_everywhere_and_run_recomputes(
        base, run_copy, data, cli, face, corrupt, culprit):
    """Issue 12 cases 1 and 4: a model file or the outputs from elsewhere are caught by the manifest."""
    corrupt(run_copy, base)
    incomplete = rf"run directory .*run is incomplete: .*{culprit} .*; re-run `python -m emotion_fusion run"
    _error(cli("fuse", "--run-dir", run_copy, "--weight", "0.5"), incomplete)
    _error(cli("sweep", "--run-dir", run_copy), incomplete)
    _error(cli("predict", "--run-dir", run_copy, "--image", face, "--text", "so happy"), incomplete)
    with pytest.raises(InputError, match=incomplete):
        inference.load_predictor(run_copy)
    with pytest.raises(InputError, match=incomplete):
        inference.evaluate_run(run_copy, fer2013=data[0], goemotions=data[1], out=run_copy.parent / "eval")
    assert not (run_copy.parent / "eval").exists()
    fer, go = data
    again = pipeline.run(_cfg(seed=0), fer2013=fer, goemotions=go, out=run_copy)
    assert again.reused is False and again.results["reused_cached_outputs"] is False
    runs.verify(run_copy)
    _same_outputs(run_copy, base[0].dir)          # rebuilt: the seed-0 run again, nothing of seed 1 left
    assert runs.sha256(run_copy / "models" / "image.pth") == runs.sha256(base[0].dir / "models" / "image.pth")
    rc, out, _ = cli("predict", "--run-dir", run_copy, "--image", face, "--text", "so happy", "--json")
    assert rc == 0 and set(json.loads(out)) >= {"visual", "text", "fusion"}


def test_a_complete_copy_is_reused(base, run_copy, data):
    """The control for the test above: an untouched copy is a cache hit (so "recomputes" means something)."""
    again = pipeline.run(_cfg(seed=0), fer2013=data[0], goemotions=data[1], out=run_copy)
    assert again.reused is True
    _same_outputs(run_copy, base[0].dir)


def test_a_second_writer_fails_at_once_naming_the_pid(run_copy, data, lock_holder, cli, monkeypatch):
    """Issue 12 case 2: while one writer holds RUN_DIR, `run` (and `evaluate --out`) fail at once."""
    before = {p: runs.sha256(p) for p in run_copy.rglob("*") if p.is_file() and p.name != ".lock"}
    holder = lock_holder(run_copy)
    busy = rf"run directory .*run is being written by another process \(pid {holder.pid}\)"
    with monkeypatch.context() as m:                     # refused before any data is read
        for reader in ("load_fer2013", "load_goemotions"):
            m.setattr(f"emotion_fusion.data.{reader}", lambda *a, **k: pytest.fail("data was read"))
        _error(cli("run", "--profile", "smoke", "--fer2013", data[0], "--goemotions", data[1], "--out", run_copy,
                   "--set", "text_model=toy", "text_weights=none", "seed=1"), busy)
    assert holder.poll() is None                         # refused while the holder still runs: it did not wait
    with pytest.raises(InputError, match=busy):
        pipeline.run(_cfg(seed=0), fer2013=data[0], goemotions=data[1], out=run_copy)
    holder.kill()
    holder.wait()
    after = {p: runs.sha256(p) for p in run_copy.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before                             # the refused writer changed nothing
    runs.verify(run_copy)


def test_the_evaluate_verb_reports_skipped_items_and_refuses_bad_input_before_loading(run_copy, data, cli,
                                                                                      tmp_path, monkeypatch):
    """The `evaluate` CLI verb end to end: --skip-bad lists what it skipped (stderr and JSON), without it a
    bad face is one line before any model loads and no folder is left; --out inside the run dir is refused."""
    import zipfile
    fer, go = data
    bad_fer = tmp_path / "fer_bad.zip"
    with zipfile.ZipFile(fer) as src, zipfile.ZipFile(bad_fer, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("test/happy/broken.jpg", b"not an image")
    rc, out, err = cli("evaluate", "--run-dir", run_copy, "--fer2013", bad_fer, "--goemotions", go,
                       "--out", tmp_path / "eval", "--skip-bad", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert len(res["skipped"]) == 1 and "broken.jpg: cannot decode image" in res["skipped"][0]
    assert f"skipped: {res['skipped'][0]}" in err.splitlines()
    assert {r["model"] for r in res["rows"]} >= {"visual", "text", "fusion", "fusion_best_val"}
    runs.verify(tmp_path / "eval")
    with monkeypatch.context() as m:
        m.setattr(inference, "load_predictor", lambda *a, **k: pytest.fail("a model was loaded"))
        _error(cli("evaluate", "--run-dir", run_copy, "--fer2013", bad_fer, "--goemotions", go,
                   "--out", tmp_path / "eval2"),
               r"fer_bad\.zip:test/happy/broken\.jpg: cannot decode image.*--skip-bad")
    assert not (tmp_path / "eval2").exists()
    _error(cli("evaluate", "--run-dir", run_copy, "--fer2013", fer, "--goemotions", go, "--out", run_copy / "eval"),
           r"would write into the input .*run")


def test_evaluate_out_is_locked_too(base, run_copy, data, lock_holder):
    holder = lock_holder(run_copy.parent / "eval")
    with pytest.raises(InputError, match=rf"being written by another process \(pid {holder.pid}\)"):
        inference.evaluate_run(run_copy, fer2013=data[0], goemotions=data[1], out=run_copy.parent / "eval")
    assert sorted(p.name for p in (run_copy.parent / "eval").iterdir()) == [".lock"]


def test_a_lock_left_by_a_killed_writer_is_taken_over(run_copy, data, lock_holder):
    holder = lock_holder(run_copy)
    os.kill(holder.pid, signal.SIGKILL)                # killed mid-run: no cleanup, the lock file stays
    holder.wait()
    assert (run_copy / ".lock").read_text() == str(holder.pid)
    again = pipeline.run(_cfg(seed=0), fer2013=data[0], goemotions=data[1], out=run_copy)
    assert again.reused is True


def test_a_truncated_results_json_is_rewritten_by_run(base, run_copy, data, cli):
    """Issue 12 case 3: results.json is derived, never trusted; the cache-hit path rewrites it."""
    (run_copy / "results.json").write_text('{"title": "smoke profile', encoding="utf-8")
    rc, _, err = cli("fuse", "--run-dir", run_copy, "--weight", "0.5")
    assert rc == 0, err
    rc, _, err = cli("sweep", "--run-dir", run_copy)
    assert rc == 0, err
    again = pipeline.run(_cfg(seed=0), fer2013=data[0], goemotions=data[1], out=run_copy)
    assert again.reused is True
    saved = json.loads((run_copy / "results.json").read_text())
    assert saved["title"] == base[0].title and "RANDOM-INIT" in saved["title"]
    assert saved["rows"] == base[0].results["rows"]


def test_fuse_without_results_json_keeps_the_random_init_title(base, run_copy, cli):
    """Issue 12 case 4: the title comes from run_info.json, so the RANDOM-INIT warning survives."""
    (run_copy / "results.json").unlink()
    rc, out, err = cli("fuse", "--run-dir", run_copy, "--weight", "0.3", "--json")
    assert rc == 0, err
    title = json.loads(out)["title"]
    assert title == base[0].title and "RANDOM-INIT WEIGHTS" in title and not title.startswith("results_missing")


def test_a_failed_run_leaves_no_folder_behind(data, tmp_path, monkeypatch, toy_encoder_module):
    """Issue 12 case 10: a run that fails after creating its output folder removes it again."""
    from emotion_fusion.branches import image

    def boom(self, train, val):
        raise InputError("training failed on purpose")
    monkeypatch.setattr(image.ImageBranch, "fit", boom)
    out = tmp_path / "fresh" / "run"
    with pytest.raises(InputError, match="on purpose"):
        pipeline.run(_cfg(seed=0), fer2013=data[0], goemotions=data[1], out=out)
    assert not out.exists()
    assert not (tmp_path / "fresh").exists()
