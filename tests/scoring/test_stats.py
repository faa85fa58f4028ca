"""stats: pairing draws, the per-draw sweep, the all-pairs estimand and its crossed interval, the better-branch
comparison, reuse."""
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emotion_fusion import report
from emotion_fusion.data.pairing import make_pairs
from emotion_fusion.errors import InputError
from emotion_fusion.scoring import stats
from emotion_fusion.scoring.fusion import _sweep_preds, _weights, fuse, sweep, sweep_counts
from emotion_fusion.scoring.metrics import evaluate_many, mcnemar


def _probs(rng, y, sharp):
    z = rng.normal(size=(y.size, 7))
    z[np.arange(y.size), y] += sharp
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _split(seed, n_faces, n_texts, visual=1.5, text=1.0):
    rng = np.random.default_rng(seed)
    yi, yt = rng.integers(0, 7, n_faces), rng.integers(0, 7, n_texts)
    return {"p_image": _probs(rng, yi, visual), "y_image": yi,
            "p_text_items": _probs(rng, yt, text), "y_text": yt}


def _row(p0, p1):
    """A 7-class probability row with mass p0 on class 0, p1 on class 1, the rest spread evenly."""
    return [p0, p1] + [(1 - p0 - p1) / 5] * 5


def test_draws_equal_make_pairs_and_reuse_texts_only_when_needed():
    rng = np.random.default_rng(0)
    yi, yt = rng.integers(0, 7, 400), rng.integers(0, 7, 150)
    draws = stats.draw_pairings(yi, yt, seed=3, R=15, stream=1)
    assert draws.shape == (15, 400)
    for r, pairs in enumerate(draws):
        np.testing.assert_array_equal(pairs, make_pairs(yi, yt, stats.draw_seed(3, 1, r)))
        assert (yt[pairs] == yi).all()
        for c in range(7):  # every text of a class is used before any is used twice
            uses = np.bincount(pairs[yi == c], minlength=yt.size)[yt == c]
            assert uses.max() - uses.min() <= 1
    assert len({p.tobytes() for p in draws}) == 15  # the draws differ
    np.testing.assert_array_equal(draws, stats.draw_pairings(yi, yt, seed=3, R=15, stream=1))
    assert not np.array_equal(draws, stats.draw_pairings(yi, yt, seed=3, R=15, stream=0))
    with pytest.raises(InputError, match="class 'disgust' has .* faces but no texts"):
        stats.draw_pairings(np.array([1, 2]), np.array([2, 2]), seed=0, R=2)


@pytest.mark.parametrize("rule", ["linear", "loglinear"])
def test_envelope_sweep_equals_per_weight_argmax_and_picks_like_fusion_sweep(rule):
    val = _split(1, 300, 200, visual=0.8, text=0.8)
    draws = stats.draw_pairings(val["y_image"], val["y_text"], seed=0, R=12)
    weights = _weights(0.01)
    s = {"pv": val["p_image"], "pt": val["p_text_items"], "y": val["y_image"]}
    a, b = (s["pv"], s["pt"]) if rule == "linear" else (np.log(s["pv"]), np.log(s["pt"]))
    counts = sweep_counts(np.broadcast_to(a, (12,) + a.shape), b[draws], s["y"], weights)
    f1 = stats._val_sweep(s, draws, rule)
    for r, pairs in enumerate(draws):
        preds = _sweep_preds(s["pv"], s["pt"][pairs], weights, rule)
        for g in (0, 17, 50, 63, 100):
            ref = np.zeros((7, 7), dtype=np.int64)
            np.add.at(ref, (s["y"], preds[g]), 1)
            np.testing.assert_array_equal(counts[r, g], ref)
        ref = sweep({"p_visual": s["pv"], "p_text": s["pt"][pairs], "y": s["y"]}, rule=rule)
        np.testing.assert_allclose(f1[r], ref["val_macro_f1"], atol=1e-12)


def test_means_are_the_hand_computed_per_draw_scores():
    # Class 0: one face and two texts, T0a (says 0) and T0b (says 1); class 1: one face, one text (says 1).
    # Visual says 0 for both faces. Per draw the class-0 face gets T0a or T0b:
    #   text:         T0a -> preds [0, 1]: accuracy 1,   macro-F1 1;   T0b -> [1, 1]: 1/2, (0 + 2/3) / 2
    #   fusion w=0.7: T0a -> 0.7*.5+.3*.9 > 0.7*.3+.3*.05 and 0.7*.6+.3*.1 > 0.7*.2+.3*.8: [0, 0]
    #                 T0b -> 0.35+.03 < .21+.24: [1, 0]: accuracy 0, macro-F1 0
    #   visual:       [0, 0] every draw: accuracy 1/2, macro-F1 (2/3 + 0) / 2
    split = {"p_image": np.array([_row(.5, .3), _row(.6, .2)]), "y_image": np.array([0, 1]),
             "p_text_items": np.array([_row(.9, .05), _row(.1, .8), _row(.1, .8)]),
             "y_text": np.array([0, 0, 1])}
    res = stats.score_draws(split, split, weight=0.7, R=40, B=20, seed=4)
    draws = stats.draw_pairings(split["y_image"], split["y_text"], seed=4, R=40, stream=1)
    a = draws[:, 0] == 0  # draws that give the class-0 face the right text
    assert 0 < a.sum() < 40
    # macro-F1 is over the 7 canonical classes (metrics.confusion_scores): the per-class F1 sums / 7
    expected = {"visual": (np.full(40, .5), np.full(40, (2 / 3) / 7)),
                "text": (np.where(a, 1, .5), np.where(a, 2 / 7, (2 / 3) / 7)),
                "fusion": (np.where(a, .5, 0), np.where(a, (2 / 3) / 7, 0))}
    # All pairs: the class-0 face meets T0a and T0b once each (weight 1/2), the class-1 face its one text.
    #   text:   confusion [[.5, .5], [0, 1]]: accuracy 3/4, F1 (2 * .5 / 1.5 + 2 / 2.5) / 7
    #   fusion: [[.5, .5], [1, 0]]:           accuracy 1/4, F1 (2 * .5 / 2.5 + 0) / 7
    all_pairs = {"visual": (.5, (2 / 3) / 7), "text": (.75, (2 / 3 + .8) / 7), "fusion": (.25, .4 / 7)}
    rows = {r["model"]: r for r in res["rows"]}
    for model, (acc, f1) in expected.items():
        np.testing.assert_allclose(res["per_draw"][model]["accuracy"], acc)
        np.testing.assert_allclose(res["per_draw"][model]["macro_f1"], f1)
        assert rows[model]["accuracy_draws_mean"] == pytest.approx(acc.mean())
        assert rows[model]["macro_f1_draws_mean"] == pytest.approx(f1.mean())
        assert (rows[model]["accuracy"], rows[model]["macro_f1"]) == pytest.approx(all_pairs[model])


@pytest.mark.parametrize("rule", ["linear", "loglinear"])
def test_all_pairs_value_equals_sklearn_on_every_same_class_pair(rule):
    # The estimand, computed the slow way: every same-class (face, text) pair, weighted 1 / (texts of
    # its class) so that each face counts once; macro-F1 from that weighted confusion matrix.
    val, test = _split(16, 200, 90), _split(17, 150, 260)
    res = stats.score_draws(val, test, weight=0.35, rule=rule, R=4, B=50, seed=2)
    y, yt = test["y_image"], test["y_text"]
    i, j = np.nonzero(y[:, None] == yt[None, :])
    w = 1 / np.bincount(yt, minlength=7)[y[i]]
    pv, pt = test["p_image"][i], test["p_text_items"][j]
    best = res["best_weight"]["weight"]
    preds = {"visual": pv.argmax(1), "text": pt.argmax(1), "fusion": fuse(pv, pt, 0.35, rule).argmax(1),
             "fusion_best_val": fuse(pv, pt, best, rule).argmax(1)}
    for row in res["rows"]:
        p = preds[row["model"]]
        assert row["accuracy"] == pytest.approx(accuracy_score(y[i], p, sample_weight=w), abs=1e-12)
        assert row["macro_f1"] == pytest.approx(f1_score(y[i], p, labels=range(7), average="macro",
                                                         sample_weight=w, zero_division=0), abs=1e-12)
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]


@pytest.mark.parametrize("rule", ["linear", "loglinear"])
def test_per_draw_scores_match_an_independent_sklearn_computation(rule):
    val, test = _split(2, 250, 90), _split(3, 300, 120)
    res = stats.score_draws(val, test, weight=0.4, rule=rule, R=6, B=50, seed=9)
    vd = stats.draw_pairings(val["y_image"], val["y_text"], 9, 6, stream=0)
    td = stats.draw_pairings(test["y_image"], test["y_text"], 9, 6, stream=1)
    y, curves = test["y_image"], []
    for r in range(6):
        sw = sweep({"p_visual": val["p_image"], "p_text": val["p_text_items"][vd[r]], "y": val["y_image"]},
                   rule=rule)
        assert res["best_weight"]["per_draw"][r] == sw["best_weight"]
        curves.append(sw["val_macro_f1"])
    # the one weight used: the best validation macro-F1 averaged over the draws (ties toward 0.6)
    mean = np.mean(curves, axis=0)
    top = np.flatnonzero(mean >= mean.max() - 1e-12)
    best = float(np.round(np.linspace(0, 1, 101), 6)[top[np.abs(top / 100 - 0.6).argmin()]])
    assert res["best_weight"]["weight"] == best
    for r in range(6):
        pt = test["p_text_items"][td[r]]
        preds = {"visual": test["p_image"].argmax(1), "text": pt.argmax(1),
                 "fusion": fuse(test["p_image"], pt, 0.4, rule).argmax(1),
                 "fusion_best_val": fuse(test["p_image"], pt, best, rule).argmax(1)}
        for m, p in preds.items():
            assert res["per_draw"][m]["accuracy"][r] == pytest.approx(accuracy_score(y, p))
            assert res["per_draw"][m]["macro_f1"][r] == pytest.approx(f1_score(y, p, average="macro"))


def _reuse_set(text_right):
    """Two classes of 150 faces (visual right with probability 0.7) and texts whose prediction is right
    where `text_right` (per text, classes 0 then 1): a text is right or wrong for every face it serves."""
    rng = np.random.default_rng(0)
    yi, yt = np.repeat([0, 1], 150), np.repeat([0, 1], len(text_right) // 2)

    def rows(y, right):
        return np.array([_row(.7, .1) if k == 0 else _row(.1, .7) for k in np.where(right, y, 1 - y)])
    return {"p_image": rows(yi, rng.random(yi.size) < .7), "y_image": yi,
            "p_text_items": rows(yt, np.asarray(text_right, dtype=bool)), "y_text": yt}


def test_reused_text_widens_the_text_interval_beyond_the_pair_bootstrap():
    # 3 texts per class, each standing in for 50 faces: the text score rests on 6 texts, not 300 pairs.
    data = _reuse_set([1, 1, 0, 1, 0, 0])
    res = stats.score_draws(data, data, R=50, B=1000, seed=1)
    assert res["text_reuse"]["test"]["angry"]["mean_reuse"] == 50
    w = res["widths"]["text"]["accuracy"]
    assert w["all_pairs"] > 3 * w["single_draw"]
    # Without reuse (every face its own text, texts as many as faces) the two intervals agree.
    fresh = _reuse_set(np.random.default_rng(1).random(300) < .6)
    res = stats.score_draws(fresh, fresh, R=50, B=1000, seed=1)
    for m in ("visual", "text"):
        assert 0.8 < res["widths"][m]["accuracy"]["ratio"] < 1.25


def _population(seed, faces, texts):
    """Per-class pools of faces and texts, each item with its own difficulty (how sharp its true class
    is), and a sampler of test sets drawn from them with replacement: n faces and m texts per class."""
    rng = np.random.default_rng(seed)
    pool = {}
    for side, size, sharp in (("image", faces, 1.2), ("text", texts, 0.8)):
        y = np.repeat(np.arange(7), size)
        z = rng.normal(size=(y.size, 7))
        z[np.arange(y.size), y] += sharp * rng.gamma(2.0, 1.0, y.size)
        pool[side] = (np.exp(z) / np.exp(z).sum(1, keepdims=True), y)

    def sample(rng, n, m):
        out = {}
        for side, k in (("image", n), ("text", m)):
            p, y = pool[side]
            idx = np.concatenate([rng.choice(np.flatnonzero(y == c), k) for c in range(7)])
            out["p_image" if side == "image" else "p_text_items"] = p[idx]
            out["y_image" if side == "image" else "y_text"] = y[idx]
        return out
    return sample


def test_claimed_sd_matches_the_real_sd_of_the_all_pairs_estimate_over_repeated_test_sets():
    # 15 faces and 60 texts per class: a draw pairs each face with one of the 60 texts, so one draw's
    # score (and its pair bootstrap) carries the text noise of 15 texts; the all-pairs estimate that of
    # all 60. The crossed interval must claim (width / 3.92) the all-pairs estimate's real sd within
    # 15%; an interval sized for one draw, or the pair bootstrap, misses it (checked here too).
    sample = _population(0, 300, 1200)
    val = sample(np.random.default_rng(99), 15, 60)
    got = {m: {"est": [], "claimed": [], "one_draw": [], "pair_claimed": []} for m in ("text", "fusion")}
    for k in range(150):
        res = stats.score_draws(val, sample(np.random.default_rng(k), 15, 60), R=2, B=300, seed=k)
        one = {r["model"]: r for r in res["single_draw"]["rows"]}
        for row in res["rows"]:
            if row["model"] in got:
                g = got[row["model"]]
                g["est"].append(row["accuracy"])
                g["claimed"].append(np.subtract(*row["accuracy_ci"][::-1]) / 3.92)
                g["one_draw"].append(res["per_draw"][row["model"]]["accuracy"][0])
                g["pair_claimed"].append(np.subtract(*one[row["model"]]["accuracy_ci"][::-1]) / 3.92)
    for model, g in got.items():
        real = np.std(g["est"], ddof=1)
        assert 0.85 < np.mean(g["claimed"]) / real < 1.15, model
        assert np.std(g["one_draw"], ddof=1) / real > 1.15, model
        assert not 0.85 < np.mean(g["pair_claimed"]) / real < 1.15, model


def test_better_branch_is_chosen_on_validation_not_test():
    # Validation: text much better than visual. Test: the reverse. The comparison must subtract text.
    val, test = _split(5, 400, 300, visual=0.2, text=3.0), _split(6, 400, 300, visual=3.0, text=0.2)
    res = stats.score_draws(val, test, weight=0.5, R=10, B=200, seed=0)
    assert res["per_draw"]["val_macro_f1"]["text"] > res["per_draw"]["val_macro_f1"]["visual"]
    comp = res["comparison"]["fusion"]
    assert comp["better_branch"] == "text"
    rows = {r["model"]: r for r in res["rows"]}
    assert comp["macro_f1"]["mean_diff"] == pytest.approx(rows["fusion"]["macro_f1"] - rows["text"]["macro_f1"])
    assert comp["macro_f1"]["ci"][0] > 0 and comp["macro_f1"]["p_value"] == pytest.approx(2 / 201)


def test_fusion_at_weight_one_equals_visual_so_the_difference_is_exactly_zero():
    val, test = _split(7, 300, 200, visual=2.0, text=0.3), _split(8, 300, 200, visual=2.0, text=0.3)
    comp = stats.score_draws(val, test, weight=1.0, R=8, B=200)["comparison"]["fusion"]
    assert comp["better_branch"] == "visual"
    assert comp["accuracy"] == {"mean_diff": 0.0, "ci": [0.0, 0.0], "p_value": 1.0}


def test_single_draw_uses_given_pairs_pair_bootstrap_and_mcnemar():
    val, test = _split(10, 200, 150), _split(11, 250, 160)
    test["pairs"] = make_pairs(test["y_image"], test["y_text"], seed=2)
    val["pairs"] = make_pairs(val["y_image"], val["y_text"], seed=1)
    res = stats.score_draws(val, test, weight=0.6, R=5, B=300, seed=3)
    one = res["single_draw"]
    v = {"p_visual": val["p_image"], "p_text": val["p_text_items"][val["pairs"]], "y": val["y_image"]}
    assert one["pairs"] == "given" and one["best_weight"] == sweep(v)["best_weight"]
    pt = test["p_text_items"][test["pairs"]]
    preds = {"visual": test["p_image"], "text": pt, "fusion": fuse(test["p_image"], pt, 0.6),
             "fusion_best_val": fuse(test["p_image"], pt, one["best_weight"])}
    ref = evaluate_many(test["y_image"], preds, n_boot=300, seed=3)
    for row in one["rows"]:
        assert {k: row[k] for k in ref[row["model"]]} == ref[row["model"]]
    mc = {(m["model_a"], m["model_b"]): m for m in one["mcnemar"]}
    assert mc["fusion", "text"]["pvalue"] == mcnemar(test["y_image"], preds["fusion"], preds["text"])["pvalue"]
    assert set(mc) == {(a, b) for a in ("fusion", "fusion_best_val") for b in ("visual", "text")}


def _matched(seed, n):
    """A split built like the seed protocol's: n faces, n texts, face i paired with text i (same class)."""
    d = _split(seed, n, n)
    d["y_text"] = d["y_image"].copy()
    d["pairs"] = np.arange(n)
    return d


def test_fixed_pairing_scores_the_stored_pairs_only():
    val, test = _matched(20, 300), _matched(21, 400)
    res = stats.score_draws(val, test, weight=0.6, R=50, B=300, seed=4, pairing="fixed")
    assert res["draws"] == 1 and res["pairing"] == "fixed"
    pt = test["p_text_items"]                     # pairs = identity: text i goes with face i
    fused = fuse(test["p_image"], pt, 0.6).argmax(1)
    rows = {r["model"]: r for r in res["rows"]}
    assert rows["fusion"]["accuracy"] == accuracy_score(test["y_image"], fused)
    assert rows["text"]["macro_f1"] == pytest.approx(f1_score(test["y_image"], pt.argmax(1), average="macro",
                                                              labels=range(7), zero_division=0))
    # the stored pairs are also the single draw: same point estimates in both tables
    for r in res["single_draw"]["rows"]:
        assert r["accuracy"] == rows[r["model"]]["accuracy"]
    lo, hi = rows["fusion"]["accuracy_ci"]
    assert lo < rows["fusion"]["accuracy"] < hi                 # a real interval around that one pairing
    assert res["text_reuse"]["test"]["all"]["max_reuse"] == 1
    text = report.format_draws(res)
    assert "the protocol's own pairs (fixed, not redrawn)" in text and "McNemar on these pairs" in text
    assert "minus the better branch on validation (visual):" in text or \
        "minus the better branch on validation (text):" in text
    with pytest.raises(InputError, match="pairing='fixed' scores the stored pairs"):
        stats.score_draws({k: v for k, v in val.items() if k != "pairs"}, test, pairing="fixed")
    with pytest.raises(InputError, match="unknown pairing 'hungarian'; choose one of random, fixed"):
        stats.score_draws(val, test, pairing="hungarian")


def test_deterministic_with_a_seed_and_json_able():
    val, test = _split(12, 200, 100), _split(13, 220, 100)
    a, b = (json.dumps(stats.score_draws(val, test, R=10, B=100, seed=5)) for _ in range(2))
    assert a == b
    c = json.loads(json.dumps(stats.score_draws(val, test, R=10, B=100, seed=6)))
    assert c["per_draw"] != json.loads(a)["per_draw"]
    text = report.format_draws(c)
    assert "Text only" in text and "minus the better branch" in text and "fear" in text
    assert "(crossed two-way bootstrap p)" in text
    c["comparison"]["fusion"]["accuracy"]["p_value"] = 2 / 101     # k = 0 of B = 100: the floor, a bound
    assert "p ≤ 0.02" in report.format_draws(c)


def test_text_reuse_on_a_hand_built_pairing():
    out = stats.text_reuse(np.array([0, 0, 1, 2, 3]), np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 1]))
    assert out["angry"] == {"faces": 3, "texts_in_pool": 2, "texts_used": 2, "mean_reuse": 1.5, "max_reuse": 2}
    assert out["disgust"] == {"faces": 2, "texts_in_pool": 3, "texts_used": 2, "mean_reuse": 1.0,
                              "max_reuse": 1}
    assert out["all"] == {"faces": 5, "texts_in_pool": 5, "texts_used": 4, "mean_reuse": 1.25, "max_reuse": 2}


def test_bad_input_is_one_line_error():
    val, test = _split(14, 50, 40), _split(15, 50, 40)
    with pytest.raises(InputError, match=r"val data lacks \['y_text'\]"):
        stats.score_draws({k: v for k, v in val.items() if k != "y_text"}, test)
    bad = dict(test, pairs=np.zeros(50, dtype=int))
    with pytest.raises(InputError, match="test pairs must hold one same-label text index"):
        stats.score_draws(val, bad)
    with pytest.raises(InputError, match="class 'angry' has 2 faces but no texts"):
        stats.all_pairs(stats._check_split(dict(test, y_image=np.r_[0, 0, np.ones(48, int)],
                                                    y_text=np.ones(40, int)), "test"), {"visual": None}, "linear")
    with pytest.raises(InputError, match="outside"):
        stats.score_draws(val, test, weight=1.5)


def test_import_stays_light():
    code = ("import sys, emotion_fusion.scoring.stats; "
            "print([m for m in ('torch', 'sklearn', 'scipy', 'statsmodels', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_weight_shared_by_both_fusion_rows_is_labelled_once(monkeypatch):
    """Review finding 9: `setdefault` built the second row's grid before finding the first's."""
    calls = []
    real = stats.grid_labels
    monkeypatch.setattr(stats, "grid_labels", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    s = stats._check_split(_split(0, 200, 150), "test")
    point, _ = stats.all_pairs(s, {"visual": None, "fusion": 0.4, "fusion_best_val": 0.4}, "linear")
    assert calls == [0.4] * len(np.unique(s["y"]))        # one grid per class block, not two
    assert point["fusion"] is not None and point["fusion_best_val"] is not None
