"""ef.compare_fusion(run_dir) and the `compare` CLI verb: from the cache, the headline's own numbers, no torch."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import emotion_fusion as ef
from emotion_fusion.config import Config
from emotion_fusion.errors import InputError
from emotion_fusion.runs import verify

PROB_METHODS = ["linear", "loglinear", "product_prior", "stacking", "per_class", "gated"]


def _compare(repo, *args) -> subprocess.CompletedProcess:
    """`python -m emotion_fusion compare ...` in a fresh interpreter that must not import torch."""
    code = (f"import sys; from emotion_fusion.cli import main; rc = main({['compare', *map(str, args)]!r}); "
            "assert 'torch' not in sys.modules, 'imported torch'; sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("rule", ["linear", "loglinear"])
def test_todays_rule_in_the_comparison_is_the_headlines_best_validation_row(fake_run, rule):
    """Same estimand, same weight, same resamples: the comparison's row for the run's own rule, and both
    branches, are the headline's numbers exactly."""
    cfg = {**Config.from_profile("smoke").to_dict(), "fusion_rule": rule, "n_boot": 60, "pairing_draws": 12}
    d = fake_run(config=cfg)
    head = ef.score_run(d, draws=None)["draws"]
    res = ef.compare_fusion(d, [rule, "product_prior"], progress=False).results
    row = next(r for r in res["methods"] if r["method"] == rule)
    best = next(r for r in head["rows"] if r["model"] == "fusion_best_val")
    assert row["params"]["weight"] == head["best_weight"]["weight"] == best["weight"]
    for k in ("accuracy", "macro_f1", "accuracy_ci", "macro_f1_ci"):
        assert row[k] == best[k], k
    for b in res["branches"]:
        h = next(r for r in head["rows"] if r["model"] == b["model"])
        assert (b["accuracy"], b["macro_f1_ci"]) == (h["accuracy"], h["macro_f1_ci"])
    cmp_head = head["comparison"]["fusion_best_val"]["macro_f1"]
    assert row["vs_better_branch"]["macro_f1"]["ci"] == cmp_head["ci"]
    assert row["vs_better_branch"]["macro_f1"]["p_value"] == cmp_head["p_value"]
    assert res["better_branch"] == head["comparison"]["fusion_best_val"]["better_branch"]


def test_the_table_figure_and_summary_say_what_each_number_is(fake_run):
    cfg = {**Config.from_profile("smoke").to_dict(), "n_boot": 50, "pairing_draws": 10}
    cmp = ef.compare_fusion(fake_run(config=cfg), PROB_METHODS, progress=False)
    t = cmp.table()
    assert list(t.df.index) == ["visual branch", "text branch", *PROB_METHODS]
    assert "95% crossed two-way intervals (50 shared resamples)" in t.title and "Holm" in t.note
    assert t.df.loc["loglinear", "macro-F1 - loglinear (points)"] != t.df.loc["linear", "macro-F1 - loglinear (points)"]
    dep = cmp.dependence_table()
    assert list(dep.df.index) == PROB_METHODS
    assert "copula rho=1, re-fitted" in dep.df.columns and "wrong rho=0" in dep.df.columns
    fig = cmp.plot()
    assert len(fig.axes) == 3 and "product_prior:" in repr(fig)
    s = cmp.summary()
    assert s.startswith("Highest test macro-F1: ") and "Against loglinear at its validation weight" in s
    assert "copula dependence at rho = 1: product_prior" in s


def test_cli_json_writes_the_plot_without_torch_and_errors_are_one_line(fake_run, repo):
    cfg = {**Config.from_profile("smoke").to_dict(), "n_boot": 40, "pairing_draws": 8}
    d = fake_run(config=cfg)
    p = _compare(repo, "--run-dir", d, "--methods", "linear,product_prior", "stacking", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert [r["method"] for r in res["methods"]] == ["linear", "product_prior", "stacking"]
    assert res["plot"] == str(d / "compare.png") and (d / "compare.png").stat().st_size > 1000
    assert verify(d)       # the plot sits beside the cache; the manifest still holds
    p = _compare(repo, "--run-dir", d, "--methods", "nope")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "unknown fusion method(s) ['nope']; choose from: linear, loglinear, product_prior" in p.stderr
    # a method on embeddings, on a dir without per-branch caches: says so, in one line
    p = _compare(repo, "--run-dir", d, "--methods", "early", "--no-dependence")
    assert p.returncode == 2 and "has no cached image embeddings" in p.stderr and p.stderr.count("\n") == 1


def test_a_seed_protocol_run_is_refused_with_the_reason(fake_run):
    cfg = {**Config.from_profile("smoke").to_dict(), "protocol": "seed"}
    with pytest.raises(InputError, match="protocol=seed builds its own pairs"):
        ef.compare_fusion(fake_run(config=cfg), ["linear"], progress=False)


def test_embedding_methods_read_the_branch_cache_in_item_order(fake_run, monkeypatch):
    """early / attention get the cached embeddings lined up with outputs' items; a mismatch is refused."""
    from emotion_fusion import comparison
    cfg = {**Config.from_profile("smoke").to_dict(), "n_boot": 30, "pairing_draws": 8}
    d = fake_run(config=cfg)
    data = {s: ef.load_outputs(d, s) for s in ("val", "test")}
    rng = np.random.default_rng(0)

    def fake_embeddings(run_dir, split, verified=False):
        o = data[split]
        return {"image": (np.eye(7)[o["y_image"]] * 2 + rng.normal(size=(len(o["y_image"]), 7))).astype(np.float16),
                "text": (np.eye(7)[o["y_text"]] * 2 + rng.normal(size=(len(o["y_text"]), 7))).astype(np.float16),
                "y_image": o["y_image"], "y_text": o["y_text"]}
    monkeypatch.setattr(comparison, "load_embeddings", fake_embeddings)
    res = ef.compare_fusion(d, ["early", "attention"], dependence=False, progress=False).results
    early = next(r for r in res["methods"] if r["method"] == "early")
    assert early["macro_f1"] > 0.5 and len(early["cross_fit_macro_f1"]) == 2
    monkeypatch.setattr(comparison, "load_embeddings", lambda *a, **k: {**fake_embeddings(*a, **k),
                                                                         "y_text": np.zeros(450, dtype=np.int64)})
    with pytest.raises(InputError, match="cached text embeddings of 'val' do not line up with outputs/val.npz"):
        ef.compare_fusion(d, ["early"], dependence=False, progress=False)
