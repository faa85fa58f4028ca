"""The CLI contract (DESIGN.md section 6): JSON output, exit status and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from conftest import REPO
from emotion_fusion import runs
from emotion_fusion.config import Config


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "emotion_fusion", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def _probs(rng, y, strength):
    logits = rng.normal(size=(len(y), 7))
    logits[np.arange(len(y)), y] += strength
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


@pytest.fixture
def run_dir(tmp_path):
    """A synthetic run directory with the contract's files (no model involved)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "run"
    for split, n in (("val", 300), ("test", 400)):
        y = rng.integers(0, 7, n)
        runs.write_outputs(d, split, _probs(rng, y, 1.5), _probs(rng, y, 2.0), y, key="k")
    runs.write_json(d / "config.json", Config.from_profile("smoke").to_dict())
    return d


def test_fuse_json_equals_independent_recomputation(run_dir):
    out = json.loads(cli("fuse", "--run-dir", str(run_dir), "--weight", "0.3", "--json").stdout)
    with np.load(run_dir / "outputs" / "test.npz") as z:
        fused = 0.3 * z["p_visual"] + 0.7 * z["p_text"]
        y = z["y"]
    row = [r for r in out["rows"] if r["model"] == "fusion" and r["split"] == "test"][0]
    assert row["weight"] == 0.3 and row["n"] == 400
    assert row["accuracy"] == pytest.approx(accuracy_score(y, fused.argmax(1)))
    assert row["macro_f1"] == pytest.approx(f1_score(y, fused.argmax(1), average="macro"))


@pytest.mark.parametrize("args", [["fuse", "--weight", "0.5"], ["sweep"]])
def test_fuse_and_sweep_import_no_torch(run_dir, args):
    argv = [args[0], "--run-dir", str(run_dir), *args[1:], "--json"]
    # fuse must start fast: no torch, and none of the heavy scientific stacks either
    heavy = ["torch"] + (["sklearn", "scipy", "statsmodels", "pandas"] if args[0] == "fuse" else [])
    code = (f"import sys; from emotion_fusion.cli import main; rc = main({argv!r}); "
            f"bad = [m for m in {heavy!r} if m in sys.modules]; "
            "assert not bad, f'imported {bad}'; sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args, message", [
    (["--weight", "1.5"], r"fusion weight 1.5 is outside \[0, 1\]"),
    (["--weight", "abc"], "fusion weight 'abc' is not a number"),
])
def test_fuse_bad_weight_is_one_line(run_dir, args, message):
    p = cli("fuse", "--run-dir", str(run_dir), *args, check=False)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    import re
    assert re.search(message, lines[0])


def test_fuse_missing_run_dir_and_edited_npz(run_dir, tmp_path):
    p = cli("fuse", "--run-dir", str(tmp_path / "nowhere"), "--weight", "0.5", check=False)
    assert p.returncode == 2 and "nowhere" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    f = run_dir / "outputs" / "test.npz"
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["y"] = arrays["y"][::-1].copy()
    np.savez(f, **arrays)
    p = cli("fuse", "--run-dir", str(run_dir), "--weight", "0.5", check=False)
    assert p.returncode == 2 and "test.npz" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_sweep_writes_plot_and_best_weight(run_dir):
    out = json.loads(cli("sweep", "--run-dir", str(run_dir), "--json").stdout)
    assert 0.0 <= out["best_weight"] <= 1.0 and (run_dir / "sweep.png").is_file()
    assert len(out["sweep"]["weights"]) == 101
    assert out["rows"][0]["model"] == "fusion_best_val" and out["rows"][0]["weight"] == out["best_weight"]


def test_missing_dataset_path_is_one_line(tmp_path):
    p = cli("data", "--fer2013", str(tmp_path / "nope.zip"), "--goemotions", str(tmp_path), check=False)
    assert p.returncode == 2 and "nope.zip" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_run_rejects_bad_weight_before_any_work(tmp_path):
    p = cli("run", "--profile", "smoke", "--out", str(tmp_path / "r"), "--fusion-weight", "2", check=False)
    assert p.returncode == 2 and "fusion weight 2.0 is outside [0, 1]" in p.stderr


@pytest.mark.data
@pytest.mark.slow
def test_data_json_counts_on_real_data(fer_path, go_path):
    out = json.loads(cli("data", "--fer2013", str(fer_path), "--goemotions", str(go_path), "--json").stdout)
    assert out["fer2013"]["rows"] == {"train": 28709, "test": 3589}
    assert out["fer2013"]["classes"]["test"] == {"angry": 467, "disgust": 56, "fear": 496, "happy": 895,
                                                 "neutral": 607, "sad": 653, "surprise": 415}
    assert out["goemotions"]["rows"] == {"train": 43410, "dev": 5426}
    assert out["fer2013"]["duplicates"]["within"]["train"] > 0


@pytest.mark.parametrize("args", [["fuse", "--weight", "0.3"], ["run", "--profile", "bogus", "--out", "x"],
                                  ["sweep"], ["nonsense"]])
def test_usage_errors_are_one_line(args):
    p = cli(*args, check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr


def test_run_json_stdout_is_one_object(tmp_path, monkeypatch, capsys):
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
