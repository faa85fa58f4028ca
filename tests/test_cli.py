"""The CLI contract (DESIGN.md section 6): JSON output, exit status and one-line errors (issue 12 case 5)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from emotion_fusion import runs
from emotion_fusion.scoring.fusion import fuse


class Finished:
    """What a CLI call left: exit status, stdout, stderr (the fields of subprocess.CompletedProcess)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli(*args, check=True, env=None)` runs `emotion_fusion.cli.main` in this process (fast; an uncaught
    exception fails the test, so "no traceback" is checked too); `cli_process` runs the real command."""
    from emotion_fusion.cli import main

    def call(*args, check: bool = True, env: dict | None = None) -> Finished:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:          # argparse usage errors exit from inside main
            rc = e.code
        cap = capsys.readouterr()
        p = Finished(rc, cap.out, cap.err)
        if check:
            assert p.returncode == 0, p.stderr
        return p
    return call


@pytest.fixture
def cli_process(repo):
    """`cli_process(*args, check=True, env=None)` -> the finished `python -m emotion_fusion ...` process."""
    def call(*args, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "emotion_fusion", *map(str, args)], cwd=repo, capture_output=True,
                           text=True, timeout=600, env={**os.environ, **(env or {})})
        if check:
            assert p.returncode == 0, p.stderr
        return p
    return call


def one_line_error(p: subprocess.CompletedProcess, pattern: str) -> str:
    """Assert the contract for bad input: exit 2, nothing on stdout, one `error:` line (no traceback)."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def _f1(y, pred):
    return f1_score(y, pred, labels=list(range(7)), average="macro", zero_division=0)


def _edit(run_dir, name: str, content: str) -> None:
    """Replace a file of a run dir and re-seal the manifest: a consistent dir holding a bad value."""
    (run_dir / name).write_text(content)
    runs.write_manifest(run_dir, runs.read_json(run_dir / "run_info.json")["key"])


def test_fuse_json_equals_independent_recomputation(cli, run_dir):
    out = json.loads(cli("fuse", "--run-dir", run_dir, "--weight", "0.3", "--json").stdout)
    with np.load(run_dir / "outputs" / "test.npz") as z:
        fused = 0.3 * z["p_image"] + 0.7 * z["p_text_items"][z["pairs"]]
        y = z["y_image"]
    row = [r for r in out["rows"] if r["model"] == "fusion" and r["split"] == "test"][0]
    assert row["weight"] == 0.3 and row["n"] == 400
    assert row["accuracy"] == pytest.approx(accuracy_score(y, fused.argmax(1)))
    assert row["macro_f1"] == pytest.approx(_f1(y, fused.argmax(1)))
    assert out["title"] == "synthetic run — test = made-up pairs"     # from run_info.json


@pytest.mark.parametrize("args", [["fuse", "--weight", "0.5"], ["sweep"]])
def test_fuse_and_sweep_import_no_torch(run_dir, args, repo):
    argv = [args[0], "--run-dir", str(run_dir), *args[1:], "--json"]
    # fuse must start fast: no torch, and none of the heavy scientific stacks either
    heavy = ["torch"] + (["sklearn", "scipy", "statsmodels", "pandas"] if args[0] == "fuse" else [])
    code = (f"import sys; from emotion_fusion.cli import main; rc = main({argv!r}); "
            f"bad = [m for m in {heavy!r} if m in sys.modules]; "
            "assert not bad, f'imported {bad}'; sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args, message", [
    (["--weight", "1.5"], r"fusion weight 1.5 is outside \[0, 1\]"),
    (["--weight", "abc"], "fusion weight 'abc' is not a number"),
    (["--weight", "nan"], "fusion weight nan is not a number"),
])
def test_fuse_bad_weight_is_one_line(cli, run_dir, args, message):
    one_line_error(cli("fuse", "--run-dir", run_dir, *args, check=False), message)


def test_fuse_missing_run_dir_and_edited_npz(cli, run_dir, tmp_path):
    one_line_error(cli("fuse", "--run-dir", tmp_path / "nowhere", "--weight", "0.5", check=False),
                   r"run directory .*nowhere does not exist")
    f = run_dir / "outputs" / "test.npz"
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["y"] = arrays["y"][::-1].copy()
    np.savez(f, **arrays)
    one_line_error(cli("fuse", "--run-dir", run_dir, "--weight", "0.5", check=False),
                   r"incomplete: .*test\.npz changed after the run.*re-run `python -m emotion_fusion run")


def test_sweep_writes_plot_and_the_best_validation_weight(cli, run_dir):
    out = json.loads(cli("sweep", "--run-dir", run_dir, "--json").stdout)
    val, test = runs.load_outputs(run_dir, "val"), runs.load_outputs(run_dir, "test")
    weights = np.round(np.linspace(0, 1, 101), 2)
    assert out["sweep"]["weights"] == pytest.approx(list(weights))
    # independently: validation macro-F1 per weight with sklearn; the best weight must reach the maximum
    val_f1 = [_f1(val["y"], fuse(val["p_visual"], val["p_text"], w).argmax(1)) for w in weights]
    assert out["sweep"]["val_macro_f1"] == pytest.approx(val_f1, abs=1e-12)
    best = out["best_weight"]
    assert _f1(val["y"], fuse(val["p_visual"], val["p_text"], best).argmax(1)) == pytest.approx(max(val_f1))
    [row] = [r for r in out["rows"] if r["split"] == "test"]
    pred = fuse(test["p_visual"], test["p_text"], best).argmax(1)
    assert row["model"] == "fusion_best_val" and row["split"] == "test" and row["weight"] == best
    assert row["macro_f1"] == pytest.approx(_f1(test["y"], pred)) and row["n"] == 400
    with Image.open(run_dir / "sweep.png") as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 150
    assert out["plot"] == str(run_dir / "sweep.png")


def test_sweep_replaces_a_symlinked_plot_instead_of_writing_through_it(cli, run_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run_dir / "sweep.png").symlink_to(victim)
    cli("sweep", "--run-dir", run_dir)
    assert victim.read_text() == "precious" and not (run_dir / "sweep.png").is_symlink()
    with Image.open(run_dir / "sweep.png") as im:
        assert im.format == "PNG"


def test_sweep_on_a_read_only_run_dir_prints_the_scores_and_says_no_plot(cli, run_dir, read_only_writes):
    p = cli("sweep", "--run-dir", run_dir)
    assert "best validation weight:" in p.stdout and "Fusion" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == (f"plot not written: {run_dir / 'sweep.png'} (Read-only file system); "
                                                 "the scores above are complete")
    out = json.loads(cli("sweep", "--run-dir", run_dir, "--json").stdout)
    assert out["plot"] is None and "Read-only file system" in out["plot_error"] and out["rows"]
    assert not (run_dir / "sweep.png").exists()


def test_missing_dataset_path_is_one_line(cli_process, tmp_path):
    one_line_error(cli_process("data", "--fer2013", tmp_path / "nope.zip", "--goemotions", tmp_path, check=False),
                   "nope.zip")


def test_run_rejects_bad_weight_before_any_work(cli, tmp_path):
    one_line_error(cli("run", "--profile", "smoke", "--out", tmp_path / "r", "--fusion-weight", "2", check=False),
                   r"fusion weight 2.0 is outside \[0, 1\]")
    assert not (tmp_path / "r").exists()


@pytest.mark.data
@pytest.mark.slow
def test_data_json_counts_on_real_data(cli_process, fer_path, go_path):
    out = json.loads(cli_process("data", "--fer2013", fer_path, "--goemotions", go_path, "--json").stdout)
    assert out["fer2013"]["rows"] == {"train": 28709, "test": 3589}
    assert out["fer2013"]["classes"]["test"] == {"angry": 467, "disgust": 56, "fear": 496, "happy": 895,
                                                 "neutral": 607, "sad": 653, "surprise": 415}
    assert out["goemotions"]["rows"] == {"train": 43410, "dev": 5426}
    assert out["fer2013"]["duplicates"]["within"]["train"] > 0


@pytest.mark.parametrize("args", [["fuse", "--weight", "0.3"], ["run", "--profile", "bogus", "--out", "x"],
                                  ["sweep"], ["nonsense"]])
def test_usage_errors_are_one_line(cli_process, args):
    one_line_error(cli_process(*args, check=False), r"\(see `python -m emotion_fusion")


def test_run_json_stdout_is_one_object(monkeypatch, capsys):
    """Progress lines written while a command runs must not reach stdout under --json."""
    from emotion_fusion import cli as cli_module

    def noisy(a, out):
        print("epoch 1: train loss 1.0")           # what tqdm.write does by default
        cli_module._print({"ok": 1}, a.json, "ok", out)
        return 0
    monkeypatch.setattr(cli_module, "_cmd_fuse", noisy)
    assert cli_module.main(["fuse", "--run-dir", "x", "--weight", "0.5", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": 1} and "epoch 1" in captured.err


# ---------------------------------------------------------------- issue 12: one line, exit 2, for every input
@pytest.fixture
def datasets(tmp_path, fer_zip, goemotions_dir):
    """A tiny synthetic EMOTION_FUSION_DATA folder: fer2013.zip + goemotions/."""
    root = tmp_path / "data"
    root.mkdir()
    fer_zip(root / "fer2013.zip", per_class=2)
    goemotions_dir(root / "goemotions", per_class=2, splits=("train", "dev"))
    return root


@pytest.mark.parametrize("setting, message", [
    ("device=tpu", r"device 'tpu' is not one of cpu, cuda, cuda:N, mps"),
    ("lr=inf", r"lr must be a finite number, got inf"),
    ("lr=nan", r"lr must be a finite number, got nan"),
    ("epochs=two", r"--set epochs='two': expected int"),
])
def test_run_bad_set_values_are_one_line(cli, datasets, tmp_path, setting, message):
    p = cli("run", "--profile", "smoke", "--out", tmp_path / "r", "--set", setting,
            env={"EMOTION_FUSION_DATA": str(datasets)}, check=False)
    one_line_error(p, message)
    assert not (tmp_path / "r").exists()


def test_run_on_a_missing_gpu_is_one_line_and_leaves_no_folder(cli, datasets, tmp_path, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)     # as on a machine without a GPU
    p = cli("run", "--profile", "smoke", "--out", tmp_path / "new" / "r", "--set", "device=cuda",
            env={"EMOTION_FUSION_DATA": str(datasets)}, check=False)
    one_line_error(p, r"device 'cuda' is not available on this machine .*--set device=cpu")
    assert not (tmp_path / "new" / "r").exists()
    assert not (tmp_path / "new").exists()       # nor the parent this command created for it


def test_run_out_equal_to_the_data_folder_is_refused(cli, datasets, take_snapshot):
    before = take_snapshot(datasets)
    p = cli("run", "--profile", "smoke", "--out", datasets, env={"EMOTION_FUSION_DATA": str(datasets)}, check=False)
    one_line_error(p, r"output directory .*data would write into the input .* choose a folder outside the datasets")
    assert take_snapshot(datasets) == before
    assert sorted(p.name for p in datasets.iterdir()) == ["fer2013.zip", "goemotions"]   # not even a lock file


@pytest.mark.parametrize("inside", ["goemotions", "goemotions/runs", "fer2013.zip"])
def test_run_out_in_or_at_a_dataset_is_refused(cli, datasets, take_snapshot, inside):
    before = take_snapshot(datasets)
    p = cli("run", "--profile", "smoke", "--out", datasets / inside, env={"EMOTION_FUSION_DATA": str(datasets)},
            check=False)
    one_line_error(p, r"fer2013\.zip|would write into the input")
    assert take_snapshot(datasets) == before


def test_run_out_a_file_says_it_is_a_file(cli, datasets, tmp_path):
    f = tmp_path / "taken"
    f.write_text("mine")
    p = cli("run", "--profile", "smoke", "--out", f, env={"EMOTION_FUSION_DATA": str(datasets)}, check=False)
    line = one_line_error(p, r"--out .*taken is a file; give a folder for the run directory")
    assert "File exists" not in line and f.read_text() == "mine"


@pytest.mark.parametrize("command", [["fuse", "--weight", "0.5"], ["sweep"]])
def test_run_dir_that_is_a_file_says_so(cli, tmp_path, command):
    f = tmp_path / "results.json"
    f.write_text("{}")
    line = one_line_error(cli(command[0], "--run-dir", f, *command[1:], check=False),
                          r"results\.json is a file, not a run directory")
    assert "does not exist" not in line


@pytest.mark.parametrize("command", [["fuse", "--weight", "0.5"], ["sweep"]])
@pytest.mark.parametrize("content, message", [
    ('{"fusion_weight": 0.6, "fusion_rule": "linear", "seed": "x", "n_boot": 10}',
     r"config\.json: seed = 'x' is not valid"),
    ("null", r"config\.json holds a JSON null, expected an object"),
    ("[]", r"config\.json holds a JSON array, expected an object"),
    ('{"fusion_weight": 0.6, "fusion_rule": "linear", "seed": 0, "n_boot": 10', r"config\.json is not valid JSON"),
])
def test_fuse_and_sweep_with_a_bad_config_json(cli, run_dir, command, content, message):
    _edit(run_dir, "config.json", content)
    one_line_error(cli(command[0], "--run-dir", run_dir, *command[1:], check=False), message + ".*re-run")


@pytest.mark.parametrize("value", ['"200"', "2.5", "0", "true"])
def test_fuse_with_a_bad_pairing_draws_is_one_line_not_a_silent_fallback(cli, run_dir, value):
    """Review of issue 19, finding 1: a non-int pairing_draws silently dropped the headline."""
    cfg = json.dumps(runs.read_config(run_dir)).replace('"pairing_draws": 200', f'"pairing_draws": {value}')
    _edit(run_dir, "config.json", cfg)
    one_line_error(cli("fuse", "--run-dir", run_dir, "--weight", "0.5", check=False),
                   rf"config\.json: pairing_draws = {re.escape(repr(json.loads(value)))} is not valid.*re-run")


def test_fuse_scores_the_headline_with_the_runs_draws_and_n_boot(cli, run_dir):
    """Finding 1: `B=max(n_boot, 100)` overrode a small n_boot silently; n_boot = 0 would still get intervals."""
    cfg = runs.read_config(run_dir)
    _edit(run_dir, "config.json", json.dumps({**cfg, "pairing_draws": 7, "n_boot": 20}))
    out = json.loads(cli("fuse", "--run-dir", run_dir, "--weight", "0.5", "--json").stdout)
    assert out["draws"]["draws"] == 7 and out["draws"]["n_boot"] == 20 == out["n_boot"]
    _edit(run_dir, "config.json", json.dumps({**cfg, "n_boot": 0}))
    one_line_error(cli("fuse", "--run-dir", run_dir, "--weight", "0.5", check=False),
                   r"n_boot = 0 skips the intervals, but the headline over 200 pairing draws .* use n_boot >= 1")


def test_a_config_json_without_a_setting_names_no_missing_option(cli, run_dir):
    """Issue 12 case 10: the old message said "pass fusion_rule explicitly", an option the CLI lacks."""
    cfg = runs.read_config(run_dir)
    _edit(run_dir, "config.json", json.dumps({k: v for k, v in cfg.items() if k != "fusion_rule"}))
    line = one_line_error(cli("fuse", "--run-dir", run_dir, "--weight", "0.5", check=False),
                          r"config\.json has no 'fusion_rule'; re-run `python -m emotion_fusion run")
    assert "explicitly" not in line


@pytest.mark.parametrize("content", ["[1, 2]", "null", '{"format": "x"}', "{"])
def test_fuse_with_a_bad_manifest_says_incomplete(cli, run_dir, content):
    (run_dir / "manifest.json").write_text(content)
    one_line_error(cli("fuse", "--run-dir", run_dir, "--weight", "0.5", check=False),
                   r"run directory .* is incomplete \(.*manifest\.json is not a manifest written by this version\)"
                   r"; re-run")


def test_fuse_on_outputs_swapped_from_another_run_says_incomplete(cli, fake_run):
    import shutil
    a, b = fake_run("a", seed=0), fake_run("b", seed=5)
    shutil.rmtree(a / "outputs")
    shutil.copytree(b / "outputs", a / "outputs")
    one_line_error(cli("fuse", "--run-dir", a, "--weight", "0.5", check=False),
                   r"incomplete: .*outputs/.*\.npz changed after the run")


def test_fuse_without_results_json_keeps_the_random_init_title(cli, fake_run):
    title = "smoke profile — image: ResNet-50 random init — RANDOM-INIT WEIGHTS (numbers show the mechanism)"
    d = fake_run(title=title)
    assert not (d / "results.json").exists()
    out = json.loads(cli("fuse", "--run-dir", d, "--weight", "0.4", "--json").stdout)
    assert out["title"] == title
    text = cli("fuse", "--run-dir", d, "--weight", "0.4").stdout
    assert text.splitlines()[0] == title


@pytest.mark.parametrize("command", [["fuse", "--weight", "0.5"], ["sweep"]])
def test_a_truncated_results_json_does_not_matter(cli, run_dir, command):
    """results.json is derived: fuse and sweep never read it (run rewrites it: see test_rundir.py)."""
    (run_dir / "results.json").write_text('{"title": "x", "rows": [{"model": "vis')
    out = json.loads(cli(command[0], "--run-dir", run_dir, *command[1:], "--json").stdout)
    assert 0 <= out["best_weight"] <= 1
    assert cli("fuse", "--run-dir", run_dir, "--weight", "0.5").stdout.splitlines()[0] == (
        "synthetic run — test = made-up pairs")


def test_predict_with_a_config_json_list_is_one_line(cli, run_dir, tmp_path, make_face, make_jpeg):
    _edit(run_dir, "config.json", "[]")
    face = tmp_path / "face.jpg"
    face.write_bytes(make_jpeg(make_face(1, 3)))
    one_line_error(cli("predict", "--run-dir", run_dir, "--image", face, "--text", "so happy", check=False),
                   r"config\.json holds a JSON array, not an object of settings")


def test_predict_on_an_incomplete_dir_says_so(cli, run_dir, tmp_path, make_face, make_jpeg):
    (run_dir / "manifest.json").unlink()
    face = tmp_path / "face.jpg"
    face.write_bytes(make_jpeg(make_face(1, 3)))
    one_line_error(cli("predict", "--run-dir", run_dir, "--image", face, "--text", "so happy", check=False),
                   r"incomplete \(no manifest\.json: the run did not finish\); re-run")


@pytest.mark.parametrize("content", [b"this is not an image", b"", b"\x89PNG\r\n\x1a\n truncated"])
def test_predict_on_a_non_image_names_the_file(cli, run_dir, tmp_path, content):
    f = tmp_path / "notes.jpg"
    f.write_bytes(content)
    line = one_line_error(cli("predict", "--run-dir", run_dir, "--image", f, "--text", "so happy", check=False),
                          r"image .*notes\.jpg.* (cannot be decoded|cannot decode)")
    assert "BytesIO" not in line and not re.search(r"0x[0-9a-f]{6,}", line)


def test_predict_on_a_non_image_in_a_real_process(cli_process, run_dir, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("shopping list: eggs")
    line = one_line_error(cli_process("predict", "--run-dir", run_dir, "--image", f, "--text", "hi", check=False),
                          r"image .*notes\.txt")
    assert "BytesIO" not in line and not re.search(r"0x[0-9a-f]{6,}", line)


def test_predict_refuses_special_and_oversized_image_files_before_any_model(cli, run_dir, tmp_path, monkeypatch):
    """Issue 24 item 13: a symlink to /dev/zero grew without bound and a FIFO blocked forever."""
    from emotion_fusion.app import inference
    monkeypatch.setattr(inference, "load_predictor", lambda *a, **k: pytest.fail("a model was loaded"))
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.jpg")
    with open(tmp_path / "huge.jpg", "wb") as f:
        f.truncate(21 * 1024 * 1024)
    for name, message in [("zero.jpg", "is not a regular file"), ("pipe.jpg", "is not a regular file"),
                          ("huge.jpg", r"is 21\.0 MiB; images over 20 MiB are refused")]:
        one_line_error(cli("predict", "--run-dir", run_dir, "--image", tmp_path / name, "--text", "hi", check=False),
                       rf"image .*{name} {message}")


@pytest.mark.parametrize("args, message", [
    (["--set", "text_head=zeroshot", "--set", "text_head=probe"],
     r"--set text_head is given twice \('zeroshot', then 'probe'\); give each key once"),
    (["--seed", "5", "--set", "seed=3"], r"--seed and --set seed=3 both set seed; give it once"),
    (["--fusion-weight", "0.2", "--set", "fusion_weight=0.9"],
     r"--fusion-weight and --set fusion_weight=0.9 both set fusion_weight; give it once"),
])
def test_conflicting_settings_are_one_line_errors_before_any_work(cli, tmp_path, args, message):
    res = cli("run", "--profile", "smoke", "--fer2013", str(tmp_path / "nope"), "--goemotions",
              str(tmp_path / "nope2"), "--out", str(tmp_path / "out"), *args, check=False)
    assert res.returncode == 2 and re.search(message, res.stderr) and res.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_repeated_set_flags_all_apply(monkeypatch, tmp_path, cli):
    from emotion_fusion import pipeline
    seen = {}
    monkeypatch.setattr(pipeline, "run", lambda cfg, **kw: seen.setdefault("cfg", cfg) and None)
    cli("run", "--profile", "smoke", "--fer2013", "a", "--goemotions", "b", "--out", str(tmp_path / "o"),
        "--set", "text_head=zeroshot", "--set", "epochs=2", check=False)
    assert seen["cfg"].text_head == "zeroshot" and seen["cfg"].epochs == 2
