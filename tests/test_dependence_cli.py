"""ef.dependence_curve(run_dir) and the `dependence` CLI verb: from the cache, no torch, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import emotion_fusion as ef
from emotion_fusion.config import Config
from emotion_fusion.errors import InputError


def _dependence(repo, *args) -> subprocess.CompletedProcess:
    """`python -m emotion_fusion dependence ...` in a fresh interpreter that must not import torch."""
    code = (f"import sys; from emotion_fusion.cli import main; rc = main({['dependence', *map(str, args)]!r}); "
            "assert 'torch' not in sys.modules, 'imported torch'; sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=600)


def test_the_curve_of_a_run_dir_has_both_families_a_table_and_a_plot(run_dir):
    dep = ef.dependence_curve(run_dir, draws=4)
    res = dep.results
    assert [r["rho"] for r in res["rows"] if r["family"] == "copula"] == [round(-1 + 0.1 * i, 2) for i in range(21)]
    assert [r["rho"] for r in res["rows"] if r["family"] == "wrong"] == [round(0.1 * i, 2) for i in range(11)]
    assert res["weight"] == 0.6 and res["draws"] == 4 and res["branches_unchanged"]
    assert "stored_pairs" not in res                      # the holdout protocol's pairs are one random draw
    table = dep.table()
    assert "mean ± sd over 4 seeded pairing draws" in table.title and "not a sampling interval" in table.title
    assert table.df.shape[0] == 32 and "gain at best val w (points)" in table.df.columns
    # through the formatting layer: every cell a display string, rho as set, no row numbers
    assert table.df.index[0] == ("copula", "-1") and ("wrong", "0.5") in table.df.index
    assert all(isinstance(v, str) for v in table.df.to_numpy().ravel()) and table.index     # no row numbers
    brief = dep.table(rhos=(-1, 0, 1), brief=True)           # the notebook's page-wide table
    assert list(brief.df.index) == [("copula", "-1"), ("copula", "0"), ("copula", "1"), ("wrong", "0"), ("wrong", "1")]
    assert list(brief.df.columns) == ["phi within class", "same wrong guess %", "gain (points)",
                                      "gain at best val w (points)", "best val w"]
    assert brief.df.loc[("wrong", "1")].tolist() == table.df.loc[("wrong", "1"), list(brief.df.columns)].tolist()
    fig = dep.plot()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "independent (random label pairing)" in labels and len(labels) == 5
    assert "first reaches zero" in dep.text()
    assert "the headline (`fuse`, `run`) is the all-pairs value at one weight chosen on validation" in dep.text()


def test_the_seed_protocol_places_its_own_pairs_on_the_curve(fake_run):
    cfg = {**Config.from_profile("smoke").to_dict(), "protocol": "seed"}
    dep = ef.dependence_curve(fake_run(config=cfg), draws=3)
    stored = dep.results["stored_pairs"]
    assert -1 <= stored["phi"] <= 1 and set(stored["curve_at_same_phi"]) == {"copula", "wrong"}
    assert "The protocol's own (CLIP-matched) pairs: phi = " in dep.text()
    assert "the headline (`fuse`, `run`) scores the protocol's own pairs, so the two need not agree" in dep.text()
    labels = [t.get_text() for t in dep.plot().axes[0].get_legend().get_texts()]
    assert "the protocol's own pairs (CLIP matches)" in labels


def test_cli_json_is_one_object_and_writes_the_plot_without_torch(run_dir, repo):
    p = _dependence(repo, "--run-dir", run_dir, "--draws", 3, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["draws"] == 3 and len(out["rows"]) == 32 and out["plot"] == str(run_dir / "dependence.png")
    assert (run_dir / "dependence.png").stat().st_size > 0
    assert set(out["crossing"]) == {"copula", "wrong"}


@pytest.mark.parametrize("args, message", [
    (["--draws", "0"], "pairing draws R = 0"),
    (["--draws", "many"], "argument --draws: invalid int value: 'many'"),
])
def test_cli_bad_input_is_one_line(run_dir, repo, args, message):
    p = _dependence(repo, "--run-dir", run_dir, *args)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and p.stdout == "" and len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]


def test_cli_on_a_missing_run_dir_is_one_line(tmp_path, repo):
    p = _dependence(repo, "--run-dir", tmp_path / "nowhere")
    assert p.returncode == 2 and p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "nowhere") in p.stderr


def _in_process(capsys, *args) -> tuple[int, str, str]:
    """`emotion_fusion.cli.main(["dependence", ...])` in this process: (exit status, stdout, stderr)."""
    from emotion_fusion.cli import main
    capsys.readouterr()
    rc = main(["dependence", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_replaces_a_symlinked_plot_instead_of_writing_through_it(run_dir, tmp_path, capsys):
    """Review of issue 21, finding 4: the plot was written with a plain savefig, through a planted symlink."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run_dir / "dependence.png").symlink_to(victim)
    rc, _, _ = _in_process(capsys, "--run-dir", run_dir, "--draws", 2)
    assert rc == 0 and victim.read_text() == "precious" and not (run_dir / "dependence.png").is_symlink()
    assert (run_dir / "dependence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_on_a_read_only_run_dir_prints_the_curve_and_says_no_plot(run_dir, capsys, read_only_writes):
    import matplotlib.pyplot as plt
    plt.close("all")
    rc, out, _ = _in_process(capsys, "--run-dir", run_dir, "--draws", 2)
    assert rc == 0 and "first reaches zero" in out
    assert out.strip().splitlines()[-1] == (f"plot not written: {run_dir / 'dependence.png'} (Read-only file "
                                            "system); the table above is complete")
    rc, out, _ = _in_process(capsys, "--run-dir", run_dir, "--draws", 2, "--json")
    res = json.loads(out)
    assert res["plot"] is None and "Read-only file system" in res["plot_error"] and len(res["rows"]) == 32
    assert not (run_dir / "dependence.png").exists() and not plt.get_fignums()     # the figure was closed


def test_cli_with_phi_undefined_everywhere_prints_the_curve_and_says_why_no_plot(fake_run, capsys):
    """Finding 3: a visual branch right on every test face left phi undefined and plotting crashed."""
    run = fake_run(image_strength=50.0)
    rc, out, err = _in_process(capsys, "--run-dir", run, "--draws", 2, "--json")
    res = json.loads(out)
    assert rc == 0 and err == "" and res["plot"] is None and not (run / "dependence.png").exists()
    assert "phi within class is undefined in every setting" in res["plot_error"]


def test_the_notebook_plot_says_why_there_is_no_curve_instead_of_stopping(fake_run):
    """A tiny run where a branch is right on all or none of each class's pairs leaves phi undefined
    everywhere: the CLI reports it (plot: null), the notebook's `dep.plot(strict=False)` shows a note."""
    d = fake_run("flat")
    dep = ef.dependence_curve(d, draws=2)
    for r in dep.results["rows"]:
        r["phi_within"] = None
    with pytest.raises(InputError, match="phi within class is undefined in every setting"):
        dep.plot()
    fig = dep.plot(strict=False)
    assert "phi within class is undefined in every setting" in repr(fig) and not fig.axes[0].axison
