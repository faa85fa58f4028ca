"""fusion: the formulas, the endpoints, temperature scaling, the sweep, and bad input."""
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.scoring.fusion import apply_temperature, check_classes, fit_temperature, fuse, sweep


def _probs(n, seed, sharp=1.0, y=None):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 7))
    if y is not None:
        z[np.arange(n), y] += sharp
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _split(n, seed):
    y = np.random.default_rng(seed).integers(0, 7, n)
    return {"p_visual": _probs(n, seed + 1, 1.5, y), "p_text": _probs(n, seed + 2, 1.0, y), "y": y}


def test_linear_and_loglinear_equal_formula():
    pv, pt = _probs(50, 0), _probs(50, 1)
    np.testing.assert_allclose(fuse(pv, pt, 0.3), 0.3 * pv + 0.7 * pt)
    np.testing.assert_allclose(fuse(pv, pt), 0.6 * pv + 0.4 * pt)  # default weight is 0.6 visual
    z = 0.3 * np.log(pv) + 0.7 * np.log(pt)
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fuse(pv, pt, 0.3, rule="loglinear"), expected)


@pytest.mark.parametrize("rule", ["linear", "loglinear"])
def test_endpoints_give_one_branch(rule):
    pv, pt = _probs(40, 2), _probs(40, 3)
    np.testing.assert_allclose(fuse(pv, pt, 1.0, rule), pv, atol=1e-9)
    np.testing.assert_allclose(fuse(pv, pt, 0.0, rule), pt, atol=1e-9)


def test_temperature_recovers_known_scaling():
    # Calibrated by construction: each label is drawn from its own probability row.
    true = apply_temperature(_probs(4000, 5), 0.5)
    rng = np.random.default_rng(4)
    y = (rng.random((4000, 1)) > true.cumsum(axis=1)).sum(axis=1)
    # Over-confident version: log-probabilities doubled; the fitted T should undo it (about 2).
    sharp = apply_temperature(true, 0.5)
    t = fit_temperature(sharp, y)
    assert 1.6 < t < 2.4
    np.testing.assert_array_equal(apply_temperature(sharp, t).argmax(1), sharp.argmax(1))
    np.testing.assert_allclose(apply_temperature(true, 1.0), true, atol=1e-12)
    with pytest.raises(InputError, match="temperature 0 must be a positive number"):
        apply_temperature(true, 0)


def test_sweep_matches_per_weight_sklearn_and_picks_on_val():
    val, test = _split(600, 10), _split(700, 20)
    out = sweep(val, test, n_boot=200)
    assert len(out["weights"]) == 101 and out["weights"][0] == 0.0 and out["weights"][-1] == 1.0
    for i in (0, 37, 60, 100):
        w = out["weights"][i]
        pred = fuse(val["p_visual"], val["p_text"], w).argmax(1)
        assert out["val_macro_f1"][i] == pytest.approx(f1_score(val["y"], pred, average="macro"), abs=1e-12)
        tpred = fuse(test["p_visual"], test["p_text"], w).argmax(1)
        assert out["test_accuracy"][i] == pytest.approx(accuracy_score(test["y"], tpred), abs=1e-12)
    best = out["best_weight"]
    assert out["best_val_macro_f1"] == max(out["val_macro_f1"])
    at = out["test_at_best"]
    tpred = fuse(test["p_visual"], test["p_text"], best).argmax(1)
    assert at["macro_f1"] == pytest.approx(f1_score(test["y"], tpred, average="macro"), abs=1e-12)
    assert at["macro_f1_ci"][0] < at["macro_f1"] < at["macro_f1_ci"][1]


def test_sweep_loglinear_agrees_with_fuse():
    val = _split(400, 30)
    out = sweep(val, rule="loglinear", step=0.05)
    assert len(out["weights"]) == 21 and "test_at_best" not in out
    pred = fuse(val["p_visual"], val["p_text"], out["weights"][7], "loglinear").argmax(1)
    assert out["val_accuracy"][7] == pytest.approx(np.mean(pred == val["y"]), abs=1e-12)


def test_sweep_ties_go_to_prefer():
    # Identical branches: every weight scores the same, so the choice is the preferred weight.
    val = _split(200, 40)
    val["p_text"] = val["p_visual"]
    assert sweep(val)["best_weight"] == 0.6
    assert sweep(val, prefer=0.25)["best_weight"] == 0.25


def test_check_classes():
    check_classes(np.array(CLASSES))
    with pytest.raises(InputError, match="canonical order is"):
        check_classes(["happy", "angry", "disgust", "fear", "neutral", "sad", "surprise"], "x.npz")


def test_bad_input_raises_input_error():
    pv, pt = _probs(10, 0), _probs(10, 1)
    with pytest.raises(InputError, match=r"fusion weight 1.5 is outside \[0, 1\]; use a value between 0 "
                                         r"\(text only\) and 1 \(visual only\)"):
        fuse(pv, pt, 1.5)
    with pytest.raises(InputError, match="fusion weight 'a' is not a number"):
        fuse(pv, pt, "a")
    with pytest.raises(InputError, match=r"p_visual has shape \(10, 7\) but p_text has \(9, 7\)"):
        fuse(pv, pt[:9])
    with pytest.raises(InputError, match=r"p_text has shape \(10, 6\)"):
        fuse(pv, pt[:, :6])
    bad = pv.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="p_visual row 3 contains NaN"):
        fuse(bad, pt)
    with pytest.raises(InputError, match="p_text row 0 is not a probability vector"):
        fuse(pv, pt * 2)
    with pytest.raises(InputError, match="unknown fusion rule 'max'"):
        fuse(pv, pt, rule="max")
    with pytest.raises(InputError, match="sweep step 0.03 must divide 1 evenly"):
        sweep(_split(20, 1), step=0.03)
    with pytest.raises(InputError, match=r"val data lacks \['y'\]"):
        sweep({"p_visual": pv, "p_text": pt})


def test_no_torch_sklearn_or_statsmodels_imported():
    code = ("import sys; import emotion_fusion.scoring.fusion, emotion_fusion.scoring.metrics, emotion_fusion.runs; "
            "heavy = [m for m in ('torch', 'sklearn', 'statsmodels', 'pandas', 'matplotlib') "
            "if m in sys.modules]; print(heavy); assert not heavy")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_fit_temperature_minimises_nll_within_its_bounds():
    y = np.random.default_rng(7).integers(0, 7, 500)
    p = _probs(500, 8, sharp=1.0, y=y)
    t = fit_temperature(p, y)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))

    def nll(T):
        q = apply_temperature(p, T)
        return -np.mean(np.log(q[np.arange(len(y)), y]))
    best = grid[int(np.argmin([nll(T) for T in grid]))]
    assert t == pytest.approx(best, rel=5e-3) and nll(t) <= nll(best) + 1e-6
    # the search stays inside log_bounds: the same data with a range that excludes the optimum
    lo, hi = np.log(3 * t), np.log(6 * t)
    assert fit_temperature(p, y, log_bounds=(lo, hi)) == pytest.approx(3 * t, rel=1e-3)
    with pytest.raises(InputError, match="500 probability rows but 499 labels"):
        fit_temperature(p, y[:499])


@pytest.mark.parametrize("rule", ["linear", "loglinear"])
def test_grid_and_fused_labels_equal_fuse_argmax(rule):
    from emotion_fusion.scoring.fusion import fused_labels, grid_labels
    pv, pt = _probs(30, 5), _probs(45, 6)
    grid = grid_labels(pv, pt, 0.45, rule)
    assert grid.shape == (30, 45)
    for i in range(30):
        np.testing.assert_array_equal(grid[i], fuse(np.repeat(pv[i:i + 1], 45, 0), pt, 0.45, rule).argmax(1))
    both = fused_labels(pv, pt[:30], [0.45, 0.8], rule)
    np.testing.assert_array_equal(both[0], fuse(pv, pt[:30], 0.45, rule).argmax(1))
    np.testing.assert_array_equal(both[1], fuse(pv, pt[:30], 0.8, rule).argmax(1))
