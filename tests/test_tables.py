"""The formatting layer (emotion_fusion.tables) and the report's tables built on it: percent with one
decimal, intervals, integer counts, p-values with the test named, words instead of dicts, no row numbers
unless they are labels. Inputs are built by hand, so a formatting change shows here."""
from __future__ import annotations

import re

import pytest

from emotion_fusion import report, tables
from emotion_fusion.config import Config
from emotion_fusion.settings_table import config_table


def test_numbers_read_as_in_a_paper():
    assert tables.pct(0.65124) == "65.1" and tables.pct(0.098, signed=True) == "+9.8"
    assert tables.pct(float("nan")) == tables.pct(None) == "–"
    assert tables.interval(0.6512, (0.632, 0.67)) == "65.1 [63.2, 67.0]"
    assert tables.interval(0.098, (0.08, 0.115), signed=True) == "+9.8 [+8.0, +11.5]"
    assert tables.interval(0.5, None) == "50.0"
    assert tables.count(3589.0) == "3,589" and tables.count(397) == "397"
    with pytest.raises(ValueError, match="count 2.5 is not a whole number"):
        tables.count(2.5)


@pytest.mark.parametrize("p, shown", [(1.512634e-155, "< 0.001"), (0.000999, "< 0.001"), (0.001, "0.001"),
                                      (0.0042, "0.004"), (0.0999, "0.10"), (0.581, "0.58"), (1.0, "1.00")])
def test_p_values_never_claim_more_digits_than_a_test_has(p, shown):
    assert tables.pvalue(p) == shown


@pytest.mark.parametrize("k, B, shown", [(0, 1000, "≤ 0.002"), (1, 1000, "0.004"), (0, 200, "≤ 0.01"),
                                         (1, 200, "0.02"), (0, 4000, "< 0.001"), (0, 1500, "≤ 0.002")])
def test_a_bootstrap_p_at_its_floor_is_a_bound(k, B, shown):
    """The bootstrap p is 2(k + 1)/(B + 1): k = 0 is its floor, never an exact value (rounded up when shown)."""
    assert tables.pvalue(2 * (k + 1) / (B + 1), resamples=B) == shown


def test_html_drops_the_whitespace_between_tags_only():
    t = tables.table([{"model": "Visual  only", "n": 70}, {"model": "Text", "n": 1200}], "T", index="model")
    html = t._repr_html_()
    assert not re.search(r">\s+<", html) and "<td>1,200</td>" in html and "<th>Visual&nbsp;&nbsp;only</th>" in html


def test_cells_take_numpy_scalars_like_python_ones():
    import numpy as np
    assert [tables.cell(v) for v in (np.int64(3589), np.bool_(True), np.bool_(False), np.float32(0.5))] == \
        ["3,589", "yes", "no", "0.5"]
    assert tables.cell(np.float64("nan")) == "–" and tables.cell([np.int32(1200), np.int8(2)]) == "1,200, 2"


def test_cells_put_dicts_in_words_and_counts_as_integers():
    assert tables.in_words({"images": 604, "texts": 141}) == "604 images, 141 texts"
    assert tables.cell({"texts_used": 1200}) == "1,200 texts used"
    assert [tables.cell(v) for v in (True, None, 12, 0.123456, [1, 2])] == ["yes", "–", "12", "0.1", "1, 2"]
    assert tables.cell(0.123456, 3) == "0.123"


def test_a_table_shows_an_index_only_when_it_labels_the_rows():
    plain = tables.table([{"a": 1, "b": 0.25}, {"a": 2000, "b": 1.0}], "T", note="n.b.")
    assert plain.to_text().splitlines() == ["T", "    a   b", "    1 0.2", "2,000 1.0", "n.b."]
    assert "<th>0</th>" not in plain._repr_html_() and plain._repr_html_().startswith("<h4>T</h4>")
    labelled = tables.table([{"model": "Visual only", "n": 70}], index="model")
    assert "Visual only" in labelled.to_text() and labelled.df.loc["Visual only", "n"] == "70"


# ------------------------------------------------------------------ the report's tables, by hand
def _draws() -> dict:
    comparison = {m: {"weight": w, "better_branch": "text",
                      "accuracy": {"mean_diff": 0.098, "ci": [0.080, 0.115], "p_value": 2 / 1001},   # the floor
                      "macro_f1": {"mean_diff": 0.097, "ci": [0.080, 0.1151], "p_value": 0.0342}}
                  for m, w in (("fusion", 0.6), ("fusion_best_val", None))}
    reuse = {"test": {"fear": {"faces": 496, "texts_in_pool": 72, "texts_used": 72, "mean_reuse": 6.888,
                               "max_reuse": 7},
                      "sad": {"faces": 653, "texts_in_pool": 266, "texts_used": 266, "mean_reuse": 2.4549,
                              "max_reuse": 3}}}
    return {"comparison": comparison, "text_reuse": reuse, "n_boot": 1000, "scheme": "crossed two-way"}


def test_comparison_table_in_points_with_the_test_and_the_better_branch_in_words():
    t = report.comparison_table({"draws": _draws()})
    assert list(t.df.index) == [("Fusion, w = 0.60", "accuracy"), ("Fusion, w = 0.60", "macro-F1"),
                                ("Fusion (best val weight)", "accuracy"), ("Fusion (best val weight)", "macro-F1")]
    row = t.df.loc[("Fusion, w = 0.60", "accuracy")]
    assert row["fusion minus better branch, points [95% interval]"] == "+9.8 [+8.0, +11.5]"
    assert row["p (crossed two-way bootstrap)"] == "≤ 0.002"      # 2/(B + 1) at B = 1000: a bound, not a value
    assert t.df.loc[("Fusion, w = 0.60", "macro-F1"), "p (crossed two-way bootstrap)"] == "0.03"
    assert row["better branch on validation"] == "text"     # chosen once, on all validation pairs
    assert "{" not in t.to_text() and "e-" not in t.to_text()


def test_text_reuse_table_keeps_counts_integer():
    t = report.text_reuse_table({"draws": _draws()})
    assert t.df.loc[("test", "fear")].tolist() == ["496", "72", "72", "6.9", "7"]
    assert t.df.loc[("test", "sad"), "mean uses per text"] == "2.5"
    assert ".0" not in t.df["faces"].str.cat()


def test_as_table_formats_timings_lists_and_nested_dicts():
    t = report.as_table({"load_data_s": 7.3098, "total_s": 1073.26}, name="seconds")
    assert t.df["seconds"].tolist() == ["7.3", "1,073.3"] and t.to_text().splitlines()[0].strip() == "seconds"
    rows = report.as_table([{"model_b": "visual", "b": 397, "pvalue": 0.5}, {"model_b": "text", "b": 12, "pvalue": None}])
    assert rows.df.loc[0, "b"] == "397" and "   0 " not in rows.to_text()       # no row numbers
    nested = report.as_table({"images": {"train": 168, "val": 70}, "texts": {"train": 168}})
    assert nested.df.loc["val", "texts"] == "" and nested.df.loc["train", "images"] == "168"


def test_mcnemar_table_names_the_test_and_counts_in_words():
    res = {"mcnemar": [{"model_a": "fusion", "model_b": "visual", "weight": 0.6, "b": 397, "c": 20,
                        "statistic": 1.0, "pvalue": 1.512634e-155, "method": "chi-square, continuity corrected"}]}
    t = report.mcnemar_table(res)
    assert t.df.loc[0, "p (McNemar, chi-square, continuity corrected)"] == "< 0.001"
    assert t.df.loc[0, "pairs only fusion gets right"] == "397" and "e-155" not in t.to_text()


def test_sizes_table_says_what_was_dropped_in_words():
    t = report.sizes_table({"images": {"train": 18987, "val": 2871}}, {"images": 604, "texts": 141})
    assert t.df.loc["images", "train"] == "18,987"
    assert t.note == "Dropped from train/val as duplicates of val/test: 604 images, 141 texts."


def test_config_table_is_short_and_lists_what_differs_from_the_profile():
    cfg = Config.from_profile("offline", fusion_weight=0.3, epochs=3)
    t = config_table(cfg, "runs/offline")
    shown = dict(zip(t.df.index, t.df["value"]))
    assert shown["profile"] == "offline" and shown["image size"] == "48 px" and shown["seed"] == "0"
    assert shown["fusion"] == "w = 0.30 visual, loglinear rule, calibrated"
    assert shown["image branch"] == "ResNet-50 (random init), all layers trained"
    assert shown["text branch"] == "minilm (its bundled weights), head probe"
    smoke = config_table(Config.from_profile("smoke")).df["value"]
    assert smoke["text branch"] == "ViT-B/32 (random init), head auto"
    assert shown["changed: fusion_weight"] == "0.3 (profile: 0.6)" and shown["changed: epochs"] == "3 (profile: 2)"
    assert not [k for k in shown if k.startswith("changed:") and k not in ("changed: fusion_weight", "changed: epochs")]
    assert len(t.df) < 15 and t.note == "Every setting is in runs/offline/config.json."
    assert len(config_table(Config.from_profile("offline")).df) == len(t.df) - 2


def test_config_table_shows_small_values_and_caps_as_set():
    cfg = Config.from_profile("full", lr=1e-4 * 3, weight_decay=1e-5, train_per_class=500, val_per_class=None,
                              device="cpu")
    shown = config_table(cfg).df["value"]
    assert shown["changed: lr"] == "0.0003 (profile: 0.0001)"          # not "0.000 (profile: 0.000)"
    assert shown["changed: weight_decay"] == "1e-05 (profile: 0.0001)"
    assert shown["changed: train_per_class"] == "500 (profile: all)"     # a None cap is no cap
    assert shown["changed: device"] == "cpu (profile: auto)"
    smoke = config_table(Config.from_profile("smoke", text_weights="openai")).df["value"]
    assert smoke["changed: text_weights"] == "openai (profile: none (random init))"


def test_per_class_report_in_percent_with_integer_support():
    t = report.per_class_report([0, 0, 1, 1], [0, 1, 1, 1])
    assert t.df.loc["angry"].tolist() == ["100.0", "50.0", "66.7", "2"]
    assert t.df.loc["fear", "support"] == "0"
