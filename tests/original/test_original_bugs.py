"""The original's two bugs, shown: the raw-cosine text head and the last-epoch weights (numpy only, no
CLIP). Counts and scores are recomputed here by hand (exp/normalise, argmax, sklearn's F1), not through
the package's fuse/metrics, and compared exactly."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import f1_score

from emotion_fusion.errors import InputError


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _by_hand(y, pred) -> dict:
    return {"accuracy": float(np.mean(y == pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(7), zero_division=0))}


def test_seed_raw_head_is_a_softmax_over_raw_cosines():
    from emotion_fusion.branches.heads import seed_raw_head
    rng = np.random.default_rng(0)
    prompts, emb = rng.normal(size=(7, 16)), rng.normal(size=(20, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    head = seed_raw_head(prompts * 3.0, model_label="fake")
    assert head.kind == "seed_raw" and head.scale == 1.0
    assert head.info["prompts"][0] == "a person feeling angry" and len(head.info["prompts"]) == 7
    cos = emb @ (prompts / np.linalg.norm(prompts, axis=1, keepdims=True)).T
    assert np.allclose(head.predict_proba(emb), softmax(cos, axis=1), atol=1e-6)
    with pytest.raises(InputError, match=r"shape \(7, D\); got \(6, 16\)"):
        seed_raw_head(prompts[:6])


def test_bug_table_raw_head_fusion_equals_visual():
    from emotion_fusion.original.bugs import bug_table, bug_table_frame
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 7, n)
    logits_v = rng.normal(size=(n, 7)) * 1.5
    logits_v[np.arange(n), y] += 1.0
    p_visual = softmax(logits_v, axis=1)
    raw_cos = 0.2 + rng.uniform(-0.03, 0.03, size=(n, 7))          # what CLIP cosines look like
    raw_cos[np.arange(n), y] += 0.01
    logits_t = rng.normal(size=(n, 7)) * 2.0
    logits_t[np.arange(n), y] += 2.5
    p_cal = softmax(logits_t, axis=1)
    table = bug_table(p_visual, p_cal, y, raw_cosines=raw_cos)
    raw, cal = table["heads"]["seed_raw"], table["heads"]["calibrated"]
    assert raw["text_top_prob_mean"] < 1 / 7 + 0.01                  # near-uniform
    visual_pred = p_visual.argmax(1)
    for head, p_text in (("seed_raw", _softmax(raw_cos)), ("calibrated", p_cal)):
        fused_pred = (0.6 * p_visual + 0.4 * p_text).argmax(1)
        h = table["heads"][head]
        assert h["fused_differs_from_visual"] == int((fused_pred != visual_pred).sum())
        assert h["fused"]["accuracy"] == pytest.approx(_by_hand(y, fused_pred)["accuracy"], abs=1e-12)
        assert h["fused"]["macro_f1"] == pytest.approx(_by_hand(y, fused_pred)["macro_f1"], abs=1e-12)
        assert h["text"] == pytest.approx(_by_hand(y, p_text.argmax(1)), abs=1e-12)
    assert table["visual"] == pytest.approx(_by_hand(y, visual_pred), abs=1e-12)
    assert raw["fused_differs_from_visual"] < 0.02 * n < 0.1 * n < cal["fused_differs_from_visual"]
    # and only where the visual top-2 margin is smaller than the raw head's whole spread can shift it
    p_raw = softmax(raw_cos, axis=1)
    top2 = np.sort(p_visual, axis=1)[:, -2:]
    flipped = (0.6 * p_visual + 0.4 * p_raw).argmax(1) != p_visual.argmax(1)
    assert np.all(0.6 * (top2[flipped, 1] - top2[flipped, 0]) < 0.4 * np.ptp(p_raw[flipped], axis=1))
    same = bug_table(p_visual, p_cal, y, p_text_raw=softmax(raw_cos, axis=1))
    assert same == table
    shown = bug_table_frame(table)
    frame = shown.df
    assert frame.shape == (5, 4) and frame.attrs["n_pairs"] == n and shown.note.startswith("2,000 pairs;")
    assert frame.loc[("raw cosines (original)", "fused 0.6·visual + 0.4·text"), "pairs fused ≠ visual"] == \
        str(raw["fused_differs_from_visual"])
    assert frame.loc[("raw cosines (original)", "text alone"), "mean top prob %"] == f"{100 * raw['text_top_prob_mean']:.1f}"
    assert frame.loc[("—", "visual alone"), "mean top prob %"] == "" == frame.loc[("—", "visual alone"), "pairs fused ≠ visual"]
    assert not re.search(r"\d\.\d{2,}", shown.to_text())       # percent with one decimal, counts as integers
    with pytest.raises(InputError, match="exactly one of raw_cosines= or p_text_raw="):
        bug_table(p_visual, p_cal, y)
    with pytest.raises(InputError, match="p_text_calibrated has 3 rows but p_visual has 2000"):
        bug_table(p_visual, p_cal[:3], y, raw_cosines=raw_cos)


def test_epoch_table_scores_both_sets_of_weights_of_one_run():
    from emotion_fusion.original.bugs import epoch_table, epoch_table_frame
    rng = np.random.default_rng(1)
    n = 500
    y = rng.integers(0, 7, n)
    p_best, p_last, p_text = (_softmax(rng.normal(size=(n, 7)) * s) for s in (1.0, 2.0, 0.05))
    p_last[np.arange(n), y] += 0.5                                 # the last epoch is the better one here
    p_last /= p_last.sum(axis=1, keepdims=True)
    table = epoch_table(p_best, p_last, p_text, y, best_epoch=3, last_epoch=8, scored="last")
    for name, p in (("best", p_best), ("last", p_last)):
        t = table["weights"][name]
        assert t["visual"] == pytest.approx(_by_hand(y, p.argmax(1)), abs=1e-12)
        assert t["fused"] == pytest.approx(_by_hand(y, (0.6 * p + 0.4 * p_text).argmax(1)), abs=1e-12)
    assert table["weights"]["best"]["epoch"] == 3 and table["weights"]["last"]["epoch"] == 8
    frame = epoch_table_frame(table).df
    assert frame.shape == (4, 3) and frame.attrs["n_pairs"] == n
    row = ("last epoch (the original), epoch 8", "visual alone")
    assert frame.loc[row, "accuracy %"] == f"{100 * float(np.mean(p_last.argmax(1) == y)):.1f}"
    assert frame.loc[row, "the weights this run scored"] == "yes"
    with pytest.raises(InputError, match="scored must be 'best' or 'last', got 'first'"):
        epoch_table(p_best, p_last, p_text, y, best_epoch=3, last_epoch=8, scored="first")


def test_bug_tables_on_an_evaluated_dir_say_what_it_lacks_and_where_to_look(fake_run):
    """An `evaluate`d dir's new test set is scored with one set of weights and the run's own head; the
    bug tables say so (they used to say "an older run, re-run", or raise KeyError)."""
    from emotion_fusion import runs
    from emotion_fusion.original.bugs import original_bug, original_epoch_bug
    d = fake_run()
    with pytest.raises(InputError, match=r"has no p_image_best outputs \(an older run\)"):
        original_epoch_bug(d)
    info = runs.read_json(d / runs.INFO)
    runs.write_json(d / runs.INFO, {**info, "evaluated_from": "/runs/seed"})
    runs.write_manifest(d, info["key"])
    for table in (original_bug, original_epoch_bug):
        with pytest.raises(InputError, match=r"was made by `evaluate`, .*use split='val' here, or the source run "
                                             r"/runs/seed$"):
            table(d)
