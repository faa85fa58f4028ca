"""The notebook runs top to bottom under the smoke profile; its table equals results.json; a re-run
with another FUSION_WEIGHT reuses the cached branch outputs."""
from __future__ import annotations

import json
import re

import pytest

from emotion_fusion.report import results_table

pytestmark = [pytest.mark.data, pytest.mark.slow]


def _cell_text(nb: dict, tag: str) -> str:
    for cell in nb["cells"]:
        if tag in cell.get("metadata", {}).get("tags", []):
            return "".join(o.get("data", {}).get("text/plain", "") if "data" in o else o.get("text", "")
                           for o in cell.get("outputs", []))
    raise AssertionError(f"no cell tagged {tag}")


def test_committed_notebook_has_no_outputs_and_a_parameters_cell(repo):
    nb = json.loads((repo / "HAICAI_2026.ipynb").read_text())
    assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "FUSION_WEIGHT = 0.6" in "".join(params[0]["source"])


def test_notebook_smoke_end_to_end(tmp_path, data_root, fer_path, go_path, monkeypatch, repo):
    import papermill as pm
    monkeypatch.delenv("MPLBACKEND", raising=False)     # the kernel must use Jupyter's inline backend
    run_dir = tmp_path / "run"
    params = dict(PROFILE="smoke", RUN_DIR=str(run_dir), FER2013=str(fer_path), GOEMOTIONS=str(go_path),
                  OVERRIDES=["progress=false"])
    nb = pm.execute_notebook(str(repo / "HAICAI_2026.ipynb"), str(tmp_path / "out.ipynb"),
                             parameters=params, cwd=str(repo), progress_bar=False, kernel_name="python3")
    results = json.loads((run_dir / "results.json").read_text())
    table = _cell_text(nb, "results-table")
    shown = results_table(results).df
    for value in shown.astype(str).to_numpy().ravel():   # every figure of the table is shown as is
        assert value in table, value
    assert "RANDOM-INIT" in results["title"] and results["title"] in table   # the title shows in the cell
    # the plots are shown inline: every cell that draws one carries a PNG
    plot_cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "ef.plot_" in "".join(c["source"])]
    assert len(plot_cells) == 5
    for c in plot_cells:
        assert any("image/png" in o.get("data", {}) for o in c["outputs"]), "".join(c["source"])
    # the dependence section: its table under its title, its plot inline
    assert "fusion under dependence, test pairs: mean ± sd" in _cell_text(nb, "dependence-table")
    curve = next(c for c in nb["cells"] if "".join(c["source"]) == "dep.plot();")
    assert any("image/png" in o.get("data", {}) for o in curve["outputs"])

    # the original's bug, shown: the count of test pairs whose fused label is not the visual one, per head
    from emotion_fusion.original.bugs import run_bug_table
    bug = next(c for c in nb["cells"] if "".join(c["source"]) == "ef.original_bug(RUN_DIR)")
    html = "".join(o.get("data", {}).get("text/html", "") for o in bug["outputs"])
    assert "pairs fused ≠ visual" in html
    # each fused row's last cell is its count (the HTML table; the plain-text one wraps its columns)
    counts = re.findall(r"<th>fused 0\.6·visual \+ 0\.4·text</th>(?:\s*<td>[^<]*</td>){3}\s*<td>(\d+)</td>", html)
    assert [int(c) for c in counts] == [h["fused_differs_from_visual"]
                                        for h in run_bug_table(run_dir)["heads"].values()]
    # the second bug: the same fit's best-val-loss and last-epoch weights, the set this run scored marked
    epochs = next(c for c in nb["cells"] if "".join(c["source"]) == "ef.original_epoch_bug(RUN_DIR)")
    html = "".join(o.get("data", {}).get("text/html", "") for o in epochs["outputs"])
    assert "last epoch (the original)" in html and "best val loss (restored as intended)" in html
    assert "the weights this run scored" in html
    # the seed protocol's pairing summary cell shows nothing under the holdout protocol
    pairing = next(c for c in nb["cells"] if "".join(c["source"]) == "result.pairing_table()")
    assert pairing["outputs"] == []

    # a second execution with another weight reuses the branch outputs (seconds, no model built)
    nb2 = pm.execute_notebook(str(repo / "HAICAI_2026.ipynb"), str(tmp_path / "out2.ipynb"),
                              parameters={**params, "FUSION_WEIGHT": 0.3}, cwd=str(repo),
                              progress_bar=False, kernel_name="python3")
    printed = "".join(o.get("text", "") for c in nb2["cells"] for o in c.get("outputs", []))
    assert "reused cached branch outputs: True" in printed
    again = json.loads((run_dir / "results.json").read_text())
    fusion = [r for r in again["rows"] if r["model"] == "fusion" and r["split"] == "test"][0]
    assert fusion["weight"] == 0.3
