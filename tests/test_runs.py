"""runs + report: the run-directory contract (DESIGN.md section 6), the manifest, the writer lock, scoring."""
import json
import os
import shutil
import signal

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emotion_fusion import runs
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.report import format_results, results_table, score_run, write_results
from emotion_fusion.runs import (
    fingerprint,
    invalidate,
    load_outputs,
    read_config,
    read_json,
    read_run,
    verify,
    write_json,
    write_manifest,
    write_outputs,
)
from emotion_fusion.scoring.fusion import fuse

ROW_KEYS = {"model", "split", "accuracy", "macro_f1", "accuracy_ci", "macro_f1_ci", "n"}


def _f1(y, pred):
    return f1_score(y, pred, labels=list(range(7)), average="macro", zero_division=0)


def _rewrite_npz(path, **changes):
    """Rewrite an npz with some arrays replaced (what a user editing the cache would do)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def test_outputs_hold_per_item_arrays_and_the_default_pairs(run_dir):
    out = load_outputs(run_dir, "test")
    assert out["p_image"].shape == (400, 7) and out["p_text_items"].shape == (450, 7)
    assert out["y_image"].shape == (400,) and out["y_text"].shape == (450,) and out["pairs"].shape == (400,)
    # the section 6 contract, per pair, derived from the per-item arrays
    np.testing.assert_array_equal(out["p_visual"], out["p_image"])
    np.testing.assert_array_equal(out["p_text"], out["p_text_items"][out["pairs"]])
    np.testing.assert_array_equal(out["y"], out["y_image"])
    np.testing.assert_array_equal(out["y_text"][out["pairs"]], out["y"])      # paired by label
    assert out["classes"] == CLASSES
    m = read_json(run_dir / "manifest.json")
    assert m["key"] == "synthetic-key" and m["format"] == runs.MANIFEST_FORMAT
    assert set(m["files"]) == {"config.json", "run_info.json", "outputs/val.npz", "outputs/test.npz"}
    assert all(len(v["sha256"]) == 64 for v in m["files"].values())


def test_missing_run_dir_a_file_and_missing_config(tmp_path, run_dir):
    with pytest.raises(InputError, match=r"run directory .*nope does not exist; re-run `python -m emotion_fusion run"):
        load_outputs(tmp_path / "nope", "test")
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(InputError, match=r"afile is a file, not a run directory"):
        load_outputs(f, "test")
    with pytest.raises(InputError, match="config.json is missing"):
        read_config(tmp_path)


def test_a_missing_output_makes_the_dir_incomplete(run_dir):
    (run_dir / "outputs" / "val.npz").unlink()
    with pytest.raises(InputError, match=r"incomplete: .*val\.npz is missing; re-run `python -m emotion_fusion run"):
        load_outputs(run_dir, "test")        # the whole dir is checked, not only the file asked for


def test_npz_edited_after_run_is_refused(run_dir):
    path = run_dir / "outputs" / "test.npz"
    _rewrite_npz(path, y=np.roll(load_outputs(run_dir, "test")["y"], 1))
    with pytest.raises(InputError, match=r"incomplete: .*test\.npz changed after the run .*re-run"):
        load_outputs(run_dir, "test")


def test_stale_key_is_refused(run_dir):
    assert verify(run_dir, "synthetic-key")["key"] == "synthetic-key"
    with pytest.raises(InputError, match=r"incomplete for these settings .*re-run"):
        verify(run_dir, "another-config")
    assert runs.is_complete(run_dir, "synthetic-key") and not runs.is_complete(run_dir, "another-config")


def test_files_added_after_the_run_or_a_bad_manifest_are_refused(run_dir):
    (run_dir / "models").mkdir()
    (run_dir / "models" / "image.pth").write_bytes(b"from another run")
    with pytest.raises(InputError, match=r"incomplete: .*models/image\.pth is not in the manifest"):
        verify(run_dir)
    shutil.rmtree(run_dir / "models")
    verify(run_dir)
    for content in ("[1, 2]", "{", "null", json.dumps({"format": "emotion_fusion.run/2", "files": {}})):
        (run_dir / "manifest.json").write_text(content)
        with pytest.raises(InputError, match=r"incomplete \(.*manifest\.json is not a manifest written by this version\)"):
            verify(run_dir)


def test_invalidate_removes_manifest_and_results(run_dir):
    write_results(run_dir, {"rows": []})
    invalidate(run_dir)
    assert not (run_dir / "manifest.json").exists() and not (run_dir / "results.json").exists()
    with pytest.raises(InputError, match=r"incomplete \(no manifest\.json: the run did not finish\)"):
        read_run(run_dir)


def test_outputs_swapped_in_from_another_run_are_refused(fake_run):
    a, b = fake_run("a", seed=0), fake_run("b", seed=1)
    shutil.rmtree(a / "outputs")
    shutil.copytree(b / "outputs", a / "outputs")
    with pytest.raises(InputError, match=r"incomplete: .*outputs/(test|val)\.npz changed after the run"):
        score_run(a)


def test_cached_hashes_still_catch_a_swapped_or_rewritten_file(run_dir, tmp_path):
    verify(run_dir)                                       # every file hashed once: the cache is warm
    path = run_dir / "outputs" / "test.npz"
    original, st = path.read_bytes(), path.stat()
    # a file of the same size and mtime renamed into place: another inode, so it is hashed again
    forged = tmp_path / "forged.npz"
    forged.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    os.utime(forged, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(forged, path)
    with pytest.raises(InputError, match=r"incomplete: .*test\.npz changed after the run"):
        verify(run_dir)
    # the same inode rewritten in place with its mtime put back: the ctime still moves
    with open(path, "r+b") as f:
        f.write(original)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    verify(run_dir)                                       # the original bytes again: complete
    with open(path, "r+b") as f:
        f.seek(len(original) - 1)
        f.write(bytes([original[-1] ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(InputError, match=r"incomplete: .*test\.npz changed after the run"):
        verify(run_dir)


def test_a_warm_verify_reads_no_file_again(run_dir, monkeypatch):
    verify(run_dir)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    verify(run_dir)
    assert not [f for f in opened if f.endswith((".npz", ".json")) and "manifest" not in f], opened


def test_malformed_arrays_are_refused(tmp_path):
    rng = np.random.default_rng(3)
    y = np.arange(20) % 7
    p = rng.dirichlet(np.ones(7), 20)
    ok = dict(p_image=p, y_image=y, p_text_items=p, y_text=y, pairs=np.arange(20))
    bad = p.copy()
    bad[4] = np.nan
    with pytest.raises(InputError, match="test p_image row 4 contains NaN"):
        write_outputs(tmp_path, "test", **{**ok, "p_image": bad})
    with pytest.raises(InputError, match="test: 20 image rows / 19 labels"):
        write_outputs(tmp_path, "test", **{**ok, "y_image": y[:19]})
    with pytest.raises(InputError, match=r"pairs must hold one text index \(0\.\.19\) per image"):
        write_outputs(tmp_path, "test", **{**ok, "pairs": np.arange(20) + 1})
    with pytest.raises(InputError, match="a pair joins a face and a text of different labels"):
        write_outputs(tmp_path, "test", **{**ok, "pairs": np.roll(np.arange(20), 1)})
    assert not (tmp_path / "outputs" / "test.npz").exists()       # nothing half-written
    write_outputs(tmp_path, "test", **ok)
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["test.npz"]   # no temp file left


def test_wrong_class_order_is_refused_even_with_a_matching_manifest(run_dir):
    _rewrite_npz(run_dir / "outputs" / "test.npz", classes=np.array(CLASSES[::-1]))
    write_manifest(run_dir, "synthetic-key")
    with pytest.raises(InputError, match="canonical order is"):
        load_outputs(run_dir, "test")


def test_an_older_npz_format_is_refused(run_dir):
    with np.load(run_dir / "outputs" / "test.npz") as z:
        old = {k: z[k] for k in ("p_visual", "p_text", "y", "classes")}
    np.savez(run_dir / "outputs" / "test.npz", **old)
    write_manifest(run_dir, "synthetic-key")
    with pytest.raises(InputError, match=r"test\.npz lacks arrays \['p_image'.*older format"):
        load_outputs(run_dir, "test")


def test_fingerprint_is_stable_and_sensitive():
    a = np.arange(10, dtype=np.int64)
    assert fingerprint({"b": 1, "a": [1, 2]}, a) == fingerprint({"a": [1, 2], "b": 1}, a.copy())
    assert fingerprint(a) != fingerprint(a.astype(np.int32))
    assert fingerprint(a) != fingerprint(a[::-1])
    assert fingerprint({"w": 0.6}) != fingerprint({"w": 0.61})
    with pytest.raises(TypeError, match="cannot write object"):
        fingerprint(object())


def test_json_is_written_atomically_and_read_with_one_line_errors(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.float32(0.5), "y": np.arange(2)})
    assert read_json(tmp_path / "a.json") == {"x": 0.5, "y": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]      # no temp file left
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json(tmp_path / "nan.json", {"x": float("nan")})          # never writes invalid JSON
    assert not (tmp_path / "nan.json").exists()
    (tmp_path / "b.json").write_text('{"rows": [')
    with pytest.raises(InputError, match=r"b\.json is not valid JSON"):
        read_json(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("[]")
    with pytest.raises(InputError, match=r"c\.json holds a JSON array, expected an object"):
        read_json(tmp_path / "c.json")


def test_score_run_rows_follow_the_contract(run_dir):
    res = score_run(run_dir, n_boot=200)
    rows = res["rows"]
    assert [(r["split"], r["model"]) for r in rows] == [
        (s, m) for s in ("test", "val") for m in ("visual", "text", "fusion", "fusion_best_val")]
    for r in rows:
        assert ROW_KEYS <= set(r) and (("weight" in r) == r["model"].startswith("fusion"))
        assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
    test = load_outputs(run_dir, "test")
    fusion = next(r for r in rows if r["split"] == "test" and r["model"] == "fusion")
    pred = fuse(test["p_visual"], test["p_text"], 0.6).argmax(1)
    assert fusion["weight"] == 0.6 and fusion["n"] == 400
    assert fusion["accuracy"] == pytest.approx(accuracy_score(test["y"], pred))
    assert fusion["macro_f1"] == pytest.approx(_f1(test["y"], pred))
    text = next(r for r in rows if r["split"] == "test" and r["model"] == "text")
    assert text["accuracy"] == pytest.approx(accuracy_score(test["y"], test["p_text_items"][test["pairs"]].argmax(1)))
    best = next(r for r in rows if r["split"] == "test" and r["model"] == "fusion_best_val")
    assert best["weight"] == res["best_weight"] == res["sweep"]["best_weight"]
    assert res["sweep"]["test_at_best"]["macro_f1"] == best["macro_f1"]
    assert [m["model_b"] for m in res["mcnemar"]] == ["visual", "text"]
    for m in res["mcnemar"]:
        assert {"b", "c", "statistic", "pvalue", "method"} <= set(m)
    json.dumps(res)  # JSON-able as is


def test_score_run_weight_override_and_bad_settings(run_dir):
    res = score_run(run_dir, weight=0.3, n_boot=0)
    assert {r["weight"] for r in res["rows"] if r["model"] == "fusion"} == {0.3}
    assert res["rows"][0]["accuracy_ci"] is None
    with pytest.raises(InputError, match=r"fusion weight 1.5 is outside \[0, 1\]"):
        score_run(run_dir, weight=1.5)
    cfg = read_config(run_dir)
    for change, message in (({"fusion_weight": None}, "has no 'fusion_weight'"),
                            ({"seed": "x"}, r"config\.json: seed = 'x' is not valid"),
                            ({"fusion_rule": "max"}, r"config\.json: fusion_rule = 'max' is not valid")):
        new = {k: v for k, v in {**cfg, **change}.items() if v is not None}
        write_json(run_dir / "config.json", new)
        write_manifest(run_dir, "synthetic-key")     # a consistent dir with a bad setting
        with pytest.raises(InputError, match=message):
            score_run(run_dir)


def test_title_comes_from_run_info_not_results_json(fake_run):
    d = fake_run(title="smoke profile — RANDOM-INIT WEIGHTS (numbers show the mechanism)")
    write_results(d, {"title": "results_missing: linear late fusion", "rows": []})  # a stale derived file
    res = score_run(d, n_boot=100)
    assert res["title"] == "smoke profile — RANDOM-INIT WEIGHTS (numbers show the mechanism)"
    (d / "results.json").write_text('{"title": "trunc')                               # truncated: ignored
    assert score_run(d, n_boot=0)["title"] == res["title"]
    (d / "results.json").unlink()
    assert score_run(d, n_boot=0)["title"] == res["title"]
    info = read_json(d / "run_info.json")
    write_json(d / "run_info.json", {**info, "title": ""})
    write_manifest(d, info["key"])
    with pytest.raises(InputError, match=r"run_info\.json has no title"):
        score_run(d)


def test_results_table_shows_its_title(run_dir):
    res = score_run(run_dir, n_boot=100)
    table = results_table(res)
    assert res["title"] == "synthetic run — test = made-up pairs"
    assert table.title.startswith(res["title"]) and "default pairing" in table.title
    assert table.df.shape == (8, 3) and list(table.df.columns) == ["accuracy %", "macro-F1 %", "pairs"]
    import html
    assert table._repr_html_().startswith(f"<h4>{html.escape(table.title)}</h4>")    # Jupyter renders the title
    assert repr(table).splitlines()[0] == table.title
    r = res["rows"][0]
    assert table.df.loc[("test", "Visual only"), "accuracy %"] == (
        f"{100 * r['accuracy']:.1f} [{100 * r['accuracy_ci'][0]:.1f}, {100 * r['accuracy_ci'][1]:.1f}]")
    assert table.df.loc[("test", "Fusion, w = 0.60"), "pairs"] == "400"


def test_format_results_text(run_dir):
    res = score_run(run_dir, n_boot=100)
    lines = format_results(res).splitlines()
    assert lines[0] == res["title"] and len(lines) == 1 + 1 + 8 + 1 + 2
    assert any("Fusion, w = 0.60" in ln for ln in lines)
    assert [ln.split(":")[0] for ln in lines[-2:]] == ["McNemar, fusion vs visual on test pairs",
                                                       "McNemar, fusion vs text on test pairs"]
    r = res["rows"][0]
    assert f"{100 * r['accuracy']:.1f} [{100 * r['accuracy_ci'][0]:.1f}" in lines[2]


# ---------------------------------------------------------------- one writer at a time
def test_a_held_lock_stops_a_second_writer_at_once_naming_the_pid(tmp_path, lock_holder):
    d = tmp_path / "run"
    holder = lock_holder(d)
    with pytest.raises(InputError, match=rf"run directory .*run is being written by another process "
                                          rf"\(pid {holder.pid}\); wait for it to finish, or choose another --out"):
        with runs.writer_lock(d):
            pass
    assert holder.poll() is None                    # refused while the holder still runs: it did not wait
    holder.kill()
    holder.wait()
    with runs.writer_lock(d):                     # the holder died: its lock is gone, the file is reused
        assert (d / ".lock").read_text() == str(os.getpid())


def test_a_lock_file_left_by_a_killed_writer_is_taken_over(tmp_path, lock_holder):
    d = tmp_path / "run"
    holder = lock_holder(d)
    os.kill(holder.pid, signal.SIGKILL)           # no cleanup runs: the lock file stays, naming a dead pid
    holder.wait()
    assert (d / ".lock").read_text() == str(holder.pid)
    with runs.writer_lock(d):
        assert (d / ".lock").read_text() == str(os.getpid())


def test_the_lock_file_is_not_part_of_the_manifest(run_dir):
    with runs.writer_lock(run_dir):
        write_manifest(run_dir, "synthetic-key")
    assert ".lock" not in read_json(run_dir / "manifest.json")["files"]
    verify(run_dir)


def test_a_symlinked_lock_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    d = tmp_path / "run"
    d.mkdir()
    (d / ".lock").symlink_to(victim)
    with pytest.raises(InputError, match=r"run/\.lock is a symbolic link; remove it"):
        with runs.writer_lock(d):
            pass
    assert victim.read_text() == "precious"


def test_run_dir_files_replace_a_symlink_instead_of_writing_through_it(tmp_path, run_dir):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    arrays = runs.load_outputs(run_dir, "val")
    (run_dir / "results.json").symlink_to(victim)
    (run_dir / "outputs" / "test.npz").unlink()
    (run_dir / "outputs" / "test.npz").symlink_to(victim)
    write_json(run_dir / "results.json", {"x": 1})
    runs.write_outputs(run_dir, "test", **{k: arrays[k] for k in runs.ITEM_ARRAYS})
    assert victim.read_text() == "precious"
    assert not (run_dir / "results.json").is_symlink() and not (run_dir / "outputs" / "test.npz").is_symlink()


@pytest.mark.parametrize("sub", ["models", "outputs"])
def test_symlinked_models_or_outputs_folders_are_refused_and_their_targets_kept(tmp_path, sub):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d = tmp_path / "run"
    d.mkdir()
    (d / sub).symlink_to(elsewhere, target_is_directory=True)
    rng = np.random.default_rng(3)
    y = np.arange(14) % 7
    p = rng.dirichlet(np.ones(7), 14)
    msg = rf"run/{sub} is a symbolic link; a run writes only into its own folders"
    with pytest.raises(InputError, match=msg):
        with runs.writing(d, []):
            pass
    with pytest.raises(InputError, match=msg):
        runs.invalidate(d)
    if sub == "outputs":
        with pytest.raises(InputError, match=msg):
            write_outputs(d, "test", p_image=p, y_image=y, p_text_items=p, y_text=y, pairs=np.arange(14))
    assert list(elsewhere.iterdir()) == [] and (d / sub).is_symlink()
