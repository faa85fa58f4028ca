"""dependence: controlled-dependence pairings from the cache, and the curve of the fusion gain against phi."""
import numpy as np
import pytest
from conftest import synthetic_probs

from emotion_fusion.data.pairing import make_pairs
from emotion_fusion.errors import InputError
from emotion_fusion.scoring import dependence as dep
from emotion_fusion.scoring import stats
from emotion_fusion.scoring.fusion import fuse
from emotion_fusion.scoring.metrics import evaluate


def _split(seed, n_faces, n_texts):
    """Per-item outputs of one split: a weaker visual branch (1.0 logit) and a stronger text branch (1.5)."""
    rng = np.random.default_rng(seed)
    y = {"y_image": rng.integers(0, 7, n_faces), "y_text": rng.integers(0, 7, n_texts)}
    return {**y, "p_image": synthetic_probs(rng, y["y_image"], 1.0),
            "p_text_items": synthetic_probs(rng, y["y_text"], 1.5)}


def _ranked(seed, per_class, right_faces, right_texts):
    """Items whose correctness is a threshold on the true-class probability ("perfectly ranked"): per
    class, `right_*` of each `per_class` items get p_true in (0.5, 0.9) and are right; the others get
    p_true in (0.15, 0.25) and a seeded wrong class a little above it, so they are narrowly wrong
    (fusion can rescue them when the other branch is right). Every class has as many texts as faces,
    so each draw uses every text once."""
    rng = np.random.default_rng(seed)

    def items(n_right):
        y = np.repeat(np.arange(7), per_class)
        rows, right = np.arange(y.size), np.tile(np.arange(per_class) < n_right, 7)
        p_true = np.where(right, rng.uniform(0.5, 0.9, y.size), rng.uniform(0.15, 0.25, y.size))
        p_wrong = np.where(right, 0.0, p_true + rng.uniform(0.05, 0.15, y.size))
        wrong = (y + rng.integers(1, 7, y.size)) % 7
        p = np.repeat(((1 - p_true - p_wrong) / np.where(right, 6, 5))[:, None], 7, axis=1)
        p[rows, wrong] = np.where(right, p[rows, wrong], p_wrong)
        p[rows, y] = p_true
        return p, y

    pv, yi = items(right_faces)
    pt, yt = items(right_texts)
    order = rng.permutation(yi.size)            # not sorted by class, as real outputs are not
    return {"p_image": pv[order], "y_image": yi[order], "p_text_items": pt, "y_text": yt}


def _row(res, family, rho):
    return next(r for r in res["rows"] if r["family"] == family and r["rho"] == rho)


def _phi(a, b):
    return np.corrcoef(a.astype(float), b.astype(float))[0, 1]


@pytest.mark.parametrize("family", ["copula", "wrong"])
def test_rho_zero_is_todays_random_pairing_draws_exactly(family):
    d = _split(0, 500, 180)
    pairs = dep.family_pairings(family, 0, d["p_image"], d["y_image"], d["p_text_items"], d["y_text"],
                                seed=3, R=6, stream=1)
    np.testing.assert_array_equal(pairs, stats.draw_pairings(d["y_image"], d["y_text"], seed=3, R=6, stream=1))
    for r in range(6):      # same seed, same pairs as the run's own pairing function
        np.testing.assert_array_equal(pairs[r], make_pairs(d["y_image"], d["y_text"], stats.draw_seed(3, 1, r)))


@pytest.mark.parametrize("family, rho", [("copula", -1.0), ("copula", 0.4), ("copula", 1.0), ("wrong", 0.5),
                                         ("wrong", 1.0)])
def test_a_setting_only_changes_who_meets_whom(family, rho):
    d = _split(1, 500, 180)
    y, yt = d["y_image"], d["y_text"]
    draws = stats.draw_pairings(y, yt, seed=0, R=5, stream=0)
    pairs = dep.family_pairings(family, rho, d["p_image"], y, d["p_text_items"], yt, seed=0, R=5, stream=0)
    assert (yt[pairs] == y).all()
    for r in range(5):
        # every draw keeps its texts and how often each is used: the text branch's scores cannot move
        uses = [np.bincount(p[r], minlength=yt.size) for p in (pairs, draws)]
        np.testing.assert_array_equal(*uses)
    assert (pairs != draws).mean() > 0.2


def test_the_copula_reaches_its_rank_correlation():
    d = _split(2, 4000, 4000)
    y, yt = d["y_image"], d["y_text"]
    face_p, text_p = d["p_image"][np.arange(y.size), y], d["p_text_items"][np.arange(yt.size), yt]
    for rho in (-0.6, 0.3, 0.8):
        pairs = dep.family_pairings("copula", rho, d["p_image"], y, d["p_text_items"], yt, R=3)
        for p in pairs:
            corr = np.mean([_phi(dep._normal_scores(int((y == c).sum()))[dep._positions(face_p[y == c])],
                                 dep._normal_scores(int((y == c).sum()))[dep._positions(text_p[p[y == c]])])
                            for c in range(7)])
            assert corr == pytest.approx(rho, abs=0.05)


def test_comonotone_pairing_of_ranked_items_gives_the_largest_phi_and_a_smaller_gain():
    per, kv, kt = 60, 30, 40
    val, test = _ranked(0, per, kv, kt), _ranked(1, per, kv, kt)
    res = dep.curve(val, test, weight=0.5, R=8, rhos=(-1, -0.5, 0.5, 1))
    # the Frechet bounds of a 2x2 table with these margins, per class: min(kv, kt) both right at most,
    # max(0, kv + kt - per) at least
    n, sv, st = 7 * per, kv / per, kt / per
    bound = lambda both: (both / per - sv * st) / np.sqrt(sv * (1 - sv) * st * (1 - st))  # noqa: E731
    top, low = _row(res, "copula", 1.0), _row(res, "copula", -1.0)
    assert top["phi"] == pytest.approx(bound(min(kv, kt))) and top["phi_sd"] == pytest.approx(0)
    assert low["phi"] == pytest.approx(bound(max(0, kv + kt - per)))
    assert n == test["y_image"].size
    copula = [r for r in res["rows"] if r["family"] == "copula"]
    assert np.all(np.diff([r["phi"] for r in copula]) > 0)          # phi rises with rho
    indep = _row(res, "copula", 0.0)
    for m in ("fusion", "fusion_best_val"):
        assert top[f"gain_{m}_macro_f1"] < indep[f"gain_{m}_macro_f1"] < low[f"gain_{m}_macro_f1"]
    assert res["branches_unchanged"] and res["branch_scores_max_change"] == 0.0


def test_the_wrong_family_at_one_pairs_every_same_wrong_guess_the_class_allows():
    val, test = _ranked(2, 50, 20, 25), _ranked(3, 50, 20, 25)
    res = dep.curve(val, test, weight=0.5, R=4, rhos=(0.5, 1))
    y, yt = test["y_image"], test["y_text"]
    vpred, tpred = test["p_image"].argmax(1), test["p_text_items"].argmax(1)
    most = sum(min(np.sum((y == c) & (vpred == k)), np.sum((yt == c) & (tpred == k)))
               for c in range(7) for k in range(7) if k != c)
    wrong = [_row(res, "wrong", r) for r in (0.0, 0.5, 1.0)]
    assert wrong[2]["same_wrong"] == pytest.approx(most / y.size)
    assert wrong[0]["same_wrong"] < wrong[1]["same_wrong"] < wrong[2]["same_wrong"]
    assert wrong[2]["same_wrong"] > _row(res, "copula", 1.0)["same_wrong"]
    assert wrong[2]["gain_fusion_macro_f1"] < wrong[0]["gain_fusion_macro_f1"]
    # rho = 0 is one point shared by both families (the same pairs)
    assert _row(res, "copula", 0.0) == {**wrong[0], "family": "copula"}


def test_the_curve_equals_a_direct_computation_on_the_same_pairs():
    val, test = _split(4, 300, 350), _split(5, 400, 450)
    res = dep.curve(val, test, weight=0.4, rule="linear", R=5, seed=7, rhos=(0.6,))
    for family in ("copula", "wrong"):
        pairs = dep.family_pairings(family, 0.6, test["p_image"], test["y_image"], test["p_text_items"],
                                    test["y_text"], seed=7, R=5, stream=1)
        y, vpred = test["y_image"], test["p_image"].argmax(1)
        f1, tf1, phi, same = [], [], [], []
        for p in pairs:
            f1.append(evaluate(y, fuse(test["p_image"], test["p_text_items"][p], 0.4), n_boot=0)["macro_f1"])
            tpred = test["p_text_items"][p].argmax(1)
            tf1.append(evaluate(y, tpred, n_boot=0)["macro_f1"])
            phi.append(_phi(vpred == y, tpred == y))
            same.append(np.mean((vpred == tpred) & (vpred != y)))
        row = _row(res, family, 0.6)
        assert row["fusion_macro_f1"] == pytest.approx(np.mean(f1))
        assert row["fusion_macro_f1_sd"] == pytest.approx(np.std(f1))
        assert row["text_macro_f1"] == pytest.approx(np.mean(tf1))
        assert row["phi"] == pytest.approx(np.mean(phi))
        assert row["same_wrong"] == pytest.approx(np.mean(same))
    assert res["draws"] == 5 and "sd over the draws" in res["spread"]


def test_stored_pairs_are_placed_on_the_curve():
    val, test = _split(6, 300, 300), _split(7, 400, 400)
    for d, seed in ((val, 1), (test, 2)):
        d["pairs"] = make_pairs(d["y_image"], d["y_text"], seed)
    res = dep.curve(val, test, R=4, rhos=(0.5, 1), stored=True)
    s = res["stored_pairs"]
    y, tpred = test["y_image"], test["p_text_items"].argmax(1)[test["pairs"]]
    assert s["phi"] == pytest.approx(_phi(test["p_image"].argmax(1) == y, tpred == y))
    assert set(s["curve_at_same_phi"]) == {"copula", "wrong"}
    with pytest.raises(InputError, match="stored=True .* val or test has none"):
        dep.curve({k: v for k, v in val.items() if k != "pairs"}, test, R=2, stored=True)


@pytest.mark.parametrize("family, rho, message", [
    ("twins", 0.5, "unknown dependence family 'twins'"),
    ("wrong", -0.5, r"rho = -0.5 for family 'wrong': use a number in \[0, 1\]"),
    ("copula", 1.5, r"rho = 1.5 for family 'copula': use a number in \[-1, 1\]"),
    ("copula", True, "rho = True"),
])
def test_bad_family_or_rho_is_one_clear_error(family, rho, message):
    d = _split(8, 50, 50)
    with pytest.raises(InputError, match=message):
        dep.family_pairings(family, rho, d["p_image"], d["y_image"], d["p_text_items"], d["y_text"])


def _graded(seed, n_faces, n_texts):
    """Per-item outputs whose classes differ in difficulty for *both* branches (class 0 hardest, class 6
    easiest): pooled phi then mixes the class mix in, phi within class does not."""
    rng = np.random.default_rng(seed)
    out = {}
    for side, n, scale in (("image", n_faces, 1.0), ("text", n_texts, 1.2)):
        y = rng.integers(0, 7, n)
        z = rng.normal(size=(n, 7))
        z[np.arange(n), y] += scale * np.linspace(-0.5, 4.0, 7)[y]
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        out.update({f"y_{side}": y, ("p_image" if side == "image" else "p_text_items"): p})
    return out


def _within(y, a, b):
    """phi within class, directly: the correlation of the two indicators with each class's means removed."""
    a, b = a.astype(float), b.astype(float)
    da = a - np.array([a[y == c].mean() for c in y])
    db = b - np.array([b[y == c].mean() for c in y])
    return (da * db).sum() / np.sqrt((da * da).sum() * (db * db).sum())


def test_the_crossing_and_the_x_axis_are_phi_within_class_not_pooled_phi():
    """Review of issue 21, finding 2: at rho = 0 pooled phi is well above 0 on a run whose classes differ in
    difficulty (the class mix, not the pairing), phi within class is about 0."""
    res = dep.curve(_graded(10, 1500, 1800), _graded(11, 1500, 1800), weight=0.5, R=16, rhos=(0.5,))
    zero = _row(res, "copula", 0.0)        # one draw's phi within class has an sd of ~0.035 here
    assert zero["phi"] > 0.3 and abs(zero["phi_within"]) < 0.04
    rows = [{"rho": 0.0, "phi": 0.2, "phi_within": 0.0, "g": 0.04},
            {"rho": 0.5, "phi": 0.4, "phi_within": 0.2, "g": -0.04}]
    assert dep._crossing(rows, "g") == {"crosses": True, "rho": 0.25, "phi_within": pytest.approx(0.1)}
    assert dep._crossing(rows[:1], "g") == {"crosses": False, "rho": None, "phi_within": None, "smallest": 0.04,
                                            "at_rho": 0.0}


def test_phi_within_class_skips_classes_with_no_test_faces():
    """Finding 7: a class without faces added 0/0 to the within-class sums, so phi within class was None."""
    val, test = _split(12, 300, 300), _split(13, 400, 300)
    for d in (val, test):        # only two emotions in the faces; texts of every class
        d["y_image"] = d["y_image"] % 2
    res = dep.curve(val, test, weight=0.5, R=3, rhos=(0.6,))
    pairs = dep.family_pairings("copula", 0.6, test["p_image"], test["y_image"], test["p_text_items"],
                                test["y_text"], R=3, stream=1)
    y, vright = test["y_image"], test["p_image"].argmax(1) == test["y_image"]
    want = np.mean([_within(y, vright, test["p_text_items"][p].argmax(1) == y) for p in pairs])
    assert _row(res, "copula", 0.6)["phi_within"] == pytest.approx(want)


def test_a_point_beyond_the_curve_is_not_read_off_its_end():
    """Finding 6: np.interp clamps, so stored pairs with a phi the curve never reached got its end value."""
    rows = [{"phi_within": x, "g": g} for x, g in ((0.4, 0.01), (0.0, 0.03), (0.2, 0.02), (None, 0.5))]
    assert dep._at_phi(rows, 0.1, "g") == pytest.approx(0.025)
    assert dep._at_phi(rows, 0.4, "g") == pytest.approx(0.01)
    for phi in (0.5, -0.1, None):
        assert dep._at_phi(rows, phi, "g") is None
    beyond = {"phi_within_range": [0.0, 0.4], "gain_fusion_best_val_macro_f1": None}
    assert dep._on_curve(beyond) == "beyond the curve (it reached 0.000 to 0.400)"
    assert dep._on_curve({**beyond, "gain_fusion_best_val_macro_f1": 0.025}) == "+2.5"


def test_stored_pairs_far_from_the_curve_say_so():
    val, test = _split(6, 300, 300), _split(7, 400, 400)
    for d, seed in ((val, 1), (test, 2)):
        d["pairs"] = make_pairs(d["y_image"], d["y_text"], seed)
    # the stored test pairs: the most dependent pairing there is, beyond anything the wrong family reaches
    test["pairs"] = dep.family_pairings("copula", 1.0, test["p_image"], test["y_image"], test["p_text_items"],
                                        test["y_text"], R=1)[0]
    res = dep.curve(val, test, R=3, rhos=(0.0,), stored=True)
    wrong = res["stored_pairs"]["curve_at_same_phi"]["wrong"]
    assert res["stored_pairs"]["phi_within"] > wrong["phi_within_range"][1]
    assert wrong["gain_fusion_best_val_macro_f1"] is None and wrong["gain_fusion_macro_f1"] is None
    assert "wrong beyond the curve (it reached" in dep.curve_summary(res)
    assert "need not agree" in dep.curve_summary(res)       # finding 8: rho = 0 is not the headline
