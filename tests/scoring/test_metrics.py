"""metrics: values equal scikit-learn's / statsmodels', seeded CIs bracket the estimate, bad input."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.scoring.metrics import (
    bootstrap_ci,
    confusion,
    confusion_scores,
    evaluate,
    evaluate_many,
    macro_f1,
    mcnemar,
    per_class_table,
)


def _data(n=500, seed=0, acc=0.6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    pred = np.where(rng.random(n) < acc, y, rng.integers(0, 7, n))
    return y, pred


@pytest.mark.parametrize("seed", range(5))
def test_point_metrics_equal_sklearn(seed):
    y, pred = _data(seed=seed)
    out = evaluate(y, pred, n_boot=0)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert out["macro_f1"] == pytest.approx(
        f1_score(y, pred, labels=list(range(7)), average="macro", zero_division=0), abs=1e-12)
    assert out["n"] == 500 and out["accuracy_ci"] is None


def test_macro_f1_is_over_all_seven_classes():
    # Classes 5 and 6 never occur in y or pred: each counts as F1 = 0, so every score is over 7 classes
    # (scikit-learn's labels=range(7), zero_division=0), not over the classes that happen to occur.
    y = np.array([0, 0, 1, 1, 2, 2, 3])
    pred = np.array([0, 1, 1, 1, 2, 0, 4])
    expected = f1_score(y, pred, labels=list(range(7)), average="macro", zero_division=0)
    assert expected != pytest.approx(f1_score(y, pred, average="macro", zero_division=0))   # the cases differ
    assert evaluate(y, pred, n_boot=0)["macro_f1"] == pytest.approx(expected, abs=1e-12)
    assert macro_f1(y, pred) == pytest.approx(expected, abs=1e-12)
    assert macro_f1(np.zeros(5, int), np.zeros(5, int)) == pytest.approx(1 / 7)   # one perfect class of seven


@pytest.mark.parametrize("seed", range(3))
def test_confusion_scores_equal_sklearn_per_matrix(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=(4, 7, 7))
    counts[1, :, 3] = counts[1, 3, :] = 0            # a class absent from y and pred in one matrix
    acc, f1 = confusion_scores(counts)
    for r in range(4):
        y, pred = np.nonzero(counts[r])
        reps = counts[r][y, pred]
        y, pred = np.repeat(y, reps), np.repeat(pred, reps)
        assert acc[r] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        assert f1[r] == pytest.approx(f1_score(y, pred, labels=list(range(7)), average="macro", zero_division=0),
                                      abs=1e-12)


def test_probabilities_are_argmaxed():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(7), 300)
    y = rng.integers(0, 7, 300)
    assert evaluate(y, p, n_boot=0) == evaluate(y, p.argmax(1), n_boot=0)


def test_ci_brackets_estimate_and_repeats_with_seed():
    y, pred = _data(n=800)
    a = evaluate(y, pred, n_boot=500, seed=3)
    b = evaluate(y, pred, n_boot=500, seed=3)
    c = evaluate(y, pred, n_boot=500, seed=4)
    assert a == b and a["accuracy_ci"] != c["accuracy_ci"]
    for m in ("accuracy", "macro_f1"):
        lo, hi = a[f"{m}_ci"]
        assert lo < a[m] < hi and hi - lo < 0.15
    assert bootstrap_ci(y, pred, "accuracy", n_boot=500, seed=3) == a["accuracy_ci"]
    assert bootstrap_ci(y, pred, "macro_f1", n_boot=500, seed=3) == a["macro_f1_ci"]


def test_bootstrap_matches_a_plain_index_matrix_loop():
    # The grouped/vectorised bootstrap must equal the textbook one: resample indices, call sklearn.
    y, pred = _data(n=120, seed=7)
    n_boot, seed = 40, 11
    idx = np.random.default_rng(seed).integers(0, y.size, size=(n_boot, y.size))
    f1s = [f1_score(y[i], pred[i], labels=list(range(7)), average="macro", zero_division=0) for i in idx]
    accs = [accuracy_score(y[i], pred[i]) for i in idx]
    assert bootstrap_ci(y, pred, "macro_f1", n_boot=n_boot, seed=seed) == pytest.approx(
        list(np.percentile(f1s, [2.5, 97.5])), abs=1e-12)
    assert bootstrap_ci(y, pred, "accuracy", n_boot=n_boot, seed=seed) == pytest.approx(
        list(np.percentile(accs, [2.5, 97.5])), abs=1e-12)


def test_evaluate_many_is_paired_and_equals_single():
    y, p1 = _data(seed=1)
    _, p2 = _data(seed=2)
    many = evaluate_many(y, {"a": p1, "b": p2}, n_boot=200, seed=5)
    assert many["a"] == evaluate(y, p1, n_boot=200, seed=5)
    assert many["b"] == evaluate(y, p2, n_boot=200, seed=5)


def test_confusion_and_per_class_equal_sklearn():
    y, pred = _data(seed=4)
    np.testing.assert_array_equal(confusion(y, pred), confusion_matrix(y, pred, labels=range(7)))
    norm = confusion(y, pred, normalize=True)
    np.testing.assert_allclose(norm.sum(axis=1), 1.0)
    table = per_class_table(y, pred)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(7), zero_division=0)
    assert list(table.index) == list(CLASSES)
    np.testing.assert_allclose(table[["precision", "recall", "f1"]].to_numpy(), np.c_[p, r, f])
    np.testing.assert_array_equal(table["support"], s)


@pytest.mark.parametrize("b,c", [(0, 0), (3, 1), (12, 12), (20, 4), (13, 11), (40, 25), (90, 10), (30, 70)])
def test_mcnemar_equals_statsmodels(b, c):
    # Build predictions with exactly b (a right, b wrong) and c (a wrong, b right) discordant pairs.
    both = 50
    y = np.zeros(both + b + c + 10, dtype=int)
    pa, pb = y.copy(), y.copy()
    pb[both:both + b] = 1
    pa[both + b:both + b + c] = 1
    pa[-10:] = pb[-10:] = 2  # both wrong
    out = mcnemar(y, pa, pb)
    exact = b + c < 25
    ref = sm_mcnemar(np.array([[both, b], [c, 10]]), exact=exact, correction=True)
    assert (out["b"], out["c"]) == (b, c)
    assert out["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
    assert out["pvalue"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert out["method"] == ("exact binomial" if exact else "chi-square with continuity correction")


def test_bad_input_raises_input_error():
    y, pred = _data(n=20)
    with pytest.raises(InputError, match="y has 20 labels but predictions have 19"):
        evaluate(y, pred[:19])
    with pytest.raises(InputError, match=r"pred\[0\] = 9 is not a class id"):
        evaluate(y, np.r_[9, pred[1:]])
    with pytest.raises(InputError, match=r"shape \(20, 5\); expected N x 7"):
        evaluate(y, np.ones((20, 5)) / 5)
    with pytest.raises(InputError, match="NaN"):
        evaluate(y, np.full((20, 7), np.nan))
    with pytest.raises(InputError, match="unknown metric 'auc'"):
        bootstrap_ci(y, pred, "auc")
    with pytest.raises(InputError, match="n_boot = -1"):
        evaluate(y, pred, n_boot=-1)
    with pytest.raises(InputError, match="y is empty"):
        evaluate([], [])
