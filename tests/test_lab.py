"""JupyterLab in the project's environment, used the way people use the notebook.

A JupyterLab server started by `make notebook` (127.0.0.1, tools/jupyter/ settings: nothing calls out)
serves /lab; the notebook runs top to bottom under the smoke profile on a kernel started
through that server's REST API and driven over its websocket; re-running it with another FUSION_WEIGHT
reuses the cache; `make report` turns the executed copy into a self-contained page; and Debian's headless
chromium runs all cells from Lab's Run menu and shows the numbers of results.json.

What this assumes about HAICAI_2026.ipynb: one code cell tagged `parameters` holding one `NAME = ...`
line each for PROFILE, RUN_DIR and FUSION_WEIGHT; one code cell tagged `results-table` whose output is an
HTML table with one <tr> per results.json row, accuracy and macro-F1 written as in runs.results_table
("57.0 [55.3, 58.6]", % with one decimal); "RANDOM-INIT" printed somewhere under the smoke profile; with
FER2013/GOEMOTIONS left None the data come from EMOTION_FUSION_DATA; `import emotion_fusion` resolves from
the repository (PYTHONPATH here, the working directory under `make notebook`).
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from lab_client import KernelChannel, Lab, LabBrowser, start_lab, table_rows

NOTEBOOK = REPO / "HAICAI_2026.ipynb"
TRACEBACK = "Traceback (most recent call last)"


def _with_parameters(dst: Path, **params) -> nbformat.NotebookNode:
    """A copy of the repository notebook whose parameters cell assigns `params` (as a user would edit it)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook needs exactly one cell tagged `parameters`"
    lines = cells[0].source.splitlines()
    for name, value in params.items():
        hits = [i for i, line in enumerate(lines) if re.match(rf"{name}\s*=", line)]
        assert len(hits) == 1, f"the parameters cell needs one `{name} = ...` line"
        lines[hits[0]] = f"{name} = {value!r}"
    cells[0].source = "\n".join(lines)
    nbformat.write(nb, dst)
    return nb


def _tagged_index(nb, tag: str) -> int:
    """Position of the code cell tagged `tag` among the notebook's code cells."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    hits = [i for i, c in enumerate(code) if tag in c.metadata.get("tags", [])]
    assert len(hits) == 1, f"the notebook needs exactly one code cell tagged `{tag}`"
    return hits[0]


def _pct(value: float, ci) -> str:
    """The table's figure format, written out here rather than borrowed from runs: "57.0 [55.3, 58.6]"."""
    return f"{100 * value:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _assert_table_shows(rows: list[str], results: dict) -> None:
    """Every headline row of results.json (the test means over pairing draws, `draws.rows`) appears as one
    table row holding its accuracy and macro-F1 with their intervals."""
    assert rows, "the results-table cell shows no table"
    assert results["draws"]["rows"], "results.json has no headline rows"
    for r in results["draws"]["rows"]:
        acc, f1 = _pct(r["accuracy"], r["accuracy_ci"]), _pct(r["macro_f1"], r["macro_f1_ci"])
        assert any(acc in row and f1 in row for row in rows), (r["model"], acc, f1, rows)


def _outputs_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", "") if o.output_type == "stream" else "\n".join(o.get("traceback", [])))
        parts.append(o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _run_all(chan: KernelChannel, nb) -> None:
    """Execute every code cell in order on the server's kernel, recording outputs as Lab would."""
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.outputs, reply = chan.execute(cell.source, timeout=900)
        cell.execution_count = reply.get("execution_count")
        assert reply["status"] == "ok", (
            f"code cell {i} failed: {reply.get('ename')}: {reply.get('evalue')}\n{_outputs_text(cell)}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = start_lab(tmp_path_factory.mktemp("lab_root"), tmp_path_factory.mktemp("lab_home"))
    try:
        yield server
    finally:
        server.stop()


def test_lab_serves_the_page_and_nothing_calls_out(lab: Lab):
    page = lab.api("GET", "/lab")
    assert page.status_code == 200
    with pytest.raises(OSError):         # bound to 127.0.0.1 only: another address of this host is refused
        socket.create_connection(("127.0.0.2", lab.port), timeout=5).close()
    found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S)
    assert found, page.text[:500]
    config = json.loads(found.group(1))
    assert config["news"] == {"disabled": True}
    assert "@jupyterlab/apputils-extension:announcements" in config["disabledExtensions"]
    assert config["extensionManager"]["name"] == "read-only"        # no PyPI search from the Extensions panel
    assert lab.api("GET", "/lab/api/news").json() == {"news": []}
    assert lab.api("GET", "/lab/api/update").json() == {"notification": None}
    assert lab.api("GET", "/api/kernelspecs").json()["default"] == "python3"


@pytest.fixture(scope="module")
def smoke_run(lab: Lab, data_root):
    """The notebook (smoke profile) run top to bottom on a kernel started through the server's API."""
    run_dir = lab.root / "run"
    nb = _with_parameters(lab.root / "smoke.ipynb", PROFILE="smoke", RUN_DIR=str(run_dir))
    session = lab.api("POST", "/api/sessions", json={"path": "smoke.ipynb", "type": "notebook",
                                                     "name": "smoke.ipynb", "kernel": {"name": "python3"}})
    assert session.status_code == 201, session.text
    session = session.json()
    chan = KernelChannel(lab, session["kernel"]["id"])
    try:
        outputs, _ = chan.execute("import sys, os; print(sys.executable); print(os.getcwd())")
        python, cwd = outputs[0]["text"].splitlines()
        start = time.perf_counter()
        _run_all(chan, nb)
        seconds = time.perf_counter() - start
        nbformat.write(nb, f"{run_dir}.executed.ipynb")      # where `make demo` puts its executed copy
        yield dict(nb=nb, run_dir=run_dir, chan=chan, python=python, cwd=cwd, seconds=seconds,
                   session=session)
    finally:
        chan.close()
        lab.api("DELETE", f"/api/sessions/{session['id']}")


@pytest.mark.slow
@pytest.mark.data
def test_notebook_runs_top_to_bottom_on_a_kernel_started_through_the_server(lab: Lab, smoke_run):
    nb, run_dir = smoke_run["nb"], smoke_run["run_dir"]
    assert smoke_run["python"] == sys.executable            # the kernel is the venv's python, as the server's
    assert Path(smoke_run["cwd"]) == lab.root                # kernels run beside their notebook, as in Lab
    kernels = lab.api("GET", "/api/kernels").json()
    assert smoke_run["session"]["kernel"]["id"] in [k["id"] for k in kernels]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    results = json.loads((run_dir / "results.json").read_text())
    table = code[_tagged_index(nb, "results-table")]
    html = "".join(o.get("data", {}).get("text/html", "") for o in table.outputs)
    _assert_table_shows(table_rows(html), results)
    assert "RANDOM-INIT" in "".join(_outputs_text(c) for c in code)
    assert sum("image/png" in o.get("data", {}) for c in code for o in c.outputs) >= 1
    print(f"\nnotebook on the server's kernel, smoke profile: {smoke_run['seconds']:.1f} s")


@pytest.mark.slow
@pytest.mark.data
def test_rerun_with_another_weight_reuses_the_cache(smoke_run):
    """Edit FUSION_WEIGHT and run all again, as in Lab: the branch outputs and models stay untouched."""
    run_dir, chan = smoke_run["run_dir"], smoke_run["chan"]
    cached = sorted(p for sub in ("outputs", "models") for p in (run_dir / sub).rglob("*") if p.is_file())
    assert cached, "the run dir holds no cached outputs or models"
    before = {p: p.stat().st_mtime_ns for p in cached}
    nb = _with_parameters(run_dir.parent / "smoke_w03.ipynb", PROFILE="smoke", RUN_DIR=str(run_dir),
                          FUSION_WEIGHT=0.3)
    start = time.perf_counter()
    _run_all(chan, nb)
    seconds = time.perf_counter() - start
    assert {p: p.stat().st_mtime_ns for p in cached} == before
    results = json.loads((run_dir / "results.json").read_text())
    fusion = [r for r in results["rows"] if r["model"] == "fusion" and r["split"] == "test"]
    assert [r["weight"] for r in fusion] == [0.3]
    table = [c for c in nb.cells if c.cell_type == "code"][_tagged_index(nb, "results-table")]
    _assert_table_shows(table_rows("".join(o.get("data", {}).get("text/html", "") for o in table.outputs)),
                        results)
    print(f"\nre-run all cells with FUSION_WEIGHT = 0.3 on the cached run dir: {seconds:.1f} s "
          f"(first run {smoke_run['seconds']:.1f} s)")


@pytest.mark.slow
@pytest.mark.data
def test_make_report_writes_a_self_contained_page(smoke_run):
    run_dir = smoke_run["run_dir"]
    executed = nbformat.read(f"{run_dir}.executed.ipynb", as_version=4)
    done = subprocess.run(["make", "-s", "--no-print-directory", "report", f"PY={sys.executable}",
                           f"RUN_DIR={run_dir}"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = Path(f"{run_dir}.html").read_text()
    pngs = sum("image/png" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))
    assert pngs and page.count('src="data:image/png;base64,') == pngs          # every plot inline
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)           # nothing fetched from elsewhere
    assert "cdnjs" not in page
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page       # no progress-bar clutter
    assert "unpkg" not in page and "jsdelivr" not in page                       # no widget scripts from a CDN
    # progress (emotion_fusion.progress: a live HTML bar per loop) saves no widget state. (This client
    # records each bar's first display, not the updates that empty it; that the papermill copy keeps only
    # one line per epoch is tests/test_notebook.py's check.)
    outputs = [o for c in executed.cells for o in c.get("outputs", [])]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    table = [c for c in executed.cells if c.cell_type == "code"][_tagged_index(executed, "results-table")]
    shown = table_rows("".join(o.get("data", {}).get("text/html", "") for o in table.outputs))
    assert shown and all(row in table_rows(page) for row in shown)
    print(f"\nreport: {Path(f'{run_dir}.html').stat().st_size / 1e6:.2f} MB, {pngs} inline PNGs")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.data
def test_browser_runs_all_cells_from_the_run_menu(lab: Lab, data_root, tmp_path, chromium_paths):
    """Open a copy of the notebook (parameters: smoke profile, fresh RUN_DIR) in Lab, Run > Run All Cells."""
    chromium, chromedriver = chromium_paths
    run_dir = lab.root / "run_browser"
    nb = _with_parameters(lab.root / "browser.ipynb", PROFILE="smoke", RUN_DIR=str(run_dir))
    browser = LabBrowser(lab, chromium, chromedriver, tmp_path / "chromium-profile", tmp_path)
    try:
        browser.open("browser.ipynb")
        start = time.perf_counter()
        browser.run_all_from_menu(timeout=900)
        seconds = time.perf_counter() - start
        rows = browser.table_rows(_tagged_index(nb, "results-table"))
        shot = tmp_path / "lab_results_table.png"
        browser.driver.save_screenshot(str(shot))
        print(f"\nRun All Cells in chromium: {seconds:.1f} s; screenshot: {shot}")
        _assert_table_shows(rows, json.loads((run_dir / "results.json").read_text()))
        assert browser.foreign_requests() == []
    finally:
        browser.quit()
