"""runs: the run-directory contract (DESIGN.md section 6), cache verification and scoring."""
import hashlib
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emotion_fusion.errors import InputError
from emotion_fusion.fusion import fuse
from emotion_fusion.labels import CLASSES
from emotion_fusion.runs import (fingerprint, format_results, load_outputs, read_config, read_json,
                                 results_table, score_run, write_json, write_outputs, write_results)

ROW_KEYS = {"model", "split", "accuracy", "macro_f1", "accuracy_ci", "macro_f1_ci", "n"}


def _branch(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    out = []
    for boost in (1.5, 1.0):
        z = rng.normal(size=(n, 7))
        z[np.arange(n), y] += boost
        out.append(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
    return out[0], out[1], y


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    for split, n, seed in (("val", 300, 1), ("test", 350, 2)):
        write_outputs(d, split, *_branch(n, seed), key="key", extra={"image_idx": np.arange(n)})
    write_json(d / "config.json", {"fusion_weight": 0.6, "fusion_rule": "linear", "seed": 0})
    return d


def test_write_then_load_round_trip(run_dir):
    out = load_outputs(run_dir, "test", key="key")
    pv, pt, y = _branch(350, 2)
    np.testing.assert_array_equal(out["p_visual"], pv)
    np.testing.assert_array_equal(out["p_text"], pt)
    np.testing.assert_array_equal(out["y"], y)
    np.testing.assert_array_equal(out["image_idx"], np.arange(350))
    assert out["classes"] == CLASSES and out["key"] == "key"
    manifest = json.loads((run_dir / "outputs" / "manifest.json").read_text())
    assert set(manifest) == {"val", "test"} and len(manifest["test"]["sha256"]) == 64
    with np.load(run_dir / "outputs" / "test.npz") as z:
        assert {"p_visual", "p_text", "y", "classes"} <= set(z.files)


def test_missing_run_dir_and_file(tmp_path, run_dir):
    with pytest.raises(InputError,
                       match=r"run directory .*nope does not exist; re-run `python -m emotion_fusion run"):
        load_outputs(tmp_path / "nope", "test")
    (run_dir / "outputs" / "val.npz").unlink()
    with pytest.raises(InputError, match=r"val\.npz is missing; re-run `python -m emotion_fusion run"):
        load_outputs(run_dir, "val")
    with pytest.raises(InputError, match="config.json is missing"):
        read_config(tmp_path)


def test_npz_edited_after_run_is_refused(run_dir):
    path = run_dir / "outputs" / "test.npz"
    with np.load(path) as z:
        arrays = dict(z)
    arrays["y"] = np.roll(arrays["y"], 1)
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=r"test\.npz was modified after the run .*re-run"):
        load_outputs(run_dir, "test")


def test_stale_key_is_refused(run_dir):
    with pytest.raises(InputError, match=r"test\.npz is stale: .*cache key differs.*re-run"):
        load_outputs(run_dir, "test", key="another-config")


def test_malformed_arrays_are_refused(tmp_path):
    pv, pt, y = _branch(20, 3)
    bad = pv.copy()
    bad[4] = np.nan
    with pytest.raises(InputError, match="test p_visual row 4 contains NaN"):
        write_outputs(tmp_path, "test", bad, pt, y, key="k")
    with pytest.raises(InputError, match=r"p_visual \(20, 7\), p_text \(19, 7\)"):
        write_outputs(tmp_path, "test", pv, pt[:19], y, key="k")
    with pytest.raises(InputError, match="extra array 'y'"):
        write_outputs(tmp_path, "test", pv, pt, y, key="k", extra={"y": y})
    # A file written with the wrong class order (and a matching manifest) is still refused.
    write_outputs(tmp_path, "test", pv, pt, y, key="k")
    path = tmp_path / "outputs" / "test.npz"
    np.savez(path, p_visual=pv, p_text=pt, y=y, classes=np.array(CLASSES[::-1]))
    manifest = read_json(tmp_path / "outputs" / "manifest.json")
    manifest["test"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_json(tmp_path / "outputs" / "manifest.json", manifest)
    with pytest.raises(InputError, match="canonical order is"):
        load_outputs(tmp_path, "test")


def test_fingerprint_is_stable_and_sensitive():
    a = np.arange(10, dtype=np.int64)
    assert fingerprint({"b": 1, "a": [1, 2]}, a) == fingerprint({"a": [1, 2], "b": 1}, a.copy())
    assert fingerprint(a) != fingerprint(a.astype(np.int32))
    assert fingerprint(a) != fingerprint(a[::-1])
    assert fingerprint({"w": 0.6}) != fingerprint({"w": 0.61})
    with pytest.raises(TypeError, match="cannot write object"):
        fingerprint(object())


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
    assert fusion["weight"] == 0.6 and fusion["n"] == 350
    assert fusion["accuracy"] == pytest.approx(accuracy_score(test["y"], pred))
    assert fusion["macro_f1"] == pytest.approx(f1_score(test["y"], pred, average="macro"))
    best = next(r for r in rows if r["split"] == "test" and r["model"] == "fusion_best_val")
    assert best["weight"] == res["best_weight"] == res["sweep"]["best_weight"]
    assert res["sweep"]["test_at_best"]["macro_f1"] == best["macro_f1"]
    assert set(res["mcnemar"]) >= {"b", "c", "statistic", "pvalue", "method"}
    json.dumps(res)  # JSON-able as is


def test_score_run_weight_override_and_bad_weight(run_dir):
    res = score_run(run_dir, weight=0.3, n_boot=0)
    assert {r["weight"] for r in res["rows"] if r["model"] == "fusion"} == {0.3}
    assert res["rows"][0]["accuracy_ci"] is None
    with pytest.raises(InputError, match=r"fusion weight 1.5 is outside \[0, 1\]"):
        score_run(run_dir, weight=1.5)
    write_json(run_dir / "config.json", {"seed": 0})
    with pytest.raises(InputError, match="config.json has no 'fusion_weight'"):
        score_run(run_dir)


def test_results_keep_title_and_format(run_dir):
    write_results(run_dir, {"title": "Smoke (random-init weights); test = FER2013 test x GoEmotions dev",
                            "rows": []})
    res = score_run(run_dir, n_boot=100)
    assert res["title"].startswith("Smoke (random-init weights)")
    write_results(run_dir, {k: v for k, v in res.items() if k != "title"})
    saved = read_json(run_dir / "results.json")
    assert saved["title"].startswith("Smoke (random-init weights)") and len(saved["rows"]) == 8
    df = results_table(saved)
    assert df.shape == (8, 3) and df.attrs["title"] == saved["title"]
    cell = df.loc[("test", "Visual only"), "accuracy"]
    r = saved["rows"][0]
    assert cell == (f"{100 * r['accuracy']:.1f} [{100 * r['accuracy_ci'][0]:.1f}, "
                    f"{100 * r['accuracy_ci'][1]:.1f}]")


def test_format_results_text(run_dir):
    res = score_run(run_dir, n_boot=100)
    text = format_results(res)
    lines = text.splitlines()
    assert lines[0] == res["title"] and len(lines) == 1 + 1 + 8 + 2
    assert "Fusion, w = 0.60" in text and "McNemar, fusion vs visual on test" in text
    r = res["rows"][0]
    assert f"{100 * r['accuracy']:.1f} [{100 * r['accuracy_ci'][0]:.1f}" in lines[2]


def test_score_run_refuses_val_and_test_from_different_runs(run_dir):
    y = np.arange(40) % 7
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(7), size=40)
    write_outputs(run_dir, "test", p, p, y, key="another run")
    with pytest.raises(InputError, match="val.npz and test.npz come from different runs"):
        score_run(run_dir)
