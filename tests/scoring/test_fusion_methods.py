"""The fusion-method registry and its comparison (issue 30), on synthetic items with a known answer."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from emotion_fusion.errors import InputError
from emotion_fusion.scoring import compare as cmp
from emotion_fusion.scoring import registry
from emotion_fusion.scoring.fusion import grid_labels
from emotion_fusion.scoring.catalog import available_methods, get_methods
from emotion_fusion.scoring.registry import Fitted, Items, register_fusion

K = 7
PRIOR = np.array([0.3, 0.06, 0.08, 0.22, 0.14, 0.1, 0.1])


def _posterior(x: np.ndarray, sep: float, var: float, prior: np.ndarray) -> np.ndarray:
    """p(y | x) for x ~ N(sep e_y, var I) and prior `prior`: exactly calibrated."""
    logl = -((x[:, None, :] - sep * np.eye(K)[None]) ** 2).sum(-1) / (2 * var) + np.log(prior)
    p = np.exp(logl - logl.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def independent_items(rng, n_faces: int, n_texts: int, sep=(1.3, 1.1)) -> tuple[Items, np.ndarray, np.ndarray]:
    """Faces and texts drawn independently given the class, each branch's probabilities the exact posterior
    of its own signal: conditionally independent and calibrated. Also the signals' log-likelihoods."""
    yv, yt = rng.choice(K, n_faces, p=PRIOR), rng.choice(K, n_texts, p=PRIOR)
    xv = sep[0] * np.eye(K)[yv] + rng.normal(size=(n_faces, K))
    xt = sep[1] * np.eye(K)[yt] + rng.normal(size=(n_texts, K))
    pv, pt = _posterior(xv, sep[0], 1.0, PRIOR), _posterior(xt, sep[1], 1.0, PRIOR)
    ev = np.hstack([xv, rng.normal(size=(n_faces, 9))]).astype(np.float16)     # "embeddings": the signal + noise
    et = np.hstack([xt, rng.normal(size=(n_texts, 5))]).astype(np.float16)
    return Items(pv, yv, pt, yt, ev, et), np.log(pv) - np.log(PRIOR), np.log(pt) - np.log(PRIOR)


def test_unknown_method_lists_the_valid_ones_and_a_bad_entry_is_refused():
    names = available_methods()
    assert names[:8] == ["linear", "loglinear", "product_prior", "stacking", "per_class", "gated", "attention", "early"]
    with pytest.raises(InputError, match=r"unknown fusion method\(s\) \['nope'\]; choose from: linear, loglinear"):
        get_methods(["linear", "nope"])
    with pytest.raises(InputError, match="name one method twice"):
        get_methods(["linear", "linear"])
    with pytest.raises(InputError, match="already registered"):
        register_fusion("linear", label="again")(lambda *a: None)
    with pytest.raises(InputError, match=r"needs \['pictures'\]; choose from probabilities, embeddings"):
        register_fusion("x1", label="x", needs=("pictures",))
    with pytest.raises(InputError, match="Fitted.space 'odds'"):
        Fitted(face=np.asarray, text=np.asarray, combine=np.add, space="odds")


def test_every_method_scores_a_grid_as_it_scores_aligned_pairs(rng):
    """The face part / text part / combine split: a class block's grid equals the same pairs one by one;
    linear and loglinear equal fusion.grid_labels at their fitted weight."""
    items, _, _ = independent_items(rng, 300, 260)
    draws = cmp.draw_pairings(items.yv, items.yt, 0, 8)
    blocks = cmp._check_blocks(items, "test")
    for m in get_methods():
        fitted = m.fit(items, draws, m.settings[-1], 0)
        grids = cmp._grid_labels(fitted, items, blocks)
        for (c, f, t), g in zip(blocks, grids):
            faces, texts = np.repeat(f, t.size), np.tile(t, f.size)
            one = fitted.combine(fitted.face(items)[faces], fitted.text(items)[texts]).argmax(-1)
            assert np.array_equal(g.ravel(), one), (m.name, c)
        logp = fitted.log_proba(fitted.combine(fitted.face(items)[:5], fitted.text(items)[:5]))
        assert np.allclose(np.exp(logp).sum(1), 1.0), m.name
        if m.name in ("linear", "loglinear"):
            w = fitted.params["weight"]
            for (c, f, t), g in zip(blocks, grids):
                assert np.array_equal(g, grid_labels(items.pv[f], items.pt[t], w, m.name)), m.name


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_independent_calibrated_branches_product_prior_is_bayes_and_nothing_learned_beats_it(rng):
    val, _, _ = independent_items(rng, 1400, 1500)
    test, lv, lt = independent_items(rng, 1400, 1500)
    res = cmp.compare(val, test, get_methods(), seed=0, B=200, R=40, dependence=False, reference="product_prior",
                      progress=False)
    rows = {r["method"]: r for r in res["methods"]}
    # the Bayes decision of every same-class test pair, from the generating likelihoods and the true prior
    blocks = cmp._check_blocks(test, "test")
    hits = [((lv[f][:, None, :] + lt[t][None] + np.log(PRIOR)).argmax(-1) == c) for c, f, t in blocks]
    bayes = sum(h.mean() * f.size for h, (_, f, _) in zip(hits, blocks)) / test.yv.size
    assert abs(rows["product_prior"]["accuracy"] - bayes) < 0.005
    for name, r in rows.items():
        if name != "product_prior":      # never better than the interval of the difference allows
            assert r["vs_reference"]["accuracy"]["ci"][0] <= 0 and r["vs_reference"]["macro_f1"]["ci"][0] <= 0, name
    assert all("p_holm" in r["vs_better_branch"]["macro_f1"] for r in rows.values())
    assert rows["product_prior"]["vs_better_branch"]["macro_f1"]["mean_diff"] > 0.05   # fusion pays here


def dependent_items(rng, n: int) -> Items:
    """Each text is written from its face's own signal (text j of face j: x_j + small noise), so the two
    branches carry the same evidence: the product counts it twice against the prior."""
    y = rng.choice(K, n, p=PRIOR)
    x = 0.9 * np.eye(K)[y] + rng.normal(size=(n, K))
    xt = x + 0.2 * rng.normal(size=(n, K))
    pv, pt = _posterior(x, 0.9, 1.0, PRIOR), _posterior(xt, 0.9, 1.04, PRIOR)
    return Items(pv, y, pt, y.copy(), x.astype(np.float16), xt.astype(np.float16))


def test_under_dependence_a_method_fitted_on_dependent_pairs_beats_product_prior(rng):
    val, test = dependent_items(rng, 4000), dependent_items(rng, 4000)
    own = np.arange(4000)[None]           # the dependent pairing: face i with the text written from it
    acc = {}
    for m in get_methods(["product_prior", "stacking", "per_class", "loglinear"]):
        fitted = m.fit(val, own, m.settings[0], 0)
        acc[m.name] = float((cmp._pair_labels(fitted, test, own)[0] == test.yv).mean())
    assert acc["stacking"] > acc["product_prior"] + 0.01, acc
    assert acc["loglinear"] > acc["product_prior"] + 0.01, acc


@contextlib.contextmanager
def toy_method(name: str, record: list | None = None):
    """A registered toy method (the more confident branch alone) while the block runs; `record` receives
    every Items object it is fitted on."""
    @register_fusion(name, label="the more confident branch alone", settings=({"s": 1}, {"s": 2}))
    def fit(items, draws, settings, seed):
        if record is not None:
            record.append((items, draws))
        return Fitted(face=lambda it: it.pv, text=lambda it: it.pt, space="prob",
                      combine=lambda a, b: np.where(a.max(-1, keepdims=True) >= b.max(-1, keepdims=True), a, b))
    try:
        yield
    finally:
        registry.METHODS.pop(name, None)


def test_a_registered_toy_method_is_compared_and_fitted_on_validation_only(rng):
    val, _, _ = independent_items(rng, 300, 320)
    test, _, _ = independent_items(rng, 300, 320)
    seen = []
    with toy_method("toy_max", seen):
        res = cmp.compare(val, test, get_methods(["loglinear", "toy_max"]), seed=3, B=50, R=10, progress=False)
    toy = next(r for r in res["methods"] if r["method"] == "toy_max")
    assert toy["label"] == "the more confident branch alone" and toy["vs_reference"] is not None
    assert len(toy["cross_fit_macro_f1"]) == 2 and toy["settings"] in ({"s": 1}, {"s": 2})
    assert {r["method"] for r in res["dependence"]["rows"]} == {"loglinear", "toy_max"}
    test_rows = {a.tobytes() for a in test.pv}
    val_rows = {a.tobytes() for a in val.pv}
    assert len(seen) == 3 * 2 + 1 + 4        # 3 folds x 2 settings, the fit on all of val, 4 dependent refits
    for items, draws in seen:
        assert {a.tobytes() for a in items.pv} <= val_rows and not {a.tobytes() for a in items.pv} & test_rows
        assert draws.shape[1] == items.yv.size and (items.yt[draws] == items.yv).all()
    # cross-fitting: no face and no text of a fold's check in that fold's fit
    folds = seen[:3]
    for items, _ in folds:
        assert 0.55 < items.yv.size / val.yv.size < 0.75 and 0.55 < items.yt.size / val.yt.size < 0.75
    faces = [{a.tobytes() for a in it.pv} for it, _ in folds]
    assert all(len(faces[i] | faces[j]) == val.yv.size for i in range(3) for j in range(i + 1, 3))


def test_dependence_rows_cover_every_family_rho_and_fit(rng):
    val, _, _ = independent_items(rng, 250, 280)
    test, _, _ = independent_items(rng, 250, 280)
    res = cmp.compare(val, test, get_methods(["loglinear", "product_prior"]), seed=0, B=30, R=10, dep_draws=6,
                      progress=False)
    dep = res["dependence"]
    keys = {(d["family"], d["rho"], d["method"], d["fitted_on"]) for d in dep["rows"]}
    for fam in ("copula", "wrong"):
        for m in ("loglinear", "product_prior"):
            assert (fam, 0.0, m, "independent") in keys and (fam, 0.0, m, "same dependence") not in keys
            assert {(fam, r, m, f) for r in (0.5, 1.0) for f in ("independent", "same dependence")} <= keys
    zero = [d for d in dep["rows"] if d["rho"] == 0 and d["method"] == "product_prior"]
    assert zero[0]["gain_macro_f1"] == zero[1]["gain_macro_f1"]    # both families start from the same draws
    wrong1 = next(d for d in dep["rows"] if d["family"] == "wrong" and d["rho"] == 1.0 and
                  d["method"] == "product_prior" and d["fitted_on"] == "independent")
    assert wrong1["gain_macro_f1"] < zero[0]["gain_macro_f1"]      # aligned wrong guesses cost the product rule


def test_cross_fitting_needs_enough_items_per_class():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6])
    p = np.full((y.size, K), 1 / K)
    items = Items(p, y, p, y)
    with pytest.raises(InputError, match="validation has 2 faces of class 'angry', fewer than the 3 cross-fitting folds"):
        cmp.cross_fit(get_methods(["stacking"])[0], items, 0)
