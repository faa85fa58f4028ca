"""The README a newcomer reads: at most 200 lines, its results block equal to the committed results file of
the quoted run (docs/results/offline_seed0.json), every number of its table that file's value."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from emotion_fusion.writeup import BEGIN, END, answer, headline_records, readme_block

RESULTS = "docs/results/offline_seed0.json"


@pytest.fixture
def slim(repo):
    return json.loads((repo / RESULTS).read_text())


def _block(readme: str) -> str:
    start = readme.index(BEGIN.format(RESULTS))
    return readme[start:readme.index(END, start) + len(END)]


def test_readme_is_short(repo):
    assert len((repo / "README.md").read_text().splitlines()) <= 200


def test_readme_block_is_the_results_file_rendered(repo, slim):
    assert _block((repo / "README.md").read_text()) == readme_block(slim, RESULTS)
    proc = subprocess.run([sys.executable, "tools/readme_results.py", "--check"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def test_readme_table_numbers_equal_the_results_file(repo, slim):
    """Each table row, parsed from the README, holds the file's point value and interval ends (in %, one
    decimal), computed here from the raw fractions, not by the code that wrote the README."""
    rows = [line.split(" | ") for line in _block((repo / "README.md").read_text()).splitlines()
            if line.startswith("| ") and not line.startswith("| model") and "---" not in line]
    d = slim["draws"]
    single = {r["model"]: r for r in d["single_draw"]["rows"]}
    assert len(rows) == len(d["rows"]) == 4
    for cells, r in zip(rows, d["rows"]):
        for text, value, ci in ((cells[1], r["accuracy"], r["accuracy_ci"]), (cells[2], r["macro_f1"], r["macro_f1_ci"]),
                                (cells[3], single[r["model"]]["macro_f1"], single[r["model"]]["macro_f1_ci"])):
            assert re.match(rf"{_pct(value)} \[{_pct(ci[0])}, {_pct(ci[1])}\]", text), (text, value, ci)
        if "weight" in r:
            assert f"w = {r['weight']:.2f}" in cells[0]
    gain = d["comparison"]["fusion_best_val"]["macro_f1"]
    assert f"+{_pct(gain['mean_diff'])} [+{_pct(gain['ci'][0])}, +{_pct(gain['ci'][1])}]" in _block(
        (repo / "README.md").read_text())


def test_the_readme_names_the_run_it_quotes(repo, slim):
    block, run = _block((repo / "README.md").read_text()), slim["run"]
    assert f"profile `{run['profile']}`, training seed {run['seed']}" in block
    assert run["date"] in block and run["precision"] in block and "differs in the decimals" in block


def _results(lo: float, weight0: float | None = 0.45) -> dict:
    row = lambda m, a, w=None: {"model": m, "split": "test", **({"weight": w} if w is not None else {}),   # noqa: E731
                                "accuracy": a, "accuracy_ci": [a - 0.01, a + 0.01], "macro_f1": a - 0.05,
                                "macro_f1_ci": [a - 0.06, a - 0.04], "n": 100}
    cmp = lambda w: {"weight": w, "better_branch": "text", "accuracy": {"mean_diff": 0.1, "ci": [lo, 0.12], "p_value": 0.01},  # noqa: E731
                     "macro_f1": {"mean_diff": 0.09, "ci": [lo, 0.11], "p_value": 0.01}}
    rows = [row("visual", 0.4), row("text", 0.5), row("fusion", 0.6, 0.6), row("fusion_best_val", 0.62, 0.48)]
    single = [dict(r) for r in rows]
    single[3]["weight"] = weight0
    return {"draws": {"scheme": "crossed two-way", "rows": rows, "weight": 0.6, "best_weight": {"weight": 0.48},
                      "comparison": {"fusion": cmp(0.6), "fusion_best_val": cmp(0.48)},
                      "single_draw": {"best_weight": weight0, "rows": single}}}


def test_answer_says_the_gain_at_both_weights_and_the_caveat():
    dep = {"crossing": {"copula": {"gain_fusion_best_val_macro_f1": {"crosses": False, "smallest": 0.068, "at_rho": 1.0}},
                        "wrong": {"gain_fusion_best_val_macro_f1": {"crosses": True, "rho": 0.85, "phi_within": 0.49}}}}
    text = answer(_results(0.07), dep)
    assert "fusion beats the better single branch (text, chosen on validation)" in text
    assert "+9.0 [+7.0, +11.0] points at the default w = 0.60" in text and "+9.0 [+7.0, +11.0] at the validation weight w = 0.48" in text
    assert "independent by construction" in text
    assert "never reaches zero (smallest +6.8 points, at ρ = 1.00)" in text and "reaches zero at ρ = 0.85, φ within class 0.49" in text
    assert "does not clearly differ from" in answer(_results(-0.01))


def test_the_one_pairing_column_is_computed_at_its_own_weight_and_says_so():
    recs = headline_records(_results(0.07))
    assert recs[3]["model"] == "Fusion, validation weight w = 0.48"
    assert recs[3]["macro-F1 %, one pairing, pair bootstrap"].endswith("(at that draw's own best w = 0.45)")
    assert "own best" not in recs[2]["macro-F1 %, one pairing, pair bootstrap"]
    assert "own best" not in headline_records(_results(0.07, weight0=0.48))[3]["macro-F1 %, one pairing, pair bootstrap"]


def test_setup_facts_come_from_the_run_config_and_info():
    from emotion_fusion.writeup import setup_facts
    cfg = {"profile": "offline", "seed": 0, "val_fraction": 0.1, "train_per_class": 3200, "text_train_per_class": 2500,
           "epochs": 2, "image_size": 48, "image_weights": None, "batch_size": 128, "lr": 1e-3, "lr_schedule": "onecycle",
           "augment": False, "class_weights": "balanced", "tta": True}
    info = {"sizes": {"images": {"train": 18987, "val": 2849, "test": 3589}, "texts": {"train": 9000, "val": 900, "test": 2000}},
            "summary": {"fer2013": {"rows": {"train": 28709}}, "goemotions": {"rows": {"train": 43410}}},
            "dropped": {"images": 604}, "text_test_split": "dev",
            "history": {"epochs_run": 2, "scored_epoch": 2, "precision": "bf16 autocast", "replicas": 2, "intra_op_threads": 1}}
    facts = {f["setting"]: f["value"] for f in setup_facts(cfg, info)}
    assert facts["train faces"].startswith("18,987 of FER2013's 28,709 train faces")
    assert "at most 3,200 per class" in facts["train faces"] and "604 train/validation faces" in facts["train faces"]
    assert facts["validation / test faces"] == "2,849 / 3,589 (test: the FER2013 test folder)"
    assert facts["test-time augmentation"].startswith("mirror") and facts["class weights"].startswith("balanced")
    assert facts["precision"] == "bf16 autocast, 2 replica(s) × 1 intra-op thread(s) each"
    assert facts["training seed"] == "0 (one training run)" and "not the training" in facts["what the intervals include"]
    assert facts["image training"] == ("2 epoch(s) of at most 2 at 48 px, from scratch, batch 128, lr 1×10⁻³ (onecycle), "
                                       "no augmentation, epoch 2 scored")
